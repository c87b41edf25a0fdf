import { parseAgentHostnames, parseScopes } from "../auth/api-key";
import type { ApiKey } from "../schemas/key";
import { pageOf } from "../schemas/paging";
import type { Db } from "./session";

export type ApiKeyRow = {
  id: string;
  prefix: string;
  key_hash: string;
  name: string;
  scopes: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  replaced_by: string | null;
  lineage_id: string | null;
  agent_hostnames: string | null;
};

type PublicRow = Omit<ApiKeyRow, "key_hash" | "lineage_id">;

const PUBLIC_COLUMNS =
  "id, prefix, name, scopes, created_at, expires_at, revoked_at, last_used_at, replaced_by, agent_hostnames";

/** Accepted now: neither revoked nor past its expiry (ISO timestamps in UTC compare as text). */
const ACCEPTED = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?5)";

export function toApiKey(row: PublicRow, now: string): ApiKey {
  const state = row.revoked_at
    ? "revoked"
    : row.expires_at !== null && row.expires_at <= now
      ? "expired"
      : "active";
  return {
    id: row.id,
    prefix: row.prefix,
    name: row.name,
    scopes: parseScopes(row.scopes),
    state,
    created_at: row.created_at,
    expires_at: row.expires_at,
    revoked_at: row.revoked_at,
    last_used_at: row.last_used_at,
    replaced_by: row.replaced_by,
    agent_hostnames: parseAgentHostnames(row.agent_hostnames),
  };
}

export function findApiKeyByPrefix(db: Db, prefix: string): Promise<ApiKeyRow | null> {
  return db.prepare("SELECT * FROM api_keys WHERE prefix = ?1").bind(prefix).first<ApiKeyRow>();
}

export function findApiKeyById(db: Db, id: string): Promise<PublicRow | null> {
  return db
    .prepare(`SELECT ${PUBLIC_COLUMNS} FROM api_keys WHERE id = ?1`)
    .bind(id)
    .first<PublicRow>();
}

/** Records use at most once a minute per key, so a busy key does not write on every request. */
export function touchApiKey(db: Db, id: string, now: string) {
  return db
    .prepare(
      "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < strftime('%Y-%m-%dT%H:%M:%fZ', ?2, '-60 seconds'))",
    )
    .bind(id, now)
    .run();
}

export type NewApiKey = {
  id: string;
  prefix: string;
  keyHash: string;
  name: string;
  scopes: string[];
  now: string;
  expiresAt: string | null;
  agentHostnames: string[] | null;
};

export async function insertApiKey(db: Db, key: NewApiKey): Promise<ApiKey> {
  const row = await db
    .prepare(
      `INSERT INTO api_keys (id, prefix, key_hash, name, scopes, created_at, expires_at, lineage_id, agent_hostnames)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?1, ?8) RETURNING ${PUBLIC_COLUMNS}`,
    )
    .bind(
      key.id,
      key.prefix,
      key.keyHash,
      key.name,
      key.scopes.join(","),
      key.now,
      key.expiresAt,
      key.agentHostnames === null ? null : JSON.stringify(key.agentHostnames),
    )
    .first<PublicRow>();
  if (!row) throw new Error("INSERT … RETURNING returned no row");
  return toApiKey(row, key.now);
}

/** A page of keys, newest first; `cursor` is `<created_at>~<rowid>` of the last key before it. */
export async function listApiKeys(
  db: Db,
  page: { limit: number; offset: number; cursor?: string | undefined },
  now: string,
): Promise<{ total_items: number; items: ApiKey[]; next_cursor: string | null }> {
  const [after = null, afterRow = null] = page.cursor?.split("~") ?? [];
  const where = after === null ? "" : "WHERE (created_at, rowid) < (?3, ?4)";
  const [count, rows] = await db.batch<{ n: number } | PublicRow>([
    db.prepare("SELECT COUNT(*) AS n FROM api_keys"),
    db
      .prepare(
        `SELECT rowid, ${PUBLIC_COLUMNS} FROM api_keys ${where} ORDER BY created_at DESC, rowid DESC LIMIT ?1 OFFSET ?2`,
      )
      .bind(page.limit + 1, page.offset, ...(after === null ? [] : [after, Number(afterRow)])),
  ]);
  const total = (count?.results[0] as { n: number } | undefined)?.n ?? 0;
  const { items, next_cursor } = pageOf(
    (rows?.results ?? []) as (PublicRow & { rowid: number })[],
    page.limit,
    (row) => `${row.created_at}~${row.rowid}`,
  );
  return { total_items: total, items: items.map((row) => toApiKey(row, now)), next_cursor };
}

/** Revokes the key (keeping the first revocation time); false when there is no such key. */
export async function revokeApiKey(db: Db, id: string, now: string): Promise<boolean> {
  const row = await db
    .prepare("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1 RETURNING id")
    .bind(id, now)
    .first();
  return row !== null;
}

export type Rotation = {
  oldId: string;
  newId: string;
  prefix: string;
  keyHash: string;
  now: string;
  expiresAt: string | null;
  oldExpiresAt: string;
};

/** The old key's lifetime (created to expiry), from `?5` (now), unless `?6` sets one. */
const SUCCESSOR_EXPIRY = `COALESCE(?6, CASE WHEN expires_at IS NOT NULL THEN strftime('%Y-%m-%dT%H:%M:%fZ', ?5,
  printf('%+.3f seconds', (julianday(expires_at) - julianday(created_at)) * 86400)) END)`;

/**
 * One batch: the successor copies the old key's name, scopes, hostname patterns, lifetime and
 * lineage (so it owns what the old key owned) only while the old key is accepted
 * and not yet rotated; the old key then names it and expires at `oldExpiresAt` (never later than
 * it already would). Null when nothing was written.
 */
export async function rotateApiKey(
  db: Db,
  rotation: Rotation,
): Promise<{ created: ApiKey; old: ApiKey } | null> {
  const r = rotation;
  const [inserted, updated] = await db.batch<PublicRow>([
    db
      .prepare(
        `INSERT INTO api_keys (id, prefix, key_hash, name, scopes, created_at, expires_at, lineage_id, agent_hostnames)
         SELECT ?2, ?3, ?4, name, scopes, ?5, ${SUCCESSOR_EXPIRY}, lineage_id, agent_hostnames FROM api_keys
         WHERE id = ?1 AND replaced_by IS NULL AND ${ACCEPTED}
         RETURNING ${PUBLIC_COLUMNS}`,
      )
      .bind(r.oldId, r.newId, r.prefix, r.keyHash, r.now, r.expiresAt),
    db
      .prepare(
        `UPDATE api_keys SET replaced_by = ?2,
           expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at < ?3 THEN expires_at ELSE ?3 END
         WHERE id = ?1 AND EXISTS (SELECT 1 FROM api_keys WHERE id = ?2)
         RETURNING ${PUBLIC_COLUMNS}`,
      )
      .bind(r.oldId, r.newId, r.oldExpiresAt),
  ]);
  const created = inserted?.results[0];
  const old = updated?.results[0];
  if (!created || !old) return null;
  return { created: toApiKey(created, r.now), old: toApiKey(old, r.now) };
}
