import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import worker from "../src/index";
import { countingD1, createCounter, type D1Counter } from "./counting-d1";
import { createKey } from "./helpers";

const SEEDED_JOBS = 10_000;
const BASE = "http://jobs.test";

/** 10,000 jobs in four statuses (none `partial_failure` or `skipped`), each with a `submitted` event. */
async function seed() {
  await env.DB.batch([
    env.DB.prepare(
      `INSERT INTO jobs (id, operation, target_hostname, status, created_at, updated_at, created_revision, revision, root_job_id, attempt)
       WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1),
       seeded AS MATERIALIZED (
         SELECT i, lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))) AS id
         FROM n
       )
       SELECT id, '{"type":"budget.seed"}', 'seed-host',
              CASE i % 4 WHEN 0 THEN 'unprocessed' WHEN 1 THEN 'processing' WHEN 2 THEN 'completed' ELSE 'failed' END,
              strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0, 0, id, 1
       FROM seeded`,
    ).bind(SEEDED_JOBS),
    env.DB.prepare(
      `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
       SELECT id, 'submitted', '_api', created_at, 0, NULL FROM jobs WHERE target_hostname = 'seed-host'`,
    ),
  ]);
}

type Measured = {
  response: Response;
  body: string;
  counter: D1Counter;
};

/** One request through the Worker's fetch with a counting D1 binding and the key cache on. */
async function measure(
  method: string,
  path: string,
  options: { key?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Measured> {
  const counter = createCounter();
  const headers = new Headers(options.headers);
  if (options.key) headers.set("Authorization", `Bearer ${options.key}`);
  if (options.body !== undefined) headers.set("Content-Type", "application/json");
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${BASE}${path}`, { method, headers, body }),
    { ...env, DB: countingD1(env.DB, counter), KEY_CACHE_SECONDS: "30" },
    ctx,
  );
  const text = await response.text();
  await waitOnExecutionContext(ctx);
  return { response, body: text, counter };
}

/** Each round trip, for failure messages: its kind, rows read and the start of its SQL. */
function trace(counter: D1Counter): string {
  return counter.calls
    .map(
      (c) =>
        `${c.kind} read=${c.rowsRead}: ${c.sql.map((q) => q.replace(/\s+/g, " ").slice(0, 60)).join(" | ")}`,
    )
    .join("\n");
}

function expectOneCall(m: Measured, status: number) {
  expect(m.response.status, m.body).toBe(status);
  expect(m.counter.count, trace(m.counter)).toBe(1);
}

/** job_counts has one row per status; the list reads all of them for status_counts. */
const COUNTER_ROWS = 7;
/** A list also reads the store revision, for its ETag. */
const REVISION_ROW = 1;

let key: string;

beforeAll(async () => {
  await seed();
  key = await createKey(["admin"]);
  await measure("GET", "/job?limit=1", { key });
});

async function json<T>(m: Measured): Promise<T> {
  return JSON.parse(m.body) as T;
}

async function newJob(target?: string): Promise<string> {
  const body =
    target === undefined
      ? { operation: { type: "budget" } }
      : { operation: { type: "budget" }, target_hostname: target };
  const created = await measure("POST", "/job", { key, body });
  expectOneCall(created, 201);
  return (await json<{ job_id: string }>(created)).job_id;
}

describe("D1 budget with 10,000 jobs, key already verified", () => {
  it("POST /job, GET /job/{id}, POST /job/{id}/retry, POST /job/retry and DELETE /job/{id} are one round trip each", async () => {
    const id = await newJob();
    expectOneCall(await measure("GET", `/job/${id}`, { key }), 200);
    const retry = await measure("POST", `/job/${id}/retry`, { key });
    expectOneCall(retry, 201);
    expect(retry.counter.calls[0]?.kind).toBe("batch");
    expectOneCall(await measure("POST", "/job/retry", { key, body: { job_ids: [id] } }), 200);
    expectOneCall(await measure("DELETE", `/job/${id}`, { key }), 204);
    expectOneCall(await measure("GET", "/health"), 200);
  });

  it("GET /keys/self is one round trip, for a key without admin too", async () => {
    expectOneCall(await measure("GET", "/keys/self", { key }), 200);
    const reader = await createKey(["job:read"]);
    await measure("GET", "/keys/self", { key: reader });
    expectOneCall(await measure("GET", "/keys/self", { key: reader }), 200);
  });

  it("GET /job is one round trip, filtered or not, for any page", async () => {
    for (const query of ["", "?status=failed", "?status=submitted&limit=100&offset=300"]) {
      expectOneCall(await measure("GET", `/job${query}`, { key }), 200);
    }
  });

  it("answers 404 for a missing job in at most one more round trip", async () => {
    const missing = crypto.randomUUID();
    expectOneCall(await measure("GET", `/job/${missing}`, { key }), 404);
    for (const [method, path] of [
      ["POST", `/job/${missing}/retry`],
      ["DELETE", `/job/${missing}`],
    ] as const) {
      const m = await measure(method, path, { key });
      expect(m.response.status).toBe(404);
      expect(m.counter.count, trace(m.counter)).toBeLessThanOrEqual(2);
    }
  });

  it("agent endpoints are one round trip each: register, list, claim, report, lease, deregister", async () => {
    const host = `budget-${crypto.randomUUID().slice(0, 8)}`;
    expectOneCall(await measure("PUT", `/agent/${host}`, { key, body: {} }), 200);
    expectOneCall(await measure("GET", "/agent", { key }), 200);
    await newJob(host);
    const claim = await measure("POST", `/agent/${host}/claim`, { key, body: {} });
    expectOneCall(claim, 200);
    const [claimed] = (await json<{ jobs: { id: string; lease_token: string }[] }>(claim)).jobs;
    const id = claimed?.id;
    const lease_token = claimed?.lease_token;
    expect(id).toBeDefined();
    const path = `/agent/${host}/job/${id}/event`;
    const started = { event: "started", lease_token };
    expectOneCall(await measure("POST", path, { key, body: started }), 200);
    const lease = { lease_token, lease_seconds: 600 };
    expectOneCall(
      await measure("POST", `/agent/${host}/job/${id}/lease`, { key, body: lease }),
      200,
    );
    const done = { event: "completed", result: { ok: true }, changed: false, lease_token };
    expectOneCall(await measure("POST", path, { key, body: done }), 200);
    expectOneCall(await measure("DELETE", `/agent/${host}`, { key }), 204);
  });
});

describe("retries, delays and cancel with 10,000 jobs", () => {
  it("a failure report that makes the next attempt is one round trip, and so is a cancel, with a webhook listening", async () => {
    const host = `budget-${crypto.randomUUID().slice(0, 8)}`;
    expectOneCall(await measure("PUT", `/agent/${host}`, { key, body: {} }), 200);
    const hook = await measure("POST", "/webhooks", {
      key,
      body: { url: "https://receiver.test/budget", events: ["job.failed", "job.retried"] },
    });
    expect(hook.response.status, hook.body).toBe(201);
    const body = {
      operation: { type: "budget" },
      target_hostname: host,
      retry_policy: { max_attempts: 2, backoff: "fixed", delay_seconds: 60, jitter: "none" },
    };
    const created = await measure("POST", "/job", { key, body });
    expectOneCall(created, 201);
    const { job_id } = await json<{ job_id: string }>(created);
    // Other tests' `_any` jobs are due to a new agent too: take ours from among them.
    const claim = await measure("POST", `/agent/${host}/claim`, { key, body: { limit: 100 } });
    expectOneCall(claim, 200);
    const { jobs } = await json<{ jobs: { id: string; lease_token: string }[] }>(claim);
    const claimed = jobs.find((j) => j.id === job_id);
    const failed = { event: "failed", error: "boom", lease_token: claimed?.lease_token };
    const report = await measure("POST", `/agent/${host}/job/${claimed?.id}/event`, {
      key,
      body: failed,
    });
    expectOneCall(report, 200);
    expect(report.counter.calls[0]?.kind).toBe("batch");
    const next = await env.DB.prepare("SELECT id FROM jobs WHERE retry_of = ?1")
      .bind(claimed?.id)
      .first<{ id: string }>();
    expect(next?.id).toBeDefined();
    expectOneCall(await measure("POST", `/job/${next?.id}/cancel`, { key }), 200);
  });

  it("the lists of jobs waiting and of dead letters read their partial index, not the table", async () => {
    for (const query of [
      "?due=false&limit=100",
      "?retries_exhausted=true&limit=100",
      "?due=true&limit=10",
    ]) {
      const m = await measure("GET", `/job${query}`, { key });
      expectOneCall(m, 200);
      const { total_items } = await json<{ total_items: number }>(m);
      // A page of 10 (and the few jobs waiting it passes over), or every job the filter keeps.
      const kept = query.includes("due=true") ? 10 : total_items;
      expect(m.counter.rowsRead, `${query}: ${trace(m.counter)}`).toBeLessThanOrEqual(
        3 * kept + COUNTER_ROWS + 20,
      );
    }
  });
});

describe("idle agents", () => {
  it("write nothing when nothing is due, and last_seen at most once per half TTL", async () => {
    const host = `idle-${crypto.randomUUID().slice(0, 8)}`;
    expectOneCall(await measure("PUT", `/agent/${host}`, { key, body: {} }), 200);
    const claim = (body = {}) => measure("POST", `/agent/${host}/claim`, { key, body });
    // Other tests' `_any` jobs are due to a new agent: take them first.
    while ((await json<{ jobs: unknown[] }>(await claim({ limit: 100 }))).jobs.length > 0);
    const idle = await claim();
    expectOneCall(idle, 200);
    expect(await json(idle)).toEqual({ jobs: [] });
    expect(idle.counter.rowsWritten, trace(idle.counter)).toBe(0);

    const lastSeen = () =>
      env.DB.prepare("SELECT last_seen FROM agents WHERE hostname = ?1")
        .bind(host)
        .first<{ last_seen: string }>();
    const halfTtlAgo = new Date(Date.now() - 31_000).toISOString();
    await env.DB.prepare("UPDATE agents SET last_seen = ?2 WHERE hostname = ?1")
      .bind(host, halfTtlAgo)
      .run();
    const stale = await claim();
    expectOneCall(stale, 200);
    expect(stale.counter.rowsWritten, "the agent's row alone").toBe(1);
    expect((await lastSeen())?.last_seen).not.toBe(halfTtlAgo);
    const again = await claim();
    expect(again.counter.rowsWritten, trace(again.counter)).toBe(0);

    await newJob(host);
    const handedOut = await claim();
    expectOneCall(handedOut, 200);
    expect((await json<{ jobs: unknown[] }>(handedOut)).jobs).toHaveLength(1);
    expect(handedOut.counter.rowsWritten).toBeGreaterThan(0);
  });
});

describe("D1 budget with 10,000 jobs, key not yet verified", () => {
  it("takes one more round trip to look the key up, plus a last-used write (not awaited) at most once a minute", async () => {
    const fresh = await createKey(["job:read", "job:write"]);
    const first = await measure("GET", "/job", { key: fresh });
    expect(first.response.status).toBe(200);
    expect(first.counter.count, trace(first.counter)).toBe(3);
    expect(first.counter.calls.map((c) => c.sql[0]?.split(" ").slice(0, 3).join(" "))).toEqual(
      expect.arrayContaining(["SELECT * FROM", "UPDATE api_keys SET"]),
    );

    const recent = await createKey(["job:read"]);
    await env.DB.prepare("UPDATE api_keys SET last_used_at = ?1 WHERE prefix = ?2")
      .bind(new Date().toISOString(), recent.slice(0, 17))
      .run();
    const again = await measure("GET", "/job", { key: recent });
    expect(again.response.status).toBe(200);
    expect(again.counter.count, trace(again.counter)).toBe(2);

    const cached = await measure("GET", "/job", { key: fresh });
    expectOneCall(cached, 200);
  });
});

describe("rows read with 10,000 jobs", () => {
  it("GET /job reads the page (offset + limit jobs) and the counters, whatever the filter", async () => {
    const pages = [
      { limit: 10, offset: 0 },
      { limit: 100, offset: 0 },
      { limit: 100, offset: 2000 },
    ];
    for (const filter of ["", "status=failed&", "status=unprocessed&", "status=partial_failure&"]) {
      for (const { limit, offset } of pages) {
        const m = await measure("GET", `/job?${filter}limit=${limit}&offset=${offset}`, { key });
        expectOneCall(m, 200);
        const { items, total_items } = await json<{ items: unknown[]; total_items: number }>(m);
        expect(items.length).toBe(Math.max(0, Math.min(limit, total_items - offset)));
        // One row past the page tells whether it is the last.
        expect(m.counter.rowsRead, `${filter} ${limit} ${offset}`).toBeLessThanOrEqual(
          offset + limit + 1 + COUNTER_ROWS + REVISION_ROW,
        );
      }
    }
  });

  it("GET /job with a cursor reads one page however deep it is", async () => {
    for (const filter of ["", "status=failed&", "status=unprocessed&"]) {
      const first = await measure("GET", `/job?${filter}limit=100&offset=500`, { key });
      const { next_cursor } = await json<{ next_cursor: string | null }>(first);
      expect(next_cursor, filter).not.toBeNull();
      const m = await measure("GET", `/job?${filter}limit=100&cursor=${next_cursor}`, { key });
      expectOneCall(m, 200);
      const { items } = await json<{ items: { id: string }[] }>(m);
      const next = await measure("GET", `/job?${filter}limit=100&offset=600`, { key });
      const expected = (await json<{ items: { id: string }[] }>(next)).items;
      expect(expected.length, filter).toBeGreaterThan(0);
      expect(
        items.map((j) => j.id),
        filter,
      ).toEqual(expected.map((j) => j.id));
      expect(m.counter.rowsRead, filter).toBeLessThanOrEqual(100 + COUNTER_ROWS + 1 + REVISION_ROW);
      expect(next.counter.rowsRead, filter).toBeGreaterThan(600);
    }
  });

  it("GET /job/{id} reads the job and its events, nothing else", async () => {
    const id = await newJob();
    for (let i = 0; i < 3; i++)
      expectOneCall(await measure("POST", `/job/${id}/retry`, { key }), 201);
    const m = await measure("GET", `/job/${id}`, { key });
    expectOneCall(m, 200);
    const events = (await json<{ timeline: unknown[] }>(m)).timeline.length;
    expect(events).toBe(4);
    // The job row, its events, and one step into the id index.
    expect(m.counter.rowsRead).toBeLessThanOrEqual(1 + events + 1);
  });
});

describe("the console's filters and refresh with 10,000 jobs", () => {
  it("GET /job with a matching If-None-Match is one round trip reading the revision alone", async () => {
    const full = await measure("GET", "/job?limit=25", { key });
    expectOneCall(full, 200);
    const etag = full.response.headers.get("ETag") ?? "";
    expect(etag).toMatch(/^"s\d+"$/);
    const unchanged = await measure("GET", "/job?limit=25", {
      key,
      headers: { "If-None-Match": etag },
    });
    expectOneCall(unchanged, 304);
    expect(unchanged.counter.rowsRead, trace(unchanged.counter)).toBe(1);
    expect(full.counter.rowsRead).toBeGreaterThan(25 + COUNTER_ROWS);
    const filtered = await measure("GET", "/job?status=failed&target=seed-host&limit=25", {
      key,
      headers: { "If-None-Match": etag },
    });
    expectOneCall(filtered, 304);
    expect(filtered.counter.rowsRead).toBe(1);
  });

  it("GET /job?target= and ?held_by= read the matching jobs through their index, not the table", async () => {
    const host = `budget-${crypto.randomUUID().slice(0, 8)}`;
    expectOneCall(await measure("PUT", `/agent/${host}`, { key, body: {} }), 200);
    for (let i = 0; i < 5; i++) await newJob(host);
    const byTarget = await measure("GET", `/job?target=${host}&limit=3`, { key });
    expectOneCall(byTarget, 200);
    expect((await json<{ total_items: number }>(byTarget)).total_items).toBe(5);
    for (const filter of ["", "status=failed&", "status=failed&retries_exhausted=false&"]) {
      const m = await measure("GET", `/job?${filter}target=seed-host&limit=25`, { key });
      expectOneCall(m, 200);
      const { total_items } = await json<{ total_items: number }>(m);
      expect(total_items, filter).toBe(filter ? SEEDED_JOBS / 4 : SEEDED_JOBS);
      // The page (and the row past it; with a status, the target's jobs in other statuses too:
      // a quarter are failed), the counters, the target's counters (a row per status), the
      // revision: not the 10,000 jobs.
      const stepped = filter ? 4 * 26 : 26;
      expect(m.counter.rowsRead, `${filter} ${trace(m.counter)}`).toBeLessThanOrEqual(
        stepped + COUNTER_ROWS + COUNTER_ROWS + REVISION_ROW + 2,
      );
    }

    // Other tests' `_any` jobs are due to a new agent too: it holds them as well.
    const claim = await measure("POST", `/agent/${host}/claim`, { key, body: { limit: 3 } });
    expectOneCall(claim, 200);
    const held = await measure("GET", `/job?held_by=${host}&limit=10`, { key });
    expectOneCall(held, 200);
    expect((await json<{ total_items: number }>(held)).total_items).toBe(3);
    const open = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM job_agents WHERE hostname = ?1 AND state IN ('pending', 'acknowledged', 'started')",
    )
      .bind(host)
      .first<number>("n");
    // Twice (page and count): the agent's open rows (index entry and row; pending ones are stepped
    // over) and the 3 jobs it holds; not the 10,000 others.
    expect(held.counter.rowsRead, trace(held.counter)).toBeLessThanOrEqual(
      2 * (2 * (open ?? 0) + 3) + COUNTER_ROWS + REVISION_ROW + 2,
    );

    const agents = await measure("GET", "/agent?limit=100", { key });
    expectOneCall(agents, 200);
    const { items } = await json<{ items: { hostname: string; held_jobs: number }[] }>(agents);
    expect(items.find((a) => a.hostname === host)?.held_jobs).toBe(3);
    const heldTotal = items.reduce((sum, a) => sum + a.held_jobs, 0);
    // Per agent: its row, its owner key, and its open rows (held or pending).
    expect(agents.counter.rowsRead, trace(agents.counter)).toBeLessThanOrEqual(
      items.length * 4 + 2 * heldTotal + 10,
    );
  });
});

describe("jobs waiting for their time", () => {
  /** 2,000 jobs for `target` waiting an hour, as the writes that made them would leave the store. */
  async function seedWaiting(target: string) {
    await env.DB.prepare(
      `INSERT INTO jobs (id, operation, target_hostname, status, created_at, updated_at, created_revision, revision, root_job_id, attempt, not_before)
       WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000),
       seeded AS MATERIALIZED (SELECT lower(hex(randomblob(16))) AS id FROM n)
       SELECT id, '{"type":"budget.waiting"}', ?1, 'unprocessed',
              strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0, 0, id, 2,
              strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 hour')
       FROM seeded`,
    )
      .bind(target)
      .run();
    await env.DB.prepare(
      "UPDATE store_revision SET seq_mark = (SELECT MAX(seq) FROM jobs) WHERE id = 1",
    ).run();
  }

  /** A new agent with nothing due, then `seed`: what its claims that find nothing read. */
  async function idleClaims(seed: (host: string) => Promise<void>) {
    const host = `waiting-${crypto.randomUUID().slice(0, 8)}`;
    expectOneCall(await measure("PUT", `/agent/${host}`, { key, body: {} }), 200);
    const claim = () => measure("POST", `/agent/${host}/claim`, { key, body: { limit: 100 } });
    // Other tests' `_any` jobs are due to a new agent: take them first.
    while ((await json<{ jobs: unknown[] }>(await claim())).jobs.length > 0);
    const before = await claim();
    expectOneCall(before, 200);
    await seed(host);
    // The first claim after that many new jobs takes them in (its pending rows) and moves the
    // agent's cursor past them: a write.
    expectOneCall(await claim(), 200);
    const waiting = await claim();
    expectOneCall(waiting, 200);
    expect(await json(waiting)).toEqual({ jobs: [] });
    const heavy = waiting.counter.calls.flatMap((c) =>
      c.sql
        .map((q, i) => `${c.reads[i]}: ${q.replace(/\s+/g, " ").slice(0, 1500)}`)
        .filter((line) => Number(line.split(":")[0]) > 100),
    );
    return { before: before.counter.rowsRead, waiting: waiting.counter.rowsRead, heavy };
  }

  it("cost a claim nothing: an agent with nothing due reads the same rows with 2,000 `_any` jobs waiting as with none", async () => {
    const rows = await idleClaims(() => seedWaiting("_any"));
    expect(rows.waiting, rows.heavy.join("\n")).toBeLessThanOrEqual(rows.before + 10);
  });

  it("nor when they are the agent's own: 2,000 jobs for it waiting cost its claims nothing", async () => {
    const rows = await idleClaims((host) => seedWaiting(host));
    expect(rows.waiting, rows.heavy.join("\n")).toBeLessThanOrEqual(rows.before + 10);
  });
});
