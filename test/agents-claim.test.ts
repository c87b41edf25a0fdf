import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { ClaimResultSchema } from "../src/schemas/agent";
import { JobAcceptedSchema } from "../src/schemas/job";
import {
  claim,
  drainAnyJobs,
  expectViewsAgree,
  expireLease,
  getJob,
  host,
  register,
  report,
  reportOk,
  storeRevision,
} from "./agents-helpers";
import { call, countersMatchJobs, createJob, expectError, parse } from "./helpers";

// A claim also hands out any `_any` job nobody holds: start each test with none left over.
beforeEach(drainAnyJobs);

describe("_any jobs", () => {
  it("go to exactly one of two agents claiming at the same moment", async () => {
    const [a, b] = [host("a"), host("b")];
    await register(a);
    await register(b);
    for (let round = 0; round < 5; round++) {
      const { job_id } = await createJob({ type: "race", round });
      const [fromA, fromB] = await Promise.all([claim(a), claim(b)]);
      const winners = [...fromA, ...fromB].map((job) => job.id);
      expect(winners).toEqual([job_id]);
      const job = await expectViewsAgree(job_id);
      expect(Object.keys(job.agent_states)).toHaveLength(1);
      expect(job.timeline.filter((t) => t.event === "acknowledged")).toHaveLength(1);
    }
  });

  it("are each handed to one agent when many agents claim many jobs at once", async () => {
    const agents = Array.from({ length: 6 }, () => host("swarm"));
    for (const agent of agents) await register(agent);
    const ids = new Set<string>();
    for (let i = 0; i < 30; i++) ids.add((await createJob({ type: "swarm", i })).job_id);
    const before = await storeRevision();
    const claims = await Promise.all(
      agents.map((agent) =>
        call("POST", `/agent/${agent}/claim`, { body: { limit: 7 } }).then((r) =>
          parse(r, ClaimResultSchema),
        ),
      ),
    );
    const handed = claims.flatMap((c) => c.jobs.map((job) => job.id));
    expect(new Set(handed).size).toBe(handed.length);
    expect(handed.length).toBe(30);
    expect(new Set(handed)).toEqual(ids);
    const served = claims.filter((c) => c.jobs.length > 0).length;
    expect(served).toBe(5);
    expect(await storeRevision()).toBe(before + served);
    const rows = await env.DB.prepare(
      "SELECT job_id, COUNT(*) AS n FROM job_agents WHERE state IN ('acknowledged', 'started') GROUP BY job_id HAVING n > 1",
    ).all();
    expect(rows.results).toEqual([]);
  });

  it("are handed out oldest first, mixed with the agent's own jobs", async () => {
    const agent = host();
    await register(agent);
    const first = await createJob({ type: "x" });
    const own = await createJob({ type: "x" }, agent);
    const last = await createJob({ type: "x" });
    const ids = (await claim(agent, { limit: 10 })).map((job) => job.id);
    expect(ids).toEqual([first.job_id, own.job_id, last.job_id]);
  });

  it("are not handed out again while the lease holds, nor after the job finished", async () => {
    const [a, b] = [host("a"), host("b")];
    await register(a);
    await register(b);
    const { job_id } = await createJob();
    expect((await claim(a)).map((job) => job.id)).toEqual([job_id]);
    expect(await claim(b)).toEqual([]);
    await reportOk(a, job_id, { event: "completed" });
    await expireLease(job_id);
    expect(await claim(b)).toEqual([]);
    expect(await claim(a)).toEqual([]);
  });
});

describe("leases", () => {
  it("hand a job whose lease ran out to the same agent again, delivery + 1", async () => {
    const agent = host();
    await register(agent);
    const { job_id } = await createJob({ type: "x" }, agent);
    const [first] = await claim(agent, { lease_seconds: 5 });
    expect(first?.delivery).toBe(1);
    await reportOk(agent, job_id, { event: "started" });
    expect(await claim(agent)).toEqual([]);
    await expireLease(job_id);
    const [second] = await claim(agent, { lease_seconds: 30 });
    expect(second).toMatchObject({ id: job_id, delivery: 2 });
    expect(Date.parse(second?.lease_expires_at ?? "")).toBeGreaterThan(Date.now() + 25_000);
    const job = await expectViewsAgree(job_id);
    expect(job.status).toBe("processing");
    expect(job.agent_states[agent]?.status).toBe("started");
    expect(job.timeline.map((t) => t.event)).toEqual([
      "submitted",
      "acknowledged",
      "started",
      "acknowledged",
    ]);
    await reportOk(agent, job_id, { event: "completed", result: "second time" });
    expect(await expectViewsAgree(job_id)).toMatchObject({
      status: "completed",
      result: "second time",
    });
  });

  it("refuse a report after the lease ran out, even when nobody took the job over", async () => {
    const agent = host();
    await register(agent);
    const { job_id } = await createJob({ type: "x" }, agent);
    await claim(agent);
    await expireLease(job_id);
    const before = await storeRevision();
    const late = await expectError(await report(agent, job_id, { event: "completed" }), 409);
    expect(late.error).toBe("lease expired");
    expect(late.details).toContain(`delivery 1 of job ${job_id} to ${agent} ran out`);
    expect(await storeRevision()).toBe(before);
    const [again] = await claim(agent);
    expect(again).toMatchObject({ id: job_id, delivery: 2 });
    expect((await reportOk(agent, job_id, { event: "completed" })).status).toBe("completed");
  });

  it("hand an expired _any job to another agent; the first agent's late report gets 409", async () => {
    const [a, b] = [host("a"), host("b")];
    await register(a);
    await register(b);
    const { job_id } = await createJob({ type: "x" });
    await claim(a);
    await reportOk(a, job_id, { event: "started" });
    await expireLease(job_id, a);
    const [taken] = await claim(b);
    expect(taken).toMatchObject({ id: job_id, delivery: 2 });

    const before = await storeRevision();
    const late = await expectError(
      await report(a, job_id, { event: "completed", result: "late" }),
      409,
    );
    expect(late).toMatchObject({
      error: "superseded by delivery 2",
      details: `the token is delivery 1's; the job is held by agent ${b}`,
    });
    expect(await storeRevision()).toBe(before);

    await reportOk(b, job_id, { event: "started" });
    const done = await reportOk(b, job_id, { event: "completed", result: "from b", changed: true });
    expect(done.status).toBe("completed");
    const job = await expectViewsAgree(job_id);
    expect(job).toMatchObject({ status: "completed", hostname: b, changed: true });
    expect(job.agent_states[a]).toEqual({
      status: "skipped",
      error: `lease expired; redelivered to ${b}`,
    });
    expect(job.agent_states[b]?.status).toBe("completed");
    expect(job.responses[b]).toMatchObject({ status: "completed", data: "from b" });
    expect(job.timeline.map((t) => [t.event, t.hostname])).toEqual([
      ["submitted", "_api"],
      ["acknowledged", a],
      ["started", a],
      ["skipped", a],
      ["acknowledged", b],
      ["started", b],
      ["completed", b],
    ]);
    expect(await claim(a)).toEqual([]);
  });

  it("fail the job for the agent after the last delivery runs out, and never hand it out again", async () => {
    const agent = host();
    await register(agent);
    const { job_id } = await createJob({ type: "x" }, agent);
    for (let delivery = 1; delivery <= 5; delivery++) {
      const jobs = await claim(agent);
      expect(jobs.map((job) => [job.id, job.delivery])).toEqual([[job_id, delivery]]);
      await expireLease(job_id);
    }
    expect(await claim(agent)).toEqual([]);
    const job = await expectViewsAgree(job_id);
    expect(job).toMatchObject({
      status: "failed",
      error: "max deliveries exceeded",
      hostname: agent,
    });
    expect(job.agent_states[agent]).toMatchObject({
      status: "failed",
      error: "max deliveries exceeded",
    });
    expect(job.timeline.filter((t) => t.event === "acknowledged")).toHaveLength(5);
    expect(job.timeline.at(-1)).toMatchObject({
      event: "failed",
      message: `Job failed on ${agent}`,
      error: "max deliveries exceeded",
    });
    await expireLease(job_id);
    expect(await claim(agent)).toEqual([]);
    await expectError(await report(agent, job_id, { event: "completed" }), 409);

    const retried = await call("POST", `/job/${job_id}/retry`, {
      body: { target_hostname: agent },
    });
    expect(retried.status).toBe(201);
    const { job_id: retryId } = await parse(retried, JobAcceptedSchema);
    expect((await claim(agent)).map((j) => [j.id, j.delivery])).toEqual([[retryId, 1]]);
  });

  it("count deliveries across agents for an _any job, and fail it once they run out", async () => {
    const agents = Array.from({ length: 5 }, () => host("relay"));
    for (const agent of agents) await register(agent);
    const { job_id } = await createJob({ type: "x" });
    for (const [i, agent] of agents.entries()) {
      const jobs = await claim(agent);
      expect(jobs.map((job) => [job.id, job.delivery])).toEqual([[job_id, i + 1]]);
      await expireLease(job_id, agent);
    }
    const spare = host("spare");
    await register(spare);
    expect(await claim(spare)).toEqual([]);
    const job = await expectViewsAgree(job_id);
    expect(job).toMatchObject({ status: "failed", error: "max deliveries exceeded" });
    expect(job.agent_states[agents[4] ?? ""]?.status).toBe("failed");
    for (const agent of agents.slice(0, 4)) expect(job.agent_states[agent]?.status).toBe("skipped");
  });
});

describe("broadcasts", () => {
  it("run on every agent registered before the job; mixed outcomes are partial_failure", async () => {
    const [a, b, c] = [host("a"), host("b"), host("c")];
    await register(a);
    await register(b);
    const { job_id } = await createJob({ type: "x" }, "_all");
    await register(c);
    expect((await claim(c, { limit: 100 })).map((job) => job.id)).not.toContain(job_id);
    expect((await claim(a)).map((job) => job.id)).toEqual([job_id]);
    expect((await claim(b)).map((job) => job.id)).toEqual([job_id]);
    expect(await claim(a)).toEqual([]);

    const first = await reportOk(a, job_id, {
      event: "completed",
      result: { ok: 1 },
      changed: false,
    });
    expect(first.status).toBe("processing");
    const second = await reportOk(b, job_id, { event: "failed", error: "disk full" });
    expect(second.status).toBe("partial_failure");

    const job = await expectViewsAgree(job_id);
    expect(job.status).toBe("partial_failure");
    expect(job.error).toBeUndefined();
    expect(job.result).toBeUndefined();
    expect(job.changed).toBeNull();
    expect(job.hostname).toBe(b);
    expect(job.responses).toEqual({
      [a]: { status: "completed", data: { ok: 1 }, changed: false, hostname: a },
      [b]: { status: "failed", changed: null, error: "disk full", hostname: b },
    });
    expect(job.agent_states[b]).toMatchObject({ status: "failed", error: "disk full" });
  });

  it("are completed when every agent completed, with changed true if any agent changed", async () => {
    const zone = `z${crypto.randomUUID().slice(0, 6)}`;
    const [a, b] = [host("a"), host("b")];
    await register(a, { [zone]: "web.1" });
    await register(b, { [zone]: "web.2" });
    const { job_id } = await createJob({ type: "x" }, `${zone}:web`);
    await claim(a);
    await claim(b);
    await reportOk(a, job_id, { event: "completed", changed: true });
    expect(await expectViewsAgree(job_id)).toMatchObject({ status: "processing", changed: true });
    await reportOk(b, job_id, { event: "completed", changed: false });
    expect(await expectViewsAgree(job_id)).toMatchObject({ status: "completed", changed: true });
  });

  it("are failed with the latest error when every agent failed, skipped when every agent skipped", async () => {
    const [a, b] = [host("a"), host("b")];
    await register(a);
    await register(b);
    const failed = await createJob({ type: "x" }, "_all");
    const skipped = await createJob({ type: "x" }, "_all");
    await claim(a, { limit: 2 });
    await claim(b, { limit: 2 });
    await reportOk(a, failed.job_id, { event: "failed", error: "first" });
    await new Promise((resolve) => setTimeout(resolve, 3));
    await reportOk(b, failed.job_id, { event: "failed", error: "second" });
    expect(await expectViewsAgree(failed.job_id)).toMatchObject({
      status: "failed",
      error: "second",
      hostname: b,
    });
    await reportOk(a, skipped.job_id, { event: "skipped" });
    await reportOk(b, skipped.job_id, { event: "skipped", error: "not here" });
    const job = await expectViewsAgree(skipped.job_id);
    expect(job.status).toBe("skipped");
    expect(job.hostname).toBeUndefined();
  });

  it("let one agent's exhausted deliveries fail only its part", async () => {
    const [a, b] = [host("a"), host("b")];
    await register(a);
    await register(b);
    const { job_id } = await createJob({ type: "x" }, "_all");
    await claim(b);
    await reportOk(b, job_id, { event: "completed" });
    for (let delivery = 1; delivery <= 5; delivery++) {
      expect((await claim(a)).map((job) => job.delivery)).toEqual([delivery]);
      await expireLease(job_id, a);
    }
    expect(await claim(a)).toEqual([]);
    const job = await expectViewsAgree(job_id);
    expect(job.status).toBe("partial_failure");
    expect(job.agent_states[a]).toMatchObject({
      status: "failed",
      error: "max deliveries exceeded",
    });
  });
});

describe("counters and stored status", () => {
  it("equal the real counts, and every job's stored status equals the one its events give", async () => {
    const { counters, actual } = await countersMatchJobs();
    expect(counters).toEqual(actual);
    const { results } = await env.DB.prepare("SELECT id, status FROM jobs").all<{
      id: string;
      status: string;
    }>();
    expect(results.length).toBeGreaterThan(40);
    for (const row of results) expect((await getJob(row.id)).status, row.id).toBe(row.status);
  });
});
