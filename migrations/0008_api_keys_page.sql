-- GET /keys pages newest first by (created_at, rowid), its cursor: one index range per page.
CREATE INDEX api_keys_created ON api_keys (created_at);
