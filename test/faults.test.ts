import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { JobAcceptedSchema } from "../src/schemas/job";
import { checkConsistency, onD1 } from "./consistency";
import { direct } from "./direct-fetch";
import { admin, call, createJob, expectError, parse } from "./helpers";

const deleted = new Set<string>();

async function expectConsistent() {
  expect(await checkConsistency(onD1(env.DB), deleted)).toEqual([]);
}

/** Everything a write could have changed: revision, rows, counters. */
async function snapshot() {
  const results = await env.DB.batch([
    env.DB.prepare("SELECT revision FROM store_revision"),
    env.DB.prepare("SELECT COUNT(*) AS n, MAX(seq) AS seq FROM jobs"),
    env.DB.prepare("SELECT COUNT(*) AS n, MAX(seq) AS seq FROM job_events"),
    env.DB.prepare("SELECT status, n FROM job_counts ORDER BY status"),
  ]);
  return results.map((r) => r.results);
}

async function revision() {
  const row = await env.DB.prepare("SELECT revision FROM store_revision").first<{
    revision: number;
  }>();
  return row?.revision ?? -1;
}

async function withTrigger<T>(name: string, definition: string, run: () => Promise<T>) {
  await env.DB.prepare(`CREATE TRIGGER ${name} ${definition}`).run();
  try {
    return await run();
  } finally {
    await env.DB.prepare(`DROP TRIGGER ${name}`).run();
  }
}

const RAISE = "BEGIN SELECT RAISE(ABORT, 'injected failure'); END";
const marked = (marker: string) => `operation LIKE '%${marker}%'`;

type Prepared = { send: () => Promise<Response>; job?: string };
type Write = { route: string; prepare: (marker: string) => Promise<Prepared> };

const create: Write = {
  route: "POST /job",
  prepare: async (marker) => ({
    send: () => call("POST", "/job", { body: { operation: { type: `fault.${marker}` } } }),
  }),
};
const retry: Write = {
  route: "POST /job/{id}/retry",
  prepare: async (marker) => {
    const { job_id } = await createJob({ type: `fault.${marker}` });
    return { job: job_id, send: () => call("POST", `/job/${job_id}/retry`) };
  },
};
const remove: Write = {
  route: "DELETE /job/{id}",
  prepare: async (marker) => {
    const { job_id } = await createJob({ type: `fault.${marker}` });
    return { job: job_id, send: () => call("DELETE", `/job/${job_id}`) };
  },
};

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a statement failing inside a write batch (a test-only trigger raising)", () => {
  it.each<[string, Write, (m: string) => string]>([
    ["the job insert", create, (m) => `BEFORE INSERT ON jobs WHEN NEW.${marked(m)} ${RAISE}`],
    [
      "the submitted event",
      create,
      (m) => `BEFORE INSERT ON job_events WHEN NEW.data LIKE '%${m}%' ${RAISE}`,
    ],
    [
      "the counter trigger",
      create,
      (m) =>
        `BEFORE UPDATE ON job_counts WHEN EXISTS (SELECT 1 FROM jobs WHERE ${marked(m)}) ${RAISE}`,
    ],
    [
      "the new job",
      retry,
      (m) => `BEFORE INSERT ON jobs WHEN NEW.retry_of IS NOT NULL AND NEW.${marked(m)} ${RAISE}`,
    ],
    [
      "the new job's submitted event",
      retry,
      (m) =>
        `BEFORE INSERT ON job_events WHEN NEW.event = 'submitted' AND EXISTS (SELECT 1 FROM jobs WHERE id = NEW.job_id AND retry_of IS NOT NULL AND ${marked(m)}) ${RAISE}`,
    ],
    [
      "the original's revision",
      retry,
      (m) => `BEFORE UPDATE OF revision ON jobs WHEN OLD.${marked(m)} ${RAISE}`,
    ],
    [
      "the events delete",
      remove,
      (m) =>
        `BEFORE DELETE ON job_events WHEN EXISTS (SELECT 1 FROM jobs WHERE id = OLD.job_id AND ${marked(m)}) ${RAISE}`,
    ],
    ["the job delete", remove, (m) => `BEFORE DELETE ON jobs WHEN OLD.${marked(m)} ${RAISE}`],
  ])(
    "in %s (%s) rolls back the whole batch and answers 500 without internals",
    async (_, write, trigger) => {
      const marker = crypto.randomUUID().replaceAll("-", "");
      const { send, job } = await write.prepare(marker);
      const jobBefore = job ? await (await call("GET", `/job/${job}`)).json() : undefined;
      const before = await snapshot();
      const logged = vi.spyOn(console, "error").mockImplementation(() => {});

      const response = await withTrigger(`fault_${marker}`, trigger(marker), send);

      expect(await expectError(response, 500)).toEqual({
        type: "internal_error",
        error: "internal error",
        code: 500,
      });
      expect(await snapshot()).toEqual(before);
      if (job) expect(await (await call("GET", `/job/${job}`)).json()).toEqual(jobBefore);
      await expectConsistent();
      const lines = logged.mock.calls.map((args) => args.join(" "));
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0] ?? "")).toMatchObject({
        level: "error",
        request_id: response.headers.get("X-Request-Id"),
        status: 500,
        error: expect.stringContaining("injected failure"),
      });
      expect(lines[0]).not.toContain(await admin());

      const again = await send();
      expect(again.status).toBe(write === remove ? 204 : 201);
      if (write === remove && job) deleted.add(job);
      await expectConsistent();
    },
  );
});

type Fault = { method: string; error: Error; afterCommit?: boolean };

/** env.DB, except that the named method (batch, first, all, run) throws. Records every call. */
function faultyDb(fault: Fault) {
  const calls: string[] = [];
  const real = new WeakMap<object, object>();
  const wrap = <T extends object>(target: T): T => {
    const proxy = new Proxy(target, {
      get(object, property) {
        const value = Reflect.get(object, property, object);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          const name = String(property);
          calls.push(name);
          if (name === "batch") args[0] = (args[0] as object[]).map((s) => real.get(s) ?? s);
          if (name === fault.method && !fault.afterCommit) return Promise.reject(fault.error);
          const result = value.apply(object, args);
          if (name === fault.method)
            return Promise.resolve(result).then(() => Promise.reject(fault.error));
          return ["prepare", "bind", "withSession"].includes(name) ? wrap(result) : result;
        };
      },
    });
    real.set(proxy, target);
    return proxy;
  };
  return { db: wrap(env.DB), calls };
}

function fetchWith(db: D1Database, method: string, path: string, body?: unknown) {
  return direct(method, path, { db, body });
}

const TRANSIENT = [
  "D1_ERROR: Network connection lost.",
  "D1_ERROR: D1 DB is overloaded. Too many requests queued.",
  "D1_ERROR: D1 DB is overloaded. Requests queued for too long.",
  "D1_ERROR: D1 DB reset because its code was updated.",
  "D1_ERROR: D1 DB storage operation exceeded timeout which caused object to be reset.",
  "D1_ERROR: Internal error while starting up D1 DB storage caused object to be reset.",
  "D1_ERROR: Cannot resolve D1 DB due to transient issue on remote node.",
];

async function expectUnavailable(response: Response) {
  const retryAfter = Number(response.headers.get("Retry-After"));
  expect(await expectError(response, 503)).toEqual({
    type: "unavailable",
    error: "database temporarily unavailable",
    details: "retry after a short delay",
    code: 503,
  });
  expect(retryAfter).toBeGreaterThan(0);
}

describe("D1's transient errors", () => {
  it.each(TRANSIENT)(
    "turn '%s' on a write into 503 with Retry-After, tried once",
    async (message) => {
      vi.spyOn(console, "error").mockImplementation(() => {});
      const { db, calls } = faultyDb({ method: "batch", error: new Error(message) });
      const before = await snapshot();
      await expectUnavailable(await fetchWith(db, "POST", "/job", { operation: { type: "x" } }));
      expect(calls.filter((c) => c === "batch")).toHaveLength(1);
      expect(await snapshot()).toEqual(before);
    },
  );

  it("answer 503, not 401, on every route when the key lookup itself fails", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const { db } = faultyDb({ method: "first", error: new Error(TRANSIENT[0]) });
    const { job_id } = await createJob();
    for (const [method, path, body] of [
      ["GET", "/job", undefined],
      ["GET", `/job/${job_id}`, undefined],
      ["POST", "/job", { operation: { type: "x" } }],
      ["POST", `/job/${job_id}/retry`, undefined],
      ["DELETE", `/job/${job_id}`, undefined],
    ] as const) {
      await expectUnavailable(await fetchWith(db, method, path, body));
    }
  });

  it("turn reads into 503 too, and the health check into 503", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const { job_id } = await createJob();
    const { db } = faultyDb({ method: "batch", error: new Error(TRANSIENT[1]) });
    await expectUnavailable(await fetchWith(db, "GET", "/job"));
    await expectUnavailable(await fetchWith(db, "GET", `/job/${job_id}`));
    const down = faultyDb({ method: "first", error: new Error(TRANSIENT[0]) });
    const health = await fetchWith(down.db, "GET", "/health");
    expect(health.headers.get("Retry-After")).toBeTruthy();
    await expectError(health, 503);
  });

  it("are never retried by the Worker: a write whose answer was lost is stored once", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const { db, calls } = faultyDb({
      method: "batch",
      error: new Error(TRANSIENT[0]),
      afterCommit: true,
    });
    const before = await revision();
    const marker = crypto.randomUUID();
    await expectUnavailable(
      await fetchWith(db, "POST", "/job", { operation: { type: `lost.${marker}` } }),
    );
    expect(calls.filter((c) => c === "batch")).toHaveLength(1);
    const stored = await env.DB.prepare("SELECT COUNT(*) AS n FROM jobs WHERE operation LIKE ?1")
      .bind(`%${marker}%`)
      .first<{ n: number }>();
    expect(stored?.n).toBe(1);
    expect(await revision()).toBe(before + 1);
    await expectConsistent();
  });

  it("leave other D1 errors a 500 that names no table, SQL or D1 code", async () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const { db } = faultyDb({
      method: "batch",
      error: new Error("D1_ERROR: no such table: jobs: SQLITE_ERROR"),
    });
    const response = await fetchWith(db, "POST", "/job", { operation: { type: "x" } });
    expect(await expectError(response, 500)).toEqual({
      type: "internal_error",
      error: "internal error",
      code: 500,
    });
    expect(logged).toHaveBeenCalledTimes(1);
  });

  it("do not stop the next request from succeeding", async () => {
    const response = await call("POST", "/job", { body: { operation: { type: "after.fault" } } });
    expect(response.status).toBe(201);
    await parse(response, JobAcceptedSchema);
    await expectConsistent();
  });
});
