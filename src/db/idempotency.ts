import type { Condition } from "./revision";
import type { Db } from "./session";

/** One Idempotency-Key use: who sent it, on which route, and what the request was. */
export type IdempotencyUse = {
  /** The sending key's rotation lineage (the `api_key_id` column). */
  apiKeyId: string;
  route: string;
  key: string;
  fingerprint: string;
  now: string;
  expiresAt: string;
};

export type StoredResponse = { fingerprint: string; status: number; body: string };

export function idempotencyUnused(use: IdempotencyUse): Condition {
  return {
    sql: "NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE api_key_id = ? AND route = ? AND key = ?)",
    params: [use.apiKeyId, use.route, use.key],
  };
}

/**
 * Stores the response in the same batch as the write it answers. `bodyQuery` is a SELECT yielding
 * one column `body` (the response body) and no row when the write did not apply.
 */
export function storeResponse(
  db: Db,
  use: IdempotencyUse,
  status: number,
  bodyQuery: string,
  ...params: unknown[]
) {
  return db
    .prepare(
      `INSERT INTO idempotency_keys (api_key_id, route, key, fingerprint, status, created_at, expires_at, body)
       SELECT ?, ?, ?, ?, ?, ?, ?, body FROM (${bodyQuery})`,
    )
    .bind(
      use.apiKeyId,
      use.route,
      use.key,
      use.fingerprint,
      status,
      use.now,
      use.expiresAt,
      ...params,
    );
}

export function findStoredResponse(db: Db, use: IdempotencyUse) {
  return db
    .prepare(
      "SELECT fingerprint, status, body FROM idempotency_keys WHERE api_key_id = ?1 AND route = ?2 AND key = ?3",
    )
    .bind(use.apiKeyId, use.route, use.key);
}

function purgeStatement(db: Db, now: string, limit: number) {
  return db
    .prepare(
      `DELETE FROM idempotency_keys WHERE (api_key_id, route, key) IN
         (SELECT api_key_id, route, key FROM idempotency_keys WHERE expires_at <= ?1 LIMIT ?2)`,
    )
    .bind(now, limit);
}

/**
 * Each write that stores a record removes up to this many expired ones in its own batch, so
 * records never pile up faster than they go, whatever the write rate; the cron takes the rest.
 */
export const PURGED_PER_WRITE = 2;

/** The statement a storing batch adds: expired records out, as many as the write puts in and more. */
export function purgeAlongside(db: Db, use: IdempotencyUse) {
  return purgeStatement(db, use.now, PURGED_PER_WRITE);
}

/** Removes expired keys, at most `limit` at a time; returns how many went. */
export async function purgeIdempotencyKeys(db: Db, now: string, limit = 1000): Promise<number> {
  return (await purgeStatement(db, now, limit).run()).meta.changes;
}
