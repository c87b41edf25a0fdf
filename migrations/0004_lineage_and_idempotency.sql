-- Lineage filters: GET /job?retry_of= and ?root_job_id=, newest first.
CREATE INDEX jobs_retry_of_seq ON jobs (retry_of, seq) WHERE retry_of IS NOT NULL;
CREATE INDEX jobs_root_seq ON jobs (root_job_id, seq);

-- The ticket of the last batch whose guard held: later statements of a batch run only while the
-- ticket is theirs, so one guard decides the whole batch. seq_mark is the highest job seq before
-- that batch, so the batch can find the jobs it created (bulk retry).
ALTER TABLE store_revision ADD COLUMN ticket TEXT;
ALTER TABLE store_revision ADD COLUMN seq_mark INTEGER NOT NULL DEFAULT 0;

-- Idempotency-Key: the first response, stored in the same batch as the write it answered.
CREATE TABLE idempotency_keys (
  api_key_id TEXT NOT NULL,
  route TEXT NOT NULL,
  key TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  PRIMARY KEY (api_key_id, route, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
