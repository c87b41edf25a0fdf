-- Retries that run themselves: a job's retry policy, its time (not_before), cancellation, and the
-- end of a chain (retries_exhausted). `cancelled` is a new job status and `cancel_requested` and
-- `cancelled` new events, and SQLite cannot change a CHECK constraint in place: jobs and job_events
-- are rebuilt (SQLite's documented twelve steps). job_events and job_agents refer to jobs; the
-- references are checked when this migration's transaction commits, when they hold again.
PRAGMA defer_foreign_keys = on;

CREATE TABLE jobs_next (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  operation TEXT NOT NULL,
  target_hostname TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'unprocessed'
    CHECK (status IN ('unprocessed', 'processing', 'completed', 'failed', 'partial_failure', 'skipped', 'cancelled')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  created_revision INTEGER NOT NULL,
  revision INTEGER NOT NULL,
  retry_of TEXT,
  root_job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL CHECK (attempt >= 1),
  result TEXT,
  changed INTEGER,
  error TEXT,
  hostname TEXT,
  -- The policy with its defaults filled in (JSON), or NULL: no automatic retries.
  retry_policy TEXT,
  -- No claim hands the job out before this time (RFC 3339, UTC); NULL: at once.
  not_before TEXT,
  -- 'manual', 'automatic' or NULL (an original): how this job came to be a retry.
  retried_by TEXT CHECK (retried_by IN ('manual', 'automatic')),
  -- The operation differs from the one of the job it was retried from.
  operation_changed INTEGER NOT NULL DEFAULT 0,
  -- Asked to stop: no more deliveries, and the job ends `cancelled` when nobody holds it.
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  -- Ended in a status its policy retries, with no attempts left: a dead letter.
  retries_exhausted INTEGER NOT NULL DEFAULT 0
);
INSERT INTO jobs_next (seq, id, operation, target_hostname, status, created_at, updated_at,
  created_revision, revision, retry_of, root_job_id, attempt, result, changed, error, hostname, retried_by)
SELECT seq, id, operation, target_hostname, status, created_at, updated_at,
  created_revision, revision, retry_of, root_job_id, attempt, result, changed, error, hostname,
  CASE WHEN retry_of IS NOT NULL THEN 'manual' END
FROM jobs;
-- AUTOINCREMENT must never hand out a seq an agent's cursor or the batch mark has passed, even one
-- whose job was deleted: a placeholder at the highest seq known takes the sequence there.
INSERT INTO jobs_next (seq, id, operation, target_hostname, created_at, updated_at, created_revision,
  revision, root_job_id, attempt)
SELECT m, 'migration-0007', '{}', '_any', '', '', 0, 0, 'migration-0007', 1
FROM (SELECT MAX(COALESCE((SELECT MAX(seq) FROM jobs), 0), COALESCE((SELECT MAX(cursor_seq) FROM agents), 0),
  (SELECT seq_mark FROM store_revision WHERE id = 1)) AS m)
WHERE m > COALESCE((SELECT MAX(seq) FROM jobs), 0);
DELETE FROM jobs_next WHERE id = 'migration-0007';
DROP TABLE jobs;
ALTER TABLE jobs_next RENAME TO jobs;

CREATE INDEX jobs_status_seq ON jobs (status, seq);
CREATE INDEX jobs_retry_of_seq ON jobs (retry_of, seq) WHERE retry_of IS NOT NULL;
CREATE INDEX jobs_root_seq ON jobs (root_job_id, seq);
-- _any jobs nobody has finished: what every claim scans, however many jobs are done.
CREATE INDEX jobs_any_open ON jobs (seq)
  WHERE target_hostname = '_any' AND status IN ('unprocessed', 'processing');
-- Jobs waiting for their time (GET /job?due=false, and the waiters' feed of jobs coming due).
CREATE INDEX jobs_waiting ON jobs (not_before) WHERE not_before IS NOT NULL AND status = 'unprocessed';
-- Dead letters (GET /job?retries_exhausted=true).
CREATE INDEX jobs_exhausted_seq ON jobs (seq) WHERE retries_exhausted = 1;

INSERT INTO job_counts (status, n) VALUES ('cancelled', 0);

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
  UPDATE job_counts SET n = n + 1 WHERE status = NEW.status;
END;

CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
  UPDATE job_counts SET n = n - 1 WHERE status = OLD.status;
END;

CREATE TRIGGER jobs_count_update AFTER UPDATE OF status ON jobs
WHEN OLD.status <> NEW.status BEGIN
  UPDATE job_counts SET n = n - 1 WHERE status = OLD.status;
  UPDATE job_counts SET n = n + 1 WHERE status = NEW.status;
END;

CREATE TABLE job_events_next (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL REFERENCES jobs (id),
  event TEXT NOT NULL
    CHECK (event IN ('submitted', 'acknowledged', 'started', 'completed', 'failed', 'skipped', 'retried',
      'cancel_requested', 'cancelled')),
  hostname TEXT NOT NULL,
  created_at TEXT NOT NULL,
  revision INTEGER NOT NULL,
  data TEXT,
  lease_token_hash TEXT
);
INSERT INTO job_events_next (seq, job_id, event, hostname, created_at, revision, data, lease_token_hash)
SELECT seq, job_id, event, hostname, created_at, revision, data, lease_token_hash FROM job_events;
DROP TABLE job_events;
ALTER TABLE job_events_next RENAME TO job_events;
CREATE INDEX job_events_job ON job_events (job_id, seq);
