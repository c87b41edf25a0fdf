-- One row: the store-wide revision. Every write batch bumps it first and stamps what it changed.
CREATE TABLE store_revision (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  revision INTEGER NOT NULL
);
INSERT INTO store_revision (id, revision) VALUES (1, 0);

-- seq is the rowid: AUTOINCREMENT never reuses a value, so seq order is commit order.
CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  operation TEXT NOT NULL,
  target_hostname TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'unprocessed'
    CHECK (status IN ('unprocessed', 'processing', 'completed', 'failed', 'partial_failure', 'skipped')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  created_revision INTEGER NOT NULL,
  revision INTEGER NOT NULL,
  retry_of TEXT,
  root_job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL CHECK (attempt >= 1)
);
CREATE INDEX jobs_status_seq ON jobs (status, seq);

CREATE TABLE job_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL REFERENCES jobs (id),
  event TEXT NOT NULL
    CHECK (event IN ('submitted', 'acknowledged', 'started', 'completed', 'failed', 'skipped', 'retried')),
  hostname TEXT NOT NULL,
  created_at TEXT NOT NULL,
  revision INTEGER NOT NULL,
  data TEXT
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

-- Per-status counts, moved by triggers inside the same transaction as the job rows,
-- so status_counts and total_items never scan jobs.
CREATE TABLE job_counts (
  status TEXT PRIMARY KEY,
  n INTEGER NOT NULL CHECK (n >= 0)
);
INSERT INTO job_counts (status, n) VALUES
  ('unprocessed', 0), ('processing', 0), ('completed', 0),
  ('failed', 0), ('partial_failure', 0), ('skipped', 0);

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
