import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { plusMsSql, retryDelayMsSql } from "../src/db/jobs";
import {
  BulkCancelResultSchema,
  CancelResultSchema,
  JobAcceptedSchema,
  JobListSchema,
  type RetryPolicy,
} from "../src/schemas/job";
import {
  claim,
  expireLease,
  getJob,
  host,
  register,
  report,
  reportOk,
  storeRevision,
} from "./agents-helpers";
import { checkConsistency, onD1 } from "./consistency";
import { call, expectError, makeDue, parse } from "./helpers";

const FIXED: Partial<RetryPolicy> = {
  max_attempts: 3,
  backoff: "fixed",
  delay_seconds: 5,
  jitter: "none",
};

async function submit(body: Record<string, unknown>) {
  const response = await call("POST", "/job", { body });
  expect(response.status, await response.clone().text()).toBe(201);
  return (await parse(response, JobAcceptedSchema)).job_id;
}

/** A registered agent and a job for it alone, with the given extra fields. */
async function jobForNewAgent(extra: Record<string, unknown> = {}, type = "retry.test") {
  const agent = host("retry");
  await register(agent);
  const id = await submit({ operation: { type }, target_hostname: agent, ...extra });
  return { agent, id };
}

/** As if the job's time had come. */
async function claimOne(agent: string) {
  const jobs = await claim(agent);
  expect(jobs).toHaveLength(1);
  return jobs[0] as (typeof jobs)[number];
}

async function noViolations() {
  expect(await checkConsistency(onD1(env.DB))).toEqual([]);
}

async function retry(id: string, body?: unknown, headers?: Record<string, string>) {
  return call("POST", `/job/${id}/retry`, { body: body ?? {}, headers });
}

describe("retry policies", () => {
  it("show with their defaults filled in; a job without one shows null and today's fields", async () => {
    const { id } = await jobForNewAgent({ retry_policy: {} });
    const job = await getJob(id);
    expect(job.retry_policy).toEqual({
      max_attempts: 3,
      backoff: "exponential",
      delay_seconds: 10,
      max_delay_seconds: 3600,
      jitter: "full",
      retry_on: ["failed"],
    });
    const plain = await getJob((await jobForNewAgent()).id);
    expect(plain).toMatchObject({
      retry_policy: null,
      not_before: null,
      retried_by: null,
      operation_changed: false,
      cancel_requested: false,
      retries_exhausted: false,
    });
  });

  it("run a chain by themselves: fail, nothing before not_before, the next attempt after it, until exhausted", async () => {
    const { agent, id } = await jobForNewAgent({ retry_policy: FIXED });
    const first = await claimOne(agent);
    expect(first).toMatchObject({ id, attempt: 1 });
    const before = Date.now();
    const failed = await reportOk(agent, id, { event: "failed", error: "disk full" });
    expect(failed.status).toBe("failed");

    const original = await getJob(id);
    expect(original.retried_as).toHaveLength(1);
    const secondId = original.retried_as[0] as string;
    const retried = original.timeline.at(-1);
    expect(retried).toMatchObject({
      event: "retried",
      message: `Job retried automatically as ${secondId} after 5s`,
    });
    const second = await getJob(secondId);
    expect(second).toMatchObject({
      status: "unprocessed",
      attempt: 2,
      retry_of: id,
      root_job_id: id,
      retried_by: "automatic",
      target_hostname: agent,
      operation: { type: "retry.test" },
      retry_policy: { ...FIXED, max_delay_seconds: 3600, retry_on: ["failed"] },
    });
    const wait = Date.parse(second.not_before ?? "") - Date.parse(second.created);
    expect(wait).toBe(5000);
    expect(Date.parse(second.created)).toBeGreaterThanOrEqual(before - 1000);
    // The failure and its next attempt are one transaction: one revision.
    expect(second.revision).toBe(failed.revision);

    expect(await claim(agent)).toEqual([]);
    const waiting = await parse(await call("GET", "/job?due=false&limit=100"), JobListSchema);
    expect(waiting.items.map((j) => j.id)).toContain(secondId);
    expect(waiting.items.every((j) => j.status === "unprocessed" && j.not_before !== null)).toBe(
      true,
    );
    expect(waiting.total_items).toBe(waiting.items.length);

    await makeDue(secondId);
    expect(await claimOne(agent)).toMatchObject({ id: secondId, attempt: 2 });
    await reportOk(agent, secondId, { event: "failed", error: "disk full" });
    const thirdId = (await getJob(secondId)).retried_as[0] as string;
    await makeDue(thirdId);
    expect(await claimOne(agent)).toMatchObject({ id: thirdId, attempt: 3 });
    await reportOk(agent, thirdId, { event: "failed", error: "still full" });

    const third = await getJob(thirdId);
    expect(third).toMatchObject({ status: "failed", retries_exhausted: true, retried_as: [] });
    expect((await getJob(secondId)).retries_exhausted).toBe(false);
    const dead = await parse(
      await call("GET", "/job?retries_exhausted=true&limit=100"),
      JobListSchema,
    );
    expect(dead.items.map((j) => j.id)).toContain(thirdId);
    expect(dead.items.every((j) => j.retries_exhausted)).toBe(true);
    expect(dead.total_items).toBe(dead.items.length);
    const chain = await parse(await call("GET", `/job?root_job_id=${id}`), JobListSchema);
    expect(chain.items.map((j) => [j.attempt, j.status])).toEqual([
      [3, "failed"],
      [2, "failed"],
      [1, "failed"],
    ]);
    await noViolations();
  });

  it("end a chain that completes, and retry partial failures only when asked to", async () => {
    const { agent, id } = await jobForNewAgent({ retry_policy: FIXED });
    await claimOne(agent);
    await reportOk(agent, id, { event: "completed" });
    expect(await getJob(id)).toMatchObject({
      status: "completed",
      retried_as: [],
      retries_exhausted: false,
    });

    const a = host("partial");
    const b = host("partial");
    await register(a, { tier: `partial-${a}` });
    await register(b, { tier: `partial-${a}` });
    const all = await submit({
      operation: { type: "partial" },
      target_hostname: `tier:partial-${a}`,
      retry_policy: { ...FIXED, retry_on: ["failed", "partial_failure"] },
    });
    await claimOne(a);
    await claimOne(b);
    await reportOk(a, all, { event: "completed" });
    // One agent still holds it: not final yet, no attempt.
    expect((await getJob(all)).retried_as).toEqual([]);
    await reportOk(b, all, { event: "failed", error: "no" });
    const job = await getJob(all);
    expect(job.status).toBe("partial_failure");
    expect(job.retried_as).toHaveLength(1);
    await noViolations();
  });

  it("make one attempt when failure reports race", async () => {
    const a = host("race");
    const b = host("race");
    await register(a, { pool: `race-${a}` });
    await register(b, { pool: `race-${a}` });
    const id = await submit({
      operation: { type: "race" },
      target_hostname: `pool:race-${a}`,
      retry_policy: FIXED,
    });
    await claimOne(a);
    await claimOne(b);
    const answers = await Promise.all([
      report(a, id, { event: "failed", error: "a" }),
      report(b, id, { event: "failed", error: "b" }),
      report(a, id, { event: "failed", error: "a again" }),
    ]);
    expect(answers.map((r) => r.status).sort()).toEqual([200, 200, 409]);
    const job = await getJob(id);
    expect(job.status).toBe("failed");
    expect(job.retried_as).toHaveLength(1);
    const attempts = await env.DB.prepare("SELECT COUNT(*) AS n FROM jobs WHERE retry_of = ?1")
      .bind(id)
      .first<{ n: number }>();
    expect(attempts?.n).toBe(1);
    await noViolations();
  });

  it("are also applied when the last delivery's lease runs out (max deliveries exceeded)", async () => {
    const { agent, id } = await jobForNewAgent({ retry_policy: FIXED });
    await claimOne(agent);
    await env.DB.prepare("UPDATE job_agents SET delivery = 1000 WHERE job_id = ?1").bind(id).run();
    await expireLease(id);
    expect(await claim(agent)).toEqual([]);
    const job = await getJob(id);
    expect(job.status).toBe("failed");
    expect(job.retried_as).toHaveLength(1);
    await noViolations();
  });

  it("compute waits in SQL within their bounds: fixed, exponential, capped, full jitter", async () => {
    const row = (policy: RetryPolicy, attempt: number) =>
      env.DB.prepare(`SELECT ${retryDelayMsSql("?1", "?2")} AS ms`)
        .bind(JSON.stringify(policy), attempt)
        .first<{ ms: number }>();
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          max_attempts: fc.integer({ min: 1, max: 20 }),
          backoff: fc.constantFrom("fixed" as const, "exponential" as const),
          delay_seconds: fc.integer({ min: 1, max: 604_800 }),
          max_delay_seconds: fc.integer({ min: 1, max: 604_800 }),
          jitter: fc.constantFrom("none" as const, "full" as const),
          retry_on: fc.constant<RetryPolicy["retry_on"]>(["failed"]),
        }),
        fc.integer({ min: 1, max: 19 }),
        async (policy, attempt) => {
          const grown =
            policy.delay_seconds *
            1000 *
            (policy.backoff === "exponential" ? 2 ** (attempt - 1) : 1);
          const bound = Math.min(policy.max_delay_seconds * 1000, grown);
          const ms = (await row(policy, attempt))?.ms ?? -1;
          expect(Number.isInteger(ms)).toBe(true);
          if (policy.jitter === "none") expect(ms).toBe(bound);
          else {
            expect(ms).toBeGreaterThanOrEqual(0);
            expect(ms).toBeLessThanOrEqual(bound);
          }
        },
      ),
      { numRuns: 200 },
    );
    // Full jitter spreads: 200 draws of a 100 s wait are not all in one tenth of it.
    const policy: RetryPolicy = {
      max_attempts: 3,
      backoff: "fixed",
      delay_seconds: 100,
      max_delay_seconds: 100,
      jitter: "full",
      retry_on: ["failed"],
    };
    const draws = await Promise.all(Array.from({ length: 200 }, () => row(policy, 1)));
    const tenths = new Set(draws.map((d) => Math.floor((d?.ms ?? 0) / 10_000)));
    expect(tenths.size).toBeGreaterThan(5);
  });

  it("add a wait to a time exactly, to the millisecond", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: Date.parse("2020-01-01"), max: Date.parse("2040-01-01") }),
        fc.integer({ min: 0, max: 604_800_000 }),
        async (start, ms) => {
          const from = new Date(start).toISOString();
          const row = await env.DB.prepare(`SELECT ${plusMsSql("?1", "?2")} AS at`)
            .bind(from, ms)
            .first<{ at: string }>();
          expect(row?.at).toBe(new Date(start + ms).toISOString());
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("delayed jobs", () => {
  it("are not handed out before their time, and are listed as waiting until then", async () => {
    const { agent, id } = await jobForNewAgent({ delay_seconds: 3600 });
    const job = await getJob(id);
    expect(Date.parse(job.not_before ?? "") - Date.parse(job.created)).toBe(3_600_000);
    expect(await claim(agent)).toEqual([]);
    const waiting = await parse(await call("GET", "/job?due=false&limit=100"), JobListSchema);
    expect(waiting.items.map((j) => j.id)).toContain(id);
    const due = await parse(await call("GET", "/job?due=true&limit=100"), JobListSchema);
    expect(due.items.map((j) => j.id)).not.toContain(id);
    const all = await parse(await call("GET", "/job?limit=1"), JobListSchema);
    expect(due.total_items + waiting.total_items).toBe(all.total_items);
    await makeDue(id);
    expect(await claimOne(agent)).toMatchObject({ id });
  });

  it("take not_before as RFC 3339 with any offset, stored in UTC; an _any job waits too", async () => {
    const at = new Date(Date.now() + 86_400_000);
    const local = at.toISOString().replace("Z", "+00:00");
    const { id } = await jobForNewAgent({ not_before: local });
    expect((await getJob(id)).not_before).toBe(at.toISOString());
    const any = await submit({ operation: { type: "any.later" }, delay_seconds: 600 });
    const taker = host("any");
    await register(taker);
    const taken = await claim(taker, { limit: 100 });
    expect(taken.map((j) => j.id)).not.toContain(any);
    await makeDue(any);
    const later = await claim(taker, { limit: 100 });
    expect(later.map((j) => j.id)).toContain(any);
  });

  it("refuse bad times with 400 and write nothing", async () => {
    const agent = host("bad");
    await register(agent);
    const revision = await storeRevision();
    const base = { operation: { type: "x" }, target_hostname: agent };
    for (const extra of [
      { not_before: "tomorrow" },
      { not_before: "2026-12-03 10:00:00" },
      { not_before: new Date(Date.now() + 31 * 86_400_000).toISOString() },
      { delay_seconds: -1 },
      { delay_seconds: 1.5 },
      { delay_seconds: 30 * 86_400 + 1 },
      { delay_seconds: 10, not_before: new Date().toISOString() },
    ]) {
      const body = await expectError(
        await call("POST", "/job", { body: { ...base, ...extra } }),
        400,
      );
      expect(body.error.length).toBeGreaterThan(0);
    }
    expect(await storeRevision()).toBe(revision);
  });
});

describe("cancel", () => {
  it("ends a job nobody holds at once, counts it, keeps agents from it, and refuses a second time", async () => {
    const { agent, id } = await jobForNewAgent();
    const counted = async () =>
      (await parse(await call("GET", "/job?limit=1"), JobListSchema)).status_counts.cancelled;
    const before = await counted();
    const response = await call("POST", `/job/${id}/cancel`);
    expect(response.status).toBe(200);
    const result = await parse(response, CancelResultSchema);
    expect(result).toMatchObject({ job_id: id, status: "cancelled", outcome: "cancelled" });
    expect(await counted()).toBe(before + 1);
    const job = await getJob(id);
    expect(job).toMatchObject({
      status: "cancelled",
      cancel_requested: true,
      revision: result.revision,
    });
    expect(job.timeline.at(-1)).toMatchObject({
      event: "cancelled",
      hostname: "_api",
      message: "Job cancelled",
    });
    expect(await claim(agent)).toEqual([]);
    const listed = await parse(await call("GET", "/job?status=cancelled&limit=100"), JobListSchema);
    expect(listed.items.map((j) => j.id)).toContain(id);
    const again = await expectError(await call("POST", `/job/${id}/cancel`), 409);
    expect(again.error).toBe("job is already cancelled");
    await noViolations();
  });

  it("answers 404 for an unknown job, 412 for a stale If-Match, 409 for a finished job", async () => {
    await expectError(await call("POST", `/job/${crypto.randomUUID()}/cancel`), 404);
    const { agent, id } = await jobForNewAgent();
    const revision = await storeRevision();
    const stale = await call("POST", `/job/${id}/cancel`, { headers: { "If-Match": '"r1"' } });
    await expectError(stale, 412);
    expect(await storeRevision()).toBe(revision);
    await claimOne(agent);
    await reportOk(agent, id, { event: "completed" });
    expect((await expectError(await call("POST", `/job/${id}/cancel`), 409)).error).toBe(
      "job is already completed",
    );
    const { id: other } = await jobForNewAgent();
    const etag = `"r${(await getJob(other)).revision}"`;
    expect(
      (await call("POST", `/job/${other}/cancel`, { headers: { "If-Match": etag } })).status,
    ).toBe(200);
  });

  it("asks the holder to stop: its next report gets 409 cancelled and the job ends cancelled", async () => {
    const { agent, id } = await jobForNewAgent({ retry_policy: FIXED });
    await claimOne(agent);
    await reportOk(agent, id, { event: "started" });
    const response = await call("POST", `/job/${id}/cancel`);
    expect(response.status).toBe(202);
    expect(await parse(response, CancelResultSchema)).toMatchObject({
      status: "processing",
      outcome: "cancel_requested",
    });
    expect(await getJob(id)).toMatchObject({ status: "processing", cancel_requested: true });
    // Asking again changes nothing and says the same.
    expect((await call("POST", `/job/${id}/cancel`)).status).toBe(202);
    const refused = await expectError(
      await report(agent, id, { event: "failed", error: "x" }),
      409,
    );
    expect(refused.error).toBe("cancelled");
    const job = await getJob(id);
    expect(job).toMatchObject({ status: "cancelled", retried_as: [], retries_exhausted: false });
    expect(job.agent_states[agent]).toEqual({ status: "skipped", error: "cancelled" });
    expect(job.timeline.map((e) => e.event)).toEqual([
      "submitted",
      "acknowledged",
      "started",
      "cancel_requested",
      "skipped",
      "cancelled",
    ]);
    expect((await expectError(await report(agent, id, { event: "completed" }), 409)).error).toBe(
      "cancelled",
    );
    await noViolations();
  });

  it("ends a held job on the holder's lease extension, or when its lease runs out", async () => {
    const { agent, id } = await jobForNewAgent();
    const [job] = await claim(agent);
    await call("POST", `/job/${id}/cancel`);
    const lease = await call("POST", `/agent/${agent}/job/${id}/lease`, {
      body: { lease_token: job?.lease_token, lease_seconds: 60 },
    });
    expect((await expectError(lease, 409)).error).toBe("cancelled");
    expect((await getJob(id)).status).toBe("cancelled");

    const { agent: other, id: lapsing } = await jobForNewAgent();
    await claimOne(other);
    expect((await call("POST", `/job/${lapsing}/cancel`)).status).toBe(202);
    await expireLease(lapsing);
    expect(await claim(other)).toEqual([]);
    const ended = await getJob(lapsing);
    expect(ended.status).toBe("cancelled");
    expect(ended.agent_states[other]).toEqual({ status: "skipped", error: "cancelled" });
    await noViolations();
  });

  it("stops a chain: a pending automatic attempt cancelled is never retried", async () => {
    const { agent, id } = await jobForNewAgent({ retry_policy: FIXED });
    await claimOne(agent);
    await reportOk(agent, id, { event: "failed", error: "boom" });
    const next = (await getJob(id)).retried_as[0] as string;
    expect((await call("POST", `/job/${next}/cancel`)).status).toBe(200);
    await makeDue(next);
    expect(await claim(agent)).toEqual([]);
    const chain = await parse(await call("GET", `/job?root_job_id=${id}`), JobListSchema);
    expect(chain.items.map((j) => j.status)).toEqual(["cancelled", "failed"]);
    await noViolations();
  });

  it("cancels many with a dry run first, a result per job", async () => {
    const { id: waiting } = await jobForNewAgent();
    const { agent, id: held } = await jobForNewAgent();
    await claimOne(agent);
    const { agent: doneAgent, id: done } = await jobForNewAgent();
    await claimOne(doneAgent);
    await reportOk(doneAgent, done, { event: "completed" });
    const missing = crypto.randomUUID();
    const job_ids = [waiting, held, done, missing];
    const revision = await storeRevision();
    const dry = await parse(
      await call("POST", "/job/cancel", { body: { job_ids, dry_run: true } }),
      BulkCancelResultSchema,
    );
    expect(await storeRevision()).toBe(revision);
    expect(dry.results.map((r) => r.outcome)).toEqual([
      "would_cancel",
      "would_request_cancel",
      "finished",
      "not_found",
    ]);
    const real = await parse(
      await call("POST", "/job/cancel", { body: { job_ids } }),
      BulkCancelResultSchema,
    );
    expect(real.revision).toBe(revision + 1);
    expect(real.results).toEqual([
      { job_id: waiting, outcome: "cancelled", error: null },
      { job_id: held, outcome: "cancel_requested", error: null },
      { job_id: done, outcome: "finished", error: "job is completed" },
      { job_id: missing, outcome: "not_found", error: "job not found" },
    ]);
    const byStatus = await call("POST", "/job/cancel", {
      body: { status: "unprocessed", limit: 1, dry_run: true },
    });
    expect((await parse(byStatus, BulkCancelResultSchema)).results).toHaveLength(1);
    await expectError(
      await call("POST", "/job/cancel", { body: { job_ids, status: "failed" } }),
      400,
    );
    await expectError(await call("POST", "/job/cancel", { body: { job_ids: [] } }), 400);
    await noViolations();
  });
});

describe("dead letters", () => {
  it("retried by hand continue the count, or start over with reset_attempts", async () => {
    const { agent, id } = await jobForNewAgent({ retry_policy: { ...FIXED, max_attempts: 1 } });
    await claimOne(agent);
    await reportOk(agent, id, { event: "failed", error: "boom" });
    expect(await getJob(id)).toMatchObject({ retries_exhausted: true, retried_as: [] });

    const continued = await parse(await retry(id, { target_hostname: agent }), JobAcceptedSchema);
    expect(await getJob(continued.job_id)).toMatchObject({
      attempt: 2,
      retried_by: "manual",
      retry_policy: { max_attempts: 1 },
    });
    const reset = await parse(
      await retry(id, { target_hostname: agent, reset_attempts: true }),
      JobAcceptedSchema,
    );
    expect(await getJob(reset.job_id)).toMatchObject({ attempt: 1, retry_of: id, root_job_id: id });
    const none = await parse(
      await retry(id, { target_hostname: agent, retry_policy: null }),
      JobAcceptedSchema,
    );
    expect((await getJob(none.job_id)).retry_policy).toBeNull();
    const own = await parse(
      await retry(id, {
        target_hostname: agent,
        retry_policy: { max_attempts: 5 },
        delay_seconds: 60,
      }),
      JobAcceptedSchema,
    );
    const ownJob = await getJob(own.job_id);
    expect(ownJob.retry_policy?.max_attempts).toBe(5);
    expect(Date.parse(ownJob.not_before ?? "") - Date.parse(ownJob.created)).toBe(60_000);
    await noViolations();
  });
});

describe("retry with a changed operation", () => {
  const original = {
    type: "deploy",
    version: "1.0",
    env: { region: "eu", replicas: 2, debug: true },
    hosts: ["a", "b"],
  };

  it("merges a patch (RFC 7396): null removes, objects merge, arrays and scalars replace", async () => {
    const { agent, id } = await jobForNewAgent({ operation: original });
    const before = await getJob(id);
    const response = await retry(id, {
      target_hostname: agent,
      operation_patch: {
        version: "1.1",
        env: { replicas: 3, debug: null, zone: "b" },
        hosts: ["c"],
        extra: { x: 1 },
      },
    });
    expect(response.status).toBe(201);
    const { job_id } = await parse(response, JobAcceptedSchema);
    const changed = await getJob(job_id);
    expect(changed.operation).toEqual({
      type: "deploy",
      version: "1.1",
      env: { region: "eu", replicas: 3, zone: "b" },
      hosts: ["c"],
      extra: { x: 1 },
    });
    expect(changed.operation_changed).toBe(true);
    const after = await getJob(id);
    expect(after.operation).toEqual(original);
    expect(after.retried_as).toEqual([job_id]);
    expect(after.revision).toBeGreaterThan(before.revision);
    await noViolations();
  });

  it("replaces the whole operation, and says unchanged when a patch changes nothing", async () => {
    const { agent, id } = await jobForNewAgent({ operation: original });
    const replaced = await parse(
      await retry(id, { target_hostname: agent, operation: { type: "rollback", to: "0.9" } }),
      JobAcceptedSchema,
    );
    expect(await getJob(replaced.job_id)).toMatchObject({
      operation: { type: "rollback", to: "0.9" },
      operation_changed: true,
    });
    const same = await parse(
      await retry(id, { target_hostname: agent, operation_patch: { version: "1.0" } }),
      JobAcceptedSchema,
    );
    expect((await getJob(same.job_id)).operation_changed).toBe(false);
    const plain = await parse(await retry(id, { target_hostname: agent }), JobAcceptedSchema);
    expect((await getJob(plain.job_id)).operation_changed).toBe(false);
    await noViolations();
  });

  it("refuses a patch that leaves no valid operation, or both forms, with 400 and nothing written", async () => {
    const { agent, id } = await jobForNewAgent({ operation: original });
    const { id: large } = await jobForNewAgent({
      operation: { type: "large", a: "x".repeat(40_000) },
    });
    const revision = await storeRevision();
    const noType = await expectError(
      await retry(id, { target_hostname: agent, operation_patch: { type: null } }),
      400,
    );
    expect(noType.error).toBe("operation_patch leaves an invalid operation");
    expect(noType.details).toContain("type");
    await expectError(await retry(id, { operation_patch: { type: "" } }), 400);
    await expectError(await retry(id, { operation_patch: { type: 7 } }), 400);
    const tooLarge = await expectError(
      await retry(large, { operation_patch: { b: "y".repeat(30_000) } }),
      400,
    );
    expect(tooLarge.details).toContain("65536 bytes");
    await expectError(await retry(id, { operation: { type: "x" }, operation_patch: {} }), 400);
    await expectError(await retry(id, { operation_patch: ["not", "an", "object"] }), 400);
    await expectError(await retry(id, { operation: { no: "type" } }), 400);
    expect(await storeRevision()).toBe(revision);
    // A patch on a job that does not exist is 404, not 400.
    await expectError(await retry(crypto.randomUUID(), { operation_patch: { type: null } }), 404);
  });

  it("is not offered by bulk retry", async () => {
    const { id } = await jobForNewAgent();
    await expectError(
      await call("POST", "/job/retry", { body: { job_ids: [id], operation_patch: { a: 1 } } }),
      400,
    );
  });
});

describe("bad input on the new fields", () => {
  it("is 400 in the error shape and writes nothing", async () => {
    const agent = host("input");
    await register(agent);
    const { id } = await jobForNewAgent();
    const revision = await storeRevision();
    const op = { operation: { type: "x" }, target_hostname: agent };
    for (const retry_policy of [
      { max_attempts: 0 },
      { max_attempts: 21 },
      { max_attempts: 2.5 },
      { backoff: "linear" },
      { delay_seconds: 0 },
      { delay_seconds: 10, max_delay_seconds: 5 },
      { jitter: "half" },
      { retry_on: [] },
      { retry_on: ["completed"] },
      { retry_on: ["failed", "failed"] },
      { attempts: 3 },
      "3",
      null,
    ]) {
      await expectError(await call("POST", "/job", { body: { ...op, retry_policy } }), 400);
    }
    for (const body of [
      { reset_attempts: "yes" },
      { retry_policy: { jitter: "some" } },
      { operation_patch: "x" },
      { delay_seconds: "10" },
    ]) {
      await expectError(await retry(id, body), 400);
    }
    for (const query of ["due=maybe", "due=1", "retries_exhausted=yes"]) {
      await expectError(await call("GET", `/job?${query}`), 400);
    }
    await expectError(
      await call("POST", "/job/cancel", { body: { status: "failed", limit: 0 } }),
      400,
    );
    await expectError(await call("POST", `/job/not-a-uuid/cancel`), 400);
    expect(await storeRevision()).toBe(revision);
  });
});
