-- Agents you can trust: a hostname belongs to one key's rotation lineage, and every delivery of a
-- job carries a lease token that its reports must show.

-- A key's lineage is the id of the first key of its rotation chain; a rotation's successor
-- inherits it, so what a key owns passes to the key it is rotated to. Keys that exist now get the
-- root of their chain; keys inserted without one (scripts, tests) get their own id by trigger.
ALTER TABLE api_keys ADD COLUMN lineage_id TEXT;
WITH RECURSIVE chain (id, root) AS (
  SELECT id, id FROM api_keys
  WHERE id NOT IN (SELECT replaced_by FROM api_keys WHERE replaced_by IS NOT NULL)
  UNION ALL
  SELECT k.replaced_by, chain.root FROM chain JOIN api_keys k ON k.id = chain.id
  WHERE k.replaced_by IS NOT NULL
)
UPDATE api_keys SET lineage_id = (SELECT root FROM chain WHERE chain.id = api_keys.id);
UPDATE api_keys SET lineage_id = id WHERE lineage_id IS NULL;
CREATE TRIGGER api_keys_lineage AFTER INSERT ON api_keys WHEN NEW.lineage_id IS NULL BEGIN
  UPDATE api_keys SET lineage_id = NEW.id WHERE id = NEW.id;
END;
-- The newest key of a lineage: the owner GET /agent shows.
CREATE INDEX api_keys_lineage ON api_keys (lineage_id) WHERE replaced_by IS NULL;

-- Hostname patterns (a JSON array such as ["db-*","web-01"]) a key may act as; NULL: any hostname.
ALTER TABLE api_keys ADD COLUMN agent_hostnames TEXT;

-- The lineage of the key that owns the hostname. Agents registered before this migration have
-- none: the first key that registers, claims, reports or extends a lease as one of them becomes
-- its owner (an admin can deregister it instead, which frees the hostname).
ALTER TABLE agents ADD COLUMN owner_lineage_id TEXT;

-- The SHA-256 (hex) of the open delivery's lease token, NULL once the delivery is over; and the
-- delivery that reported `started`, so each delivery starts once. Deliveries open when this
-- migration runs have no token: their reports are refused and they are handed out again, with a
-- token, when their lease runs out.
ALTER TABLE job_agents ADD COLUMN lease_token_hash TEXT;
ALTER TABLE job_agents ADD COLUMN started_delivery INTEGER;

-- Each `acknowledged` event keeps its delivery's token hash (never shown), so a report with an
-- earlier delivery's token is told it was superseded rather than that the token is unknown.
ALTER TABLE job_events ADD COLUMN lease_token_hash TEXT;
