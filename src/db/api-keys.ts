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
};

export function findApiKeyByPrefix(db: Db, prefix: string): Promise<ApiKeyRow | null> {
  return db.prepare("SELECT * FROM api_keys WHERE prefix = ?1").bind(prefix).first<ApiKeyRow>();
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
