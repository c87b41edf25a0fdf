-- `_any` jobs waiting for their time (not_before) leave the index every claim scans in seq order:
-- with them in it, 2,000 automatic retries waiting out their backoff cost each idle claim 10,000
-- rows read. They get an index of their own, by time, which a claim reads only up to now.
DROP INDEX jobs_any_open;
CREATE INDEX jobs_any_open ON jobs (seq)
  WHERE target_hostname = '_any' AND status IN ('unprocessed', 'processing') AND not_before IS NULL;
CREATE INDEX jobs_any_timed ON jobs (not_before)
  WHERE target_hostname = '_any' AND status IN ('unprocessed', 'processing') AND not_before IS NOT NULL;
