import {
  createExecutionContext,
  createScheduledController,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  applyRetention,
  PURGE_MAX_BATCHES,
  RETENTION_BATCH,
  RETENTION_MAX_BATCHES,
} from "../src/background/retention";
import { PURGED_PER_WRITE } from "../src/db/idempotency";
import worker from "../src/index";
import { countingD1, createCounter } from "./counting-d1";
import { call, countersMatchJobs, createJob } from "./helpers";

const DAY_MS = 86_400_000;

async function runCron(options: { days?: string; db?: D1Database } = {}) {
  const ctx = createExecutionContext();
  await worker.scheduled(
    createScheduledController({ scheduledTime: Date.now(), cron: "*/5 * * * *" }),
    { ...env, RETENTION_DAYS: options.days ?? "30", DB: options.db ?? env.DB } as Env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
}

async function revision(): Promise<number> {
  const row = await env.DB.prepare("SELECT revision FROM store_revision").first<{
    revision: number;
  }>();
  return row?.revision ?? -1;
}

/** Makes existing jobs look `days` old, as if created then. */
async function age(ids: string[], days: number) {
  const at = new Date(Date.now() - days * DAY_MS).toISOString();
  await env.DB.prepare(
    "UPDATE jobs SET created_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))",
  )
    .bind(at, JSON.stringify(ids))
    .run();
}

/** `n` jobs created `days` ago, each with a `submitted` event, marked by their operation type. */
async function seedOld(n: number, days: number, type: string) {
  const at = new Date(Date.now() - days * DAY_MS).toISOString();
  await env.DB.batch([
    env.DB.prepare(
      `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision, root_job_id, attempt)
       WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1),
       made AS MATERIALIZED (SELECT lower(hex(randomblob(16))) AS id FROM k)
       SELECT id, json_object('type', ?3), '_any', ?2, ?2, 0, 0, id, 1 FROM made`,
    ).bind(n, at, type),
    env.DB.prepare(
      `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
       SELECT id, 'submitted', '_api', created_at, 0, NULL FROM jobs WHERE json_extract(operation, '$.type') = ?1`,
    ).bind(type),
  ]);
}

async function countOfType(type: string) {
  const row = await env.DB.prepare(
    `SELECT (SELECT COUNT(*) FROM jobs WHERE json_extract(operation, '$.type') = ?1) AS jobs,
            (SELECT COUNT(*) FROM job_events WHERE job_id IN
               (SELECT id FROM jobs WHERE json_extract(operation, '$.type') = ?1)) AS events`,
  )
    .bind(type)
    .first<{ jobs: number; events: number }>();
  return row ?? { jobs: -1, events: -1 };
}

describe("retention (the cron handler)", () => {
  it("deletes jobs older than RETENTION_DAYS with their events, keeps the rest, and takes a revision", async () => {
    const old = await createJob({ type: "retention.old" });
    const retried = await call("POST", `/job/${old.job_id}/retry`);
    expect(retried.status).toBe(201);
    const young = await createJob({ type: "retention.young" });
    const recent = await createJob({ type: "retention.recent" });
    await age([old.job_id], 31);
    await age([recent.job_id], 29);
    const before = await revision();

    await runCron();

    expect((await call("GET", `/job/${old.job_id}`)).status).toBe(404);
    expect((await call("GET", `/job/${young.job_id}`)).status).toBe(200);
    expect((await call("GET", `/job/${recent.job_id}`)).status).toBe(200);
    const { job_id: copy } = (await retried.json()) as { job_id: string };
    expect((await call("GET", `/job/${copy}`)).status).toBe(200);
    const events = await env.DB.prepare("SELECT COUNT(*) AS n FROM job_events WHERE job_id = ?1")
      .bind(old.job_id)
      .first<{ n: number }>();
    expect(events?.n).toBe(0);
    expect(await revision()).toBe(before + 1);
    const { counters, actual } = await countersMatchJobs();
    expect(counters).toEqual(actual);
  });

  it("keeps everything when RETENTION_DAYS is 0", async () => {
    const job = await createJob({ type: "retention.forever" });
    await age([job.job_id], 3650);
    const before = await revision();
    await runCron({ days: "0" });
    expect((await call("GET", `/job/${job.job_id}`)).status).toBe(200);
    expect(await revision()).toBe(before);
    await runCron();
    expect((await call("GET", `/job/${job.job_id}`)).status).toBe(404);
  });

  it("deletes in bounded batches: at most RETENTION_MAX_BATCHES per run, the rest on the next run", async () => {
    const total = RETENTION_BATCH * RETENTION_MAX_BATCHES + 2000;
    await seedOld(total, 40, "retention.bulk");
    const before = await revision();

    const run = await applyRetention({ ...env, RETENTION_DAYS: "30" }, Date.now());
    const left = await countOfType("retention.bulk");
    expect(left.jobs).toBeGreaterThanOrEqual(2000);
    expect(run.jobs).toBeLessThanOrEqual(RETENTION_BATCH * RETENTION_MAX_BATCHES);
    expect(run.jobs).toBeGreaterThanOrEqual(total - left.jobs);
    expect(left.events).toBe(left.jobs);
    expect(await revision()).toBe(before + RETENTION_MAX_BATCHES);

    await runCron();
    expect(await countOfType("retention.bulk")).toEqual({ jobs: 0, events: 0 });
    const { counters, actual } = await countersMatchJobs();
    expect(counters).toEqual(actual);
  });

  it("reads a bounded number of rows when nothing has expired, however many jobs there are", async () => {
    await seedOld(RETENTION_BATCH * 5, 1, "retention.fresh");
    const counter = createCounter();
    const before = await revision();
    await runCron({ db: countingD1(env.DB, counter) });
    expect((await countOfType("retention.fresh")).jobs).toBe(RETENTION_BATCH * 5);
    expect(await revision()).toBe(before);
    // One retention batch that finds nothing, and the Idempotency-Key purge.
    expect(counter.count).toBe(2);
    expect(counter.rowsRead).toBeLessThanOrEqual(4 * RETENTION_BATCH + 100);
  });
});

describe("Idempotency-Key records", () => {
  async function seedExpired(n: number) {
    const past = new Date(Date.now() - 1000).toISOString();
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
       INSERT INTO idempotency_keys (api_key_id, route, key, fingerprint, status, body, created_at, expires_at)
       SELECT ?2, 'POST /job', 'k' || i, 'f', 201, '{}', ?3, ?3 FROM n`,
    )
      .bind(n, crypto.randomUUID(), past)
      .run();
  }

  async function expired(): Promise<number> {
    const row = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM idempotency_keys WHERE expires_at <= ?1",
    )
      .bind(new Date().toISOString())
      .first<{ n: number }>();
    return row?.n ?? 0;
  }

  it("go faster than they come: each idempotent write removes expired ones in its batch", async () => {
    await seedExpired(50);
    const before = await expired();
    const writes = 5;
    for (let i = 0; i < writes; i++) {
      const response = await call("POST", "/job", {
        headers: { "Idempotency-Key": crypto.randomUUID() },
        body: { operation: { type: "purge.alongside" } },
      });
      expect(response.status).toBe(201);
    }
    expect(PURGED_PER_WRITE).toBeGreaterThan(1);
    expect(await expired()).toBe(before - writes * PURGED_PER_WRITE);
  });

  it("are purged by the cron in batches until none is left, up to its bound", async () => {
    await seedExpired(RETENTION_BATCH * 3 + 10);
    const run = await applyRetention({ ...env, RETENTION_DAYS: "0" as string } as Env, Date.now());
    expect(run.idempotency_keys).toBeGreaterThanOrEqual(RETENTION_BATCH * 3 + 10);
    expect(await expired()).toBe(0);
    await seedExpired(RETENTION_BATCH * PURGE_MAX_BATCHES + 5);
    const bounded = await applyRetention(
      { ...env, RETENTION_DAYS: "0" as string } as Env,
      Date.now(),
    );
    expect(bounded.idempotency_keys).toBe(RETENTION_BATCH * PURGE_MAX_BATCHES);
    expect(await expired()).toBe(5);
  });
});
