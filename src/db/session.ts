/** What the data functions need: the database, or a D1 session on it (read replication). */
export type Db = Pick<D1Database, "prepare" | "batch">;
