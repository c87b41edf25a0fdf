-- Webhooks: where to POST which job events, and each delivery's fate. The signing secret is kept
-- encrypted (AES-GCM under the Worker secret WEBHOOK_SECRET_KEY), so it can sign but a copy of the
-- database alone cannot.
CREATE TABLE webhooks (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  -- JSON array of event types, e.g. ["job.completed","job.failed"].
  events TEXT NOT NULL,
  -- JSON object {target_hostname?, operation_type?}, or NULL: every job.
  filter TEXT,
  secret_ciphertext TEXT NOT NULL,
  created_at TEXT NOT NULL,
  rotated_at TEXT
);

-- One row per event and webhook: what was sent (the body, so it can be sent again), how often,
-- and how it went. id is the Webhook-Id header: the same for every attempt of one delivery.
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,
  webhook_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  job_id TEXT,
  payload TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
-- GET /webhooks/{id}/deliveries, newest first.
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, created_at);
