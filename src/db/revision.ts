import type { Db } from "./session";

/** The revision the current batch took; valid in any statement after `begin`. */
export const CURRENT_REVISION = "(SELECT revision FROM store_revision WHERE id = 1)";

/** The highest job seq before the current batch: the batch's new jobs are those above it. */
export const SEQ_MARK = "(SELECT seq_mark FROM store_revision WHERE id = 1)";

/** An SQL condition with its anonymous `?` parameters. */
export type Condition = { sql: string; params: unknown[] };

export type WriteBatch = {
  /** The first statement of the batch: takes the next revision when every condition holds. */
  begin: D1PreparedStatement;
  /** An SQL condition, true in later statements of the same batch only if `begin` took the revision. */
  applies: string;
};

/**
 * D1 batches cannot branch in JavaScript, so the guard is evaluated once, in SQL, by the first
 * statement: it stamps a fresh ticket along with the revision, and every later statement checks
 * that the ticket is still its own. Either the whole batch writes or none of it does.
 */
export function beginWrite(db: Db, ...conditions: Condition[]): WriteBatch {
  const ticket = crypto.randomUUID();
  const guard = conditions.length > 0 ? conditions.map((c) => `(${c.sql})`).join(" AND ") : "1";
  return {
    begin: db
      .prepare(
        `UPDATE store_revision SET revision = revision + 1, ticket = '${ticket}',
           seq_mark = (SELECT COALESCE(MAX(seq), 0) FROM jobs)
         WHERE id = 1 AND ${guard}`,
      )
      .bind(...conditions.flatMap((c) => c.params)),
    applies: `((SELECT ticket FROM store_revision WHERE id = 1) = '${ticket}')`,
  };
}

export async function currentRevision(db: Db): Promise<number> {
  const row = await db
    .prepare("SELECT revision FROM store_revision WHERE id = 1")
    .first<{ revision: number }>();
  return row?.revision ?? 0;
}
