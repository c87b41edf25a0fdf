-- GET /job?target=: the jobs of one target, newest first, without reading the others.
CREATE INDEX jobs_target_seq ON jobs (target_hostname, seq);

-- Per-target, per-status counts, moved by triggers like job_counts, so total_items of a target's
-- list is a few counter rows however many jobs the target has.
CREATE TABLE job_target_counts (
  target_hostname TEXT NOT NULL,
  status TEXT NOT NULL,
  n INTEGER NOT NULL CHECK (n >= 0),
  PRIMARY KEY (target_hostname, status)
) WITHOUT ROWID;
INSERT INTO job_target_counts (target_hostname, status, n)
  SELECT target_hostname, status, COUNT(*) FROM jobs GROUP BY target_hostname, status;

CREATE TRIGGER jobs_target_count_insert AFTER INSERT ON jobs BEGIN
  INSERT INTO job_target_counts (target_hostname, status, n) VALUES (NEW.target_hostname, NEW.status, 1)
    ON CONFLICT (target_hostname, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_target_count_delete AFTER DELETE ON jobs BEGIN
  UPDATE job_target_counts SET n = n - 1
    WHERE target_hostname = OLD.target_hostname AND status = OLD.status;
END;

CREATE TRIGGER jobs_target_count_update AFTER UPDATE OF status ON jobs
WHEN OLD.status <> NEW.status BEGIN
  UPDATE job_target_counts SET n = n - 1
    WHERE target_hostname = OLD.target_hostname AND status = OLD.status;
  INSERT INTO job_target_counts (target_hostname, status, n) VALUES (NEW.target_hostname, NEW.status, 1)
    ON CONFLICT (target_hostname, status) DO UPDATE SET n = n + 1;
END;
