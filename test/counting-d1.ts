/** One D1 round trip: a statement's first/all/run/raw, a batch, or an exec. */
export type D1Call = {
  kind: string;
  sql: string[];
  rowsRead: number;
  rowsWritten: number;
  /** Rows read by each statement, in the order of `sql`. */
  reads: number[];
};

export type D1Counter = {
  calls: D1Call[];
  readonly count: number;
  readonly rowsRead: number;
  readonly rowsWritten: number;
  reset(): void;
};

export function createCounter(): D1Counter {
  const calls: D1Call[] = [];
  return {
    calls,
    get count() {
      return calls.length;
    },
    get rowsRead() {
      return calls.reduce((sum, call) => sum + call.rowsRead, 0);
    },
    get rowsWritten() {
      return calls.reduce((sum, call) => sum + call.rowsWritten, 0);
    },
    reset() {
      calls.length = 0;
    },
  };
}

type Meta = { rows_read?: number; rows_written?: number };

function record(counter: D1Counter, kind: string, sql: string[], metas: Meta[]) {
  counter.calls.push({
    kind,
    sql,
    rowsRead: metas.reduce((sum, meta) => sum + (meta.rows_read ?? 0), 0),
    rowsWritten: metas.reduce((sum, meta) => sum + (meta.rows_written ?? 0), 0),
    reads: metas.map((meta) => meta.rows_read ?? 0),
  });
}

type Preparer = Pick<D1Database, "prepare" | "batch">;

/**
 * A statement that counts its round trip. `first` and `raw` are answered from `all()`, which is
 * the same query D1 runs for them, because only `all()` and `run()` return `meta.rows_read`.
 */
class CountingStatement {
  constructor(
    readonly inner: D1PreparedStatement,
    readonly sql: string,
    private readonly counter: D1Counter,
  ) {}

  bind(...values: unknown[]) {
    return new CountingStatement(this.inner.bind(...values), this.sql, this.counter);
  }

  async all<T>() {
    const result = await this.inner.all<T>();
    record(this.counter, "all", [this.sql], [result.meta]);
    return result;
  }

  async run<T>() {
    const result = await this.inner.run<T>();
    record(this.counter, "run", [this.sql], [result.meta]);
    return result;
  }

  async first<T>(column?: string) {
    const result = await this.inner.all<Record<string, unknown>>();
    record(this.counter, "first", [this.sql], [result.meta]);
    const row = result.results[0];
    if (!row) return null;
    return (column === undefined ? row : row[column]) as T;
  }

  async raw<T extends unknown[]>(options?: { columnNames?: boolean }) {
    const result = await this.inner.all<Record<string, unknown>>();
    record(this.counter, "raw", [this.sql], [result.meta]);
    const rows = result.results.map((row) => Object.values(row) as T);
    const first = result.results[0];
    return options?.columnNames && first ? [Object.keys(first) as T, ...rows] : rows;
  }
}

function countingPreparer(inner: Preparer, counter: D1Counter) {
  return {
    prepare(sql: string) {
      return new CountingStatement(
        inner.prepare(sql),
        sql,
        counter,
      ) as unknown as D1PreparedStatement;
    },
    async batch<T>(statements: D1PreparedStatement[]) {
      const unwrapped = statements.map((s) => (s instanceof CountingStatement ? s.inner : s));
      const results = await inner.batch<T>(unwrapped);
      record(
        counter,
        "batch",
        statements.map((s) => (s instanceof CountingStatement ? s.sql : "?")),
        results.map((r) => r.meta),
      );
      return results;
    },
  };
}

/** The D1 binding, with every round trip (and its rows read and written) recorded in `counter`. */
export function countingD1(db: D1Database, counter: D1Counter): D1Database {
  const wrapped = {
    ...countingPreparer(db, counter),
    withSession(constraint?: string) {
      const session = db.withSession(constraint);
      return {
        ...countingPreparer(session, counter),
        getBookmark: () => session.getBookmark(),
      };
    },
    async exec(sql: string) {
      const result = await db.exec(sql);
      record(counter, "exec", [sql], []);
      return result;
    },
    dump: () => db.dump(),
  };
  return wrapped as unknown as D1Database;
}
