import type { Db } from "./session";
/** The revision the current batch took; valid in any statement after `bumpRevision`. */
export const CURRENT_REVISION = "(SELECT revision FROM store_revision WHERE id = 1)";

/**
 * The first statement of every write batch. With a guard (an SQL condition), nothing is bumped
 * when it is false, and every later statement of the batch is written to find nothing to do.
 */
export function bumpRevision(db: Db, guard = "1", ...params: unknown[]) {
  return db
    .prepare(`UPDATE store_revision SET revision = revision + 1 WHERE id = 1 AND (${guard})`)
    .bind(...params);
}

export async function currentRevision(db: Db): Promise<number> {
  const row = await db
    .prepare(`SELECT revision FROM store_revision WHERE id = 1`)
    .first<{ revision: number }>();
  return row?.revision ?? 0;
}
