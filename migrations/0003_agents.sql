-- Registered agents. cursor_seq is the highest job seq already looked at for this agent: a claim
-- turns newer jobs meant for it (hostname, _all, labels) into pending rows, so it never rescans.
CREATE TABLE agents (
  hostname TEXT PRIMARY KEY,
  labels TEXT NOT NULL DEFAULT '{}',
  registered_at TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  cursor_seq INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE agent_labels (
  hostname TEXT NOT NULL REFERENCES agents (hostname),
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (hostname, key)
);
CREATE INDEX agent_labels_key_value ON agent_labels (key, value);

-- One row per job and agent: the agent's state (its highest-priority event), its lease and its
-- answer. 'pending' rows are work an agent has not claimed yet; they are not agent states.
CREATE TABLE job_agents (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  job_seq INTEGER NOT NULL,
  hostname TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('pending', 'acknowledged', 'started', 'completed', 'failed', 'skipped')),
  delivery INTEGER NOT NULL DEFAULT 0,
  lease_expires_at TEXT,
  started_at TEXT,
  finished_at TEXT,
  result TEXT,
  changed INTEGER,
  error TEXT,
  revision INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (job_id, hostname)
);
-- What an agent may claim, oldest first, and the leases a claim checks for expiry.
CREATE INDEX job_agents_open ON job_agents (hostname, job_seq)
  WHERE state IN ('pending', 'acknowledged', 'started');
CREATE INDEX job_agents_lease ON job_agents (lease_expires_at)
  WHERE state IN ('acknowledged', 'started');
CREATE INDEX job_agents_revision ON job_agents (revision);

-- _any jobs nobody has finished: what every claim scans, however many jobs are done.
CREATE INDEX jobs_any_open ON jobs (seq)
  WHERE target_hostname = '_any' AND status IN ('unprocessed', 'processing');

-- The list's summary of the agents' answers, kept by the claim and report batches.
ALTER TABLE jobs ADD COLUMN result TEXT;
ALTER TABLE jobs ADD COLUMN changed INTEGER;
ALTER TABLE jobs ADD COLUMN error TEXT;
ALTER TABLE jobs ADD COLUMN hostname TEXT;
