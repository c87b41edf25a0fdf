import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { claimWaiters } from "../src/background/wakeups";
import { touchAgents } from "../src/db/agents";
import worker from "../src/index";
import { ClaimResultSchema } from "../src/schemas/agent";
import { JobSchema } from "../src/schemas/job";
import { claim, host, register, rememberLeases, reportOk } from "./agents-helpers";
import { checkConsistency, onD1 } from "./consistency";
import { countingD1, createCounter } from "./counting-d1";
import { admin, buildRequest, call, createJob, expectError, parse } from "./helpers";

/** A long claim, started now; resolves with its jobs and how long it took. */
async function longClaim(hostname: string, body: Record<string, unknown>) {
  const started = Date.now();
  const response = await call("POST", `/agent/${hostname}/claim`, { body });
  if (response.status !== 200)
    throw new Error(`claim failed: ${response.status} ${await response.text()}`);
  const { jobs } = await parse(response, ClaimResultSchema);
  rememberLeases(hostname, jobs);
  return { jobs, ms: Date.now() - started };
}

/** A job for `target` written behind the API's back, as if its announcement had been lost. */
async function createSilently(target: string): Promise<string> {
  const id = crypto.randomUUID();
  const now = new Date().toISOString();
  await env.DB.batch([
    env.DB.prepare("UPDATE store_revision SET revision = revision + 1 WHERE id = 1"),
    env.DB.prepare(
      `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision, root_job_id, attempt)
       VALUES (?1, '{"type":"silent"}', ?2, ?3, ?3, (SELECT revision FROM store_revision), (SELECT revision FROM store_revision), ?1, 1)`,
    ).bind(id, target, now),
    env.DB.prepare(
      `INSERT INTO job_events (job_id, event, hostname, created_at, revision)
       VALUES (?1, 'submitted', '_api', ?2, (SELECT revision FROM store_revision))`,
    ).bind(id, now),
  ]);
  return id;
}

/** Until `n` claims wait in the object (a claim waits only once its first look found nothing). */
async function waiting(n: number) {
  for (let i = 0; i < 200; i++) {
    if ((await claimWaiters(env).waiting()) >= n) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`fewer than ${n} claims are waiting`);
}

describe("long claims", () => {
  it("hand nothing to an agent that went away while its claim waited", async () => {
    const agent = host("gone");
    await register(agent);
    const stop = new AbortController();
    const request = await buildRequest("POST", `/agent/${agent}/claim`, {
      body: { wait_seconds: 20 },
    });
    const ctx = createExecutionContext();
    const answered = Promise.resolve(
      worker.fetch(new Request(request, { signal: stop.signal }), env, ctx),
    ).catch(() => undefined);
    await waiting(1);
    stop.abort();
    const id = (await createJob({ type: "for.nobody" }, agent)).job_id;
    await answered;
    await waitOnExecutionContext(ctx);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const job = await parse(await call("GET", `/job/${id}`), JobSchema);
    expect(job.status).toBe("unprocessed");
    // The agent back, a claim gets it.
    expect((await claim(agent)).map((j) => j.id)).toEqual([id]);
  });

  it("take wait_seconds 0–60 and refuse anything else", async () => {
    const agent = host();
    await register(agent);
    for (const wait_seconds of [-1, 61, 1.5, "5", null]) {
      const response = await call("POST", `/agent/${agent}/claim`, { body: { wait_seconds } });
      expect((await expectError(response, 400)).details, String(wait_seconds)).toMatch(
        /^wait_seconds/,
      );
    }
  });

  it("answer as soon as a job is created for the agent, and not for another's", async () => {
    const [agent, other] = [host(), host()];
    await register(agent);
    await register(other);
    const before = await claimWaiters(env).waiting();
    const pending = longClaim(agent, { wait_seconds: 20 });
    await waiting(before + 1);
    await createJob({ type: "for.other" }, other);
    const { job_id } = await createJob({ type: "for.agent" }, agent);
    const { jobs, ms } = await pending;
    expect(jobs.map((j) => j.id)).toEqual([job_id]);
    expect(ms).toBeLessThan(5_000);
  });

  it("answer an empty list when the time runs out", async () => {
    const agent = host();
    await register(agent);
    const { jobs, ms } = await longClaim(agent, { wait_seconds: 1 });
    expect(jobs).toEqual([]);
    expect(ms).toBeGreaterThanOrEqual(950);
  });

  it("wake for a label job below the agent's label, and for a retry targeted at it", async () => {
    const agent = host();
    await register(agent, { group: "web.dev.eu" });
    let before = await claimWaiters(env).waiting();
    let pending = longClaim(agent, { wait_seconds: 20 });
    await waiting(before + 1);
    const labelled = await createJob({ type: "label" }, "group:web.dev");
    expect((await pending).jobs.map((j) => j.id)).toEqual([labelled.job_id]);
    await reportOk(agent, labelled.job_id, { event: "completed" });

    before = await claimWaiters(env).waiting();
    pending = longClaim(agent, { wait_seconds: 20 });
    await waiting(before + 1);
    const retried = await call("POST", `/job/${labelled.job_id}/retry`, {
      body: { target_hostname: agent },
    });
    const { job_id } = (await retried.json()) as { job_id: string };
    const { jobs, ms } = await pending;
    expect(jobs.map((j) => j.id)).toEqual([job_id]);
    expect(ms).toBeLessThan(5_000);
  });

  it("cost one D1 query, the claim before the wait, and then none while the agent stays idle", async () => {
    const agent = host();
    await register(agent);
    const measured = async (wait_seconds: number) => {
      const counter = createCounter();
      const ctx = createExecutionContext();
      const response = await worker.fetch(
        new Request(`http://jobs.test/agent/${agent}/claim`, {
          method: "POST",
          headers: { Authorization: `Bearer ${await admin()}`, "Content-Type": "application/json" },
          body: JSON.stringify({ wait_seconds }),
        }),
        { ...env, DB: countingD1(env.DB, counter), KEY_CACHE_SECONDS: "30" },
        ctx,
      );
      expect(await parse(response, ClaimResultSchema)).toEqual({ jobs: [] });
      await waitOnExecutionContext(ctx);
      return counter;
    };
    const first = await measured(1);
    expect(first.calls.filter((call) => call.kind === "batch")).toHaveLength(1);
    expect(first.rowsWritten).toBe(0);
    const next = await measured(1);
    expect(
      next.calls.filter((call) => call.kind === "batch"),
      "vouched for by the object",
    ).toEqual([]);

    const pending = longClaim(agent, { wait_seconds: 20 });
    await waiting((await claimWaiters(env).waiting()) + 1);
    const { job_id } = await createJob({ type: "after.idle" }, agent);
    const { jobs, ms } = await pending;
    expect(jobs.map((j) => j.id)).toEqual([job_id]);
    expect(ms).toBeLessThan(5_000);
    await reportOk(agent, job_id, { event: "completed" });
  });

  it("see, within about a second, a job whose announcement was lost", async () => {
    const agent = host();
    await register(agent);
    const before = await claimWaiters(env).waiting();
    const pending = longClaim(agent, { wait_seconds: 10 });
    await waiting(before + 1);
    const silent = await createSilently(agent);
    const { jobs, ms } = await pending;
    expect(jobs.map((j) => j.id)).toEqual([silent]);
    expect(ms).toBeLessThan(5_000);
    await reportOk(agent, silent, { event: "completed" });
  });

  it("send an idle agent to D1 when an _any job was made with nobody waiting", async () => {
    const agent = host();
    await register(agent);
    expect((await longClaim(agent, { wait_seconds: 1 })).jobs).toEqual([]);
    const silent = await createSilently("_any");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const { jobs, ms } = await longClaim(agent, { wait_seconds: 10 });
    expect(jobs.map((j) => j.id)).toEqual([silent]);
    expect(ms).toBeLessThan(2_000);
    await reportOk(agent, silent, { event: "completed" });
  });

  it("have last_seen written by the object for the agents waiting in it", async () => {
    const agent = host();
    await register(agent);
    const old = new Date(Date.now() - 45_000).toISOString();
    await env.DB.prepare("UPDATE agents SET last_seen = ?2 WHERE hostname = ?1")
      .bind(agent, old)
      .run();
    const before = await claimWaiters(env).waiting();
    const pending = longClaim(agent, { wait_seconds: 2 });
    await waiting(before + 1);
    const lastSeen = () =>
      env.DB.prepare("SELECT last_seen FROM agents WHERE hostname = ?1")
        .bind(agent)
        .first<{ last_seen: string }>();
    // The claim itself wrote it (older than half the TTL); make it old again, as time would.
    await env.DB.prepare("UPDATE agents SET last_seen = ?2 WHERE hostname = ?1")
      .bind(agent, old)
      .run();
    await claimWaiters(env).writeSeen();
    expect((await lastSeen())?.last_seen).not.toBe(old);
    await pending;
  });

  it("write last_seen for a fleet in one statement that reads a few rows per agent", async () => {
    const fleet = Array.from({ length: 300 }, () => host("seen"));
    await Promise.all(fleet.map((agent) => register(agent)));
    const lineage = await env.DB.prepare(
      "SELECT owner_lineage_id AS l FROM agents WHERE hostname = ?1",
    )
      .bind(fleet[0])
      .first<{ l: string }>();
    const old = new Date(Date.now() - 45_000).toISOString();
    await env.DB.prepare(
      "UPDATE agents SET last_seen = ?1 WHERE hostname IN (SELECT value FROM json_each(?2))",
    )
      .bind(old, JSON.stringify(fleet))
      .run();
    const counter = createCounter();
    const waited = fleet.map((hostname) => ({ hostname, lineage: lineage?.l ?? "" }));
    waited.push({ hostname: fleet[0] as string, lineage: "another-lineage" });
    await touchAgents(countingD1(env.DB, counter), waited, new Date(), 30_000);
    expect(counter.count).toBe(1);
    expect(counter.rowsWritten).toBeGreaterThanOrEqual(300);
    expect(counter.rowsRead, "a few rows per agent, not the fleet per agent").toBeLessThan(
      5 * waited.length,
    );
    const stale = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM agents WHERE hostname IN (SELECT value FROM json_each(?1)) AND last_seen = ?2",
    )
      .bind(JSON.stringify(fleet), old)
      .first<{ n: number }>();
    expect(stale?.n).toBe(0);
  }, 30_000); // registering 300 agents takes seconds on a busy machine

  it("wake another agent when a lease runs out or its holder is deregistered", async () => {
    const [holder, waiter, gone] = [host("holder"), host("waiter"), host("gone")];
    for (const agent of [holder, waiter, gone]) await register(agent);
    const first = await createJob({ type: "lease.end" });
    await claim(holder, { lease_seconds: 5, limit: 1 });
    const second = await createJob({ type: "deregistered" });
    const held = await claim(gone, { limit: 1 });
    expect(held.map((j) => j.id)).toEqual([second.job_id]);

    const before = await claimWaiters(env).waiting();
    const afterLease = longClaim(waiter, { wait_seconds: 20 });
    await waiting(before + 1);
    const { jobs, ms } = await afterLease;
    expect(jobs.map((j) => j.id)).toEqual([first.job_id]);
    expect(ms).toBeGreaterThan(2_000);
    expect(ms).toBeLessThan(9_000);

    const next = longClaim(waiter, { wait_seconds: 20 });
    await waiting(before + 1);
    expect((await call("DELETE", `/agent/${gone}`)).status).toBe(204);
    const freed = await next;
    expect(freed.jobs.map((j) => j.id)).toEqual([second.job_id]);
    expect(freed.ms).toBeLessThan(5_000);
  }, 30_000);

  it("hand every _any job to exactly one of 50 waiting agents", async () => {
    const agents = Array.from({ length: 50 }, () => host("fleet"));
    await Promise.all(agents.map((agent) => register(agent)));
    const holders = new Map<string, string[]>();
    const jobs = 30;
    let done = false;
    const work = async (agent: string) => {
      while (!done) {
        const { jobs: claimed } = await longClaim(agent, { wait_seconds: 3 });
        for (const job of claimed) {
          holders.set(job.id, [...(holders.get(job.id) ?? []), agent]);
          await reportOk(agent, job.id, { event: "completed" });
        }
        if (holders.size >= jobs) done = true;
      }
    };
    const before = await claimWaiters(env).waiting();
    const running = Promise.all(agents.map(work));
    await waiting(before + 50);
    const created = await Promise.all(
      Array.from({ length: jobs }, () => createJob({ type: "fleet.any" })),
    );
    await running;
    expect([...holders.keys()].sort()).toEqual(created.map((j) => j.job_id).sort());
    expect([...holders.values()].filter((h) => h.length !== 1)).toEqual([]);
    expect(await checkConsistency(onD1(env.DB))).toEqual([]);
  }, 60_000);
});
