import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { AgentListSchema, AgentSchema, ClaimResultSchema } from "../src/schemas/agent";
import { JobAcceptedSchema } from "../src/schemas/job";
import {
  claim,
  drainAnyJobs,
  expectViewsAgree,
  getJob,
  host,
  register,
  report,
  reportOk,
  storeRevision,
} from "./agents-helpers";
import { call, countersMatchJobs, createJob, createKey, expectError, parse } from "./helpers";

// A claim also hands out any `_any` job nobody holds: start each test with none left over.
beforeEach(drainAnyJobs);

describe("PUT /agent/{hostname}", () => {
  it("registers an agent with its labels, ready, and takes a revision", async () => {
    const hostname = host("web");
    const before = await storeRevision();
    const agent = await register(hostname, { group: "web.dev.us-east", os: "debian" });
    expect(agent).toMatchObject({
      hostname,
      labels: { group: "web.dev.us-east", os: "debian" },
      state: "ready",
    });
    expect(agent.registered_at).toBe(agent.last_seen);
    expect(agent.registered_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(await storeRevision()).toBe(before + 1);
  });

  it("refreshes last_seen, keeps registered_at, and keeps labels when none are sent", async () => {
    const hostname = host();
    const first = await register(hostname, { group: "db" });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const before = await storeRevision();
    const again = await register(hostname);
    expect(again.registered_at).toBe(first.registered_at);
    expect(again.last_seen > first.last_seen).toBe(true);
    expect(again.labels).toEqual({ group: "db" });
    expect(await storeRevision()).toBe(before);
  });

  it("replaces the labels when they are sent, and the new labels are what targets match", async () => {
    const hostname = host();
    const [oldKey, newKey] = [host("old"), host("new")];
    await register(hostname, { [oldKey]: "db", zone: "a" });
    const before = await storeRevision();
    const agent = await register(hostname, { [newKey]: "cache" });
    expect(agent.labels).toEqual({ [newKey]: "cache" });
    expect(await storeRevision()).toBe(before + 1);
    const stale = await call("POST", "/job", {
      body: { operation: { type: "x" }, target_hostname: `${oldKey}:db` },
    });
    expect((await expectError(stale, 400)).error).toBe(`target agent "${oldKey}:db" not found`);
    const created = await call("POST", "/job", {
      body: { operation: { type: "x" }, target_hostname: `${newKey}:cache` },
    });
    expect(created.status).toBe(201);
  });

  it.each([
    ["a hostname starting with a dash", "-web", {}],
    ["a hostname with a bad character", "web@01", {}],
    ["a hostname of 254 characters", "a".repeat(254), {}],
    ["a bad label key", "ok-host", { labels: { "gr@up": "web" } }],
    ["a label value with an empty segment", "ok-host", { labels: { group: "web..dev" } }],
    ["a label value with a slash", "ok-host", { labels: { group: "web/dev" } }],
    ["a non-string label value", "ok-host", { labels: { group: 5 } }],
    ["an unknown field", "ok-host", { label: {} }],
  ])("answers 400 for %s", async (_, hostname, body) => {
    await expectError(await call("PUT", `/agent/${hostname}`, { body }), 400);
  });

  it("accepts a hostname of 253 characters", async () => {
    const hostname = `a${crypto.randomUUID().replaceAll("-", "")}`.padEnd(253, "x");
    const response = await call("PUT", `/agent/${hostname}`);
    expect(response.status).toBe(200);
    expect((await parse(response, AgentSchema)).labels).toEqual({});
  });

  it("needs agent:write: 401 without a key, 403 with agent:read or job:write", async () => {
    await expectError(await call("PUT", `/agent/${host()}`, { key: null }), 401);
    for (const scope of ["agent:read", "job:write"] as const) {
      const key = await createKey([scope]);
      const error = await expectError(await call("PUT", `/agent/${host()}`, { key }), 403);
      expect(error.details).toBe("requires agent:write");
    }
    const agentKey = await createKey(["agent:write"]);
    expect((await call("PUT", `/agent/${host()}`, { key: agentKey })).status).toBe(200);
  });
});

describe("GET /agent", () => {
  it("lists agents with their labels, ready when seen within the TTL and stale after", async () => {
    const fresh = host("fresh");
    const old = host("old");
    await register(fresh, { group: "web" });
    await register(old);
    await env.DB.prepare("UPDATE agents SET last_seen = ?2 WHERE hostname = ?1")
      .bind(old, new Date(Date.now() - 61_000).toISOString())
      .run();
    const reader = await createKey(["agent:read"]);
    const list = await parse(await call("GET", "/agent", { key: reader }), AgentListSchema);
    const byName = new Map(list.items.map((agent) => [agent.hostname, agent]));
    expect(byName.get(fresh)).toMatchObject({ labels: { group: "web" }, state: "ready" });
    expect(byName.get(old)).toMatchObject({ labels: {}, state: "stale" });
    const names = list.items.map((agent) => agent.hostname);
    expect(names).toEqual([...names].sort());
  });

  it("pages by hostname with limit and cursor, next_cursor null on the last page", async () => {
    const stem = host("page");
    const names = [`${stem}-a`, `${stem}-b`, `${stem}-c`];
    for (const name of names) await register(name);
    const first = await parse(await call("GET", `/agent?limit=2&cursor=${stem}`), AgentListSchema);
    expect(first.items.map((agent) => agent.hostname)).toEqual(names.slice(0, 2));
    expect(first.next_cursor).toBe(names[1]);
    const all = await parse(await call("GET", "/agent?limit=100"), AgentListSchema);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor === null ? "" : `&cursor=${cursor}`;
      const page = await parse(await call("GET", `/agent?limit=7${query}`), AgentListSchema);
      seen.push(...page.items.map((agent) => agent.hostname));
      cursor = page.next_cursor;
    } while (cursor !== null && seen.length < 10_000);
    expect(seen.slice(0, all.items.length)).toEqual(all.items.map((agent) => agent.hostname));
    expect(new Set(seen).size).toBe(seen.length);
    await expectError(await call("GET", "/agent?limit=101"), 400);
    await expectError(await call("GET", "/agent?cursor=bad@host"), 400);
  });

  it("answers 413 for labels over 4 KiB in all, and stores nothing", async () => {
    const hostname = host("big");
    const labels = Object.fromEntries(
      Array.from({ length: 40 }, (_, i) => [`k${i}`, "v".repeat(120)]),
    );
    const response = await call("PUT", `/agent/${hostname}`, { body: { labels } });
    expect((await expectError(response, 413)).type).toBe("payload_too_large");
    await expectError(await call("DELETE", `/agent/${hostname}`), 404);
  });

  it("needs agent:read", async () => {
    await expectError(await call("GET", "/agent", { key: null }), 401);
    const key = await createKey(["job:read"]);
    expect((await expectError(await call("GET", "/agent", { key }), 403)).details).toBe(
      "requires agent:read",
    );
  });
});

describe("DELETE /agent/{hostname}", () => {
  it("deregisters the agent: 204, then 404, gone from the list, and no longer a valid target", async () => {
    const hostname = host();
    await register(hostname, { team: "gone" });
    const before = await storeRevision();
    const response = await call("DELETE", `/agent/${hostname}`);
    expect(response.status).toBe(204);
    expect(await response.text()).toBe("");
    expect(await storeRevision()).toBe(before + 1);
    const again = await expectError(await call("DELETE", `/agent/${hostname}`), 404);
    expect(again.error).toBe(`agent not found: ${hostname}`);
    const list = await parse(await call("GET", "/agent"), AgentListSchema);
    expect(list.items.some((agent) => agent.hostname === hostname)).toBe(false);
    for (const target of [hostname, "team:gone"]) {
      const error = await expectError(
        await call("POST", "/job", { body: { operation: { type: "x" }, target_hostname: target } }),
        400,
      );
      expect(error.error).toBe(`target agent "${target}" not found`);
    }
  });

  it("keeps what the agent did in the job's history", async () => {
    const hostname = host();
    await register(hostname);
    const { job_id } = await createJob({ type: "x" }, hostname);
    await claim(hostname);
    await reportOk(hostname, job_id, { event: "completed", result: "done" });
    expect((await call("DELETE", `/agent/${hostname}`)).status).toBe(204);
    const job = await getJob(job_id);
    expect(job).toMatchObject({ status: "completed", result: "done", hostname });
  });

  it("needs agent:write, and answers 400 for a bad hostname", async () => {
    const key = await createKey(["agent:read"]);
    await expectError(await call("DELETE", `/agent/${host()}`, { key }), 403);
    await expectError(await call("DELETE", "/agent/bad@host"), 400);
  });
});

describe("targets on POST /job and POST /job/{id}/retry", () => {
  it("accepts a registered hostname and a label that matches, hierarchically", async () => {
    const hostname = host();
    const zone = `z${crypto.randomUUID().slice(0, 6)}`;
    await register(hostname, { [zone]: "web.dev.us-east" });
    for (const target of [
      hostname,
      `${zone}:web`,
      `${zone}:web.dev`,
      `${zone}:web.dev.us-east`,
      "_any",
      "_all",
    ]) {
      const response = await call("POST", "/job", {
        body: { operation: { type: "x" }, target_hostname: target },
      });
      expect(response.status, target).toBe(201);
    }
  });

  it.each([
    ["an unknown hostname", () => "nonexistent-host"],
    ["a label value that is a prefix but not a segment", (zone: string) => `${zone}:we`],
    ["a label below the agent's", (zone: string) => `${zone}:web.dev.us-east.1a`],
    ["a sibling label", (zone: string) => `${zone}:web.prod`],
    ["an unknown label key", () => "nokey:web"],
  ])("refuses %s with 400 and writes nothing", async (_, makeTarget) => {
    const zone = `z${crypto.randomUUID().slice(0, 6)}`;
    await register(host(), { [zone]: "web.dev.us-east" });
    const target = makeTarget(zone);
    const before = await storeRevision();
    const error = await expectError(
      await call("POST", "/job", { body: { operation: { type: "x" }, target_hostname: target } }),
      400,
    );
    expect(error).toEqual({
      type: "target_not_found",
      error: `target agent "${target}" not found`,
      code: 400,
    });
    expect(await storeRevision()).toBe(before);
  });

  it("checks a retry's target: 400 for an unknown one, 404 first when the job is unknown", async () => {
    const original = await createJob();
    const before = await storeRevision();
    const error = await expectError(
      await call("POST", `/job/${original.job_id}/retry`, {
        body: { target_hostname: "group:nowhere" },
      }),
      400,
    );
    expect(error.error).toBe('target agent "group:nowhere" not found');
    expect(await storeRevision()).toBe(before);
    expect((await getJob(original.job_id)).timeline).toHaveLength(1);
    await expectError(
      await call("POST", `/job/${crypto.randomUUID()}/retry`, {
        body: { target_hostname: "group:nowhere" },
      }),
      404,
    );
    const hostname = host();
    await register(hostname);
    await drainAnyJobs();
    const retried = await call("POST", `/job/${original.job_id}/retry`, {
      body: { target_hostname: hostname },
    });
    expect(retried.status).toBe(201);
    const { job_id } = await parse(retried, JobAcceptedSchema);
    expect((await claim(hostname)).map((job) => job.id)).toEqual([job_id]);
  });
});

describe("POST /agent/{hostname}/claim", () => {
  it("answers 404 for an agent that is not registered", async () => {
    const hostname = host();
    const error = await expectError(await call("POST", `/agent/${hostname}/claim`), 404);
    expect(error.error).toBe(`agent not found: ${hostname}`);
  });

  it.each([
    ["limit 0", { limit: 0 }],
    ["limit 101", { limit: 101 }],
    ["a fractional limit", { limit: 1.5 }],
    ["lease_seconds 4", { lease_seconds: 4 }],
    ["lease_seconds 3601", { lease_seconds: 3601 }],
    ["an unknown field", { lease: 10 }],
  ])("answers 400 for %s", async (_, body) => {
    const hostname = host();
    await register(hostname);
    await expectError(await call("POST", `/agent/${hostname}/claim`, { body }), 400);
  });

  it("answers an empty list when nothing is due, takes no revision, and refreshes last_seen once it is half a TTL old", async () => {
    const hostname = host();
    const agent = await register(hostname);
    const lastSeen = async () =>
      (await parse(await call("GET", "/agent"), AgentListSchema)).items.find(
        (a) => a.hostname === hostname,
      )?.last_seen;
    await new Promise((resolve) => setTimeout(resolve, 5));
    const before = await storeRevision();
    const response = await call("POST", `/agent/${hostname}/claim`);
    expect(await parse(response, ClaimResultSchema)).toEqual({ jobs: [] });
    expect(await storeRevision()).toBe(before);
    expect(await lastSeen(), "seen a moment ago: not written again").toBe(agent.last_seen);
    const longAgo = new Date(Date.now() - 31_000).toISOString();
    await env.DB.prepare("UPDATE agents SET last_seen = ?2 WHERE hostname = ?1")
      .bind(hostname, longAgo)
      .run();
    await claim(hostname);
    expect((await lastSeen()) ?? "").toSatisfy((seen: string) => seen > agent.last_seen);
  });

  it("hands out a job targeted at the agent, under a lease, with an acknowledged event", async () => {
    const hostname = host();
    const other = host();
    await register(hostname);
    await register(other);
    const operation = { type: "pkg.install", data: { name: "curl" } };
    const created = await createJob(operation, hostname);
    expect(await claim(other, { limit: 100 })).toEqual([]);
    const start = Date.now();
    const jobs = await claim(hostname, { lease_seconds: 60 });
    expect(jobs).toHaveLength(1);
    const [job] = jobs;
    expect(job).toMatchObject({
      id: created.job_id,
      operation,
      target_hostname: hostname,
      delivery: 1,
    });
    const lease = Date.parse(job?.lease_expires_at ?? "");
    expect(lease).toBeGreaterThanOrEqual(start + 59_000);
    expect(lease).toBeLessThanOrEqual(Date.now() + 60_000);
    const detail = await expectViewsAgree(created.job_id);
    expect(detail.status).toBe("processing");
    expect(detail.revision).toBeGreaterThan(created.revision);
    expect(detail.agent_states).toEqual({ [hostname]: { status: "acknowledged" } });
    expect(detail.timeline.map((t) => [t.event, t.hostname, t.message])).toEqual([
      ["submitted", "_api", "Job submitted to queue"],
      ["acknowledged", hostname, `Job acknowledged by agent ${hostname}`],
    ]);
    expect(await claim(hostname)).toEqual([]);
  });

  it("hands out oldest first, up to the limit (default 1)", async () => {
    const hostname = host();
    await register(hostname);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await createJob({ type: "x", i }, hostname)).job_id);
    expect((await claim(hostname)).map((job) => job.id)).toEqual([ids[0]]);
    expect((await claim(hostname, { limit: 2 })).map((job) => job.id)).toEqual(ids.slice(1, 3));
    expect((await claim(hostname, { limit: 100 })).map((job) => job.id)).toEqual([ids[3]]);
  });

  it("hands label jobs to the agents whose label matches, hierarchically", async () => {
    const zone = `z${crypto.randomUUID().slice(0, 6)}`;
    const east = host("east");
    const west = host("west");
    const prod = host("prod");
    await register(east, { [zone]: "web.dev.us-east" });
    await register(west, { [zone]: "web.dev.us-west" });
    await register(prod, { [zone]: "web.prod" });
    const dev = await createJob({ type: "x" }, `${zone}:web.dev`);
    const web = await createJob({ type: "x" }, `${zone}:web`);
    const onlyEast = await createJob({ type: "x" }, `${zone}:web.dev.us-east`);
    const ids = async (hostname: string) =>
      (await claim(hostname, { limit: 100 })).map((job) => job.id);
    expect(await ids(east)).toEqual([dev.job_id, web.job_id, onlyEast.job_id]);
    expect(await ids(west)).toEqual([dev.job_id, web.job_id]);
    expect(await ids(prod)).toEqual([web.job_id]);
  });

  it("needs agent:write", async () => {
    const hostname = host();
    await register(hostname);
    const key = await createKey(["agent:read"]);
    await expectError(await call("POST", `/agent/${hostname}/claim`, { key }), 403);
  });
});

describe("POST /agent/{hostname}/job/{id}/event", () => {
  async function claimed(labels?: Record<string, string>) {
    const hostname = host();
    await register(hostname, labels);
    const { job_id } = await createJob({ type: "x" }, hostname);
    await claim(hostname);
    return { hostname, job_id };
  }

  it("runs started then completed: status, result, changed, duration, timeline, and revisions", async () => {
    const { hostname, job_id } = await claimed();
    const started = await reportOk(hostname, job_id, { event: "started" });
    expect(started).toMatchObject({ job_id, status: "processing" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const done = await reportOk(hostname, job_id, {
      event: "completed",
      result: { hostname, packages: ["curl"] },
      changed: true,
    });
    expect(done).toEqual({ job_id, status: "completed", revision: started.revision + 1 });
    const job = await expectViewsAgree(job_id);
    expect(job).toMatchObject({
      status: "completed",
      revision: done.revision,
      result: { hostname, packages: ["curl"] },
      changed: true,
      hostname,
      responses: {
        [hostname]: {
          status: "completed",
          data: { hostname, packages: ["curl"] },
          changed: true,
          hostname,
        },
      },
    });
    expect(job.error).toBeUndefined();
    expect(job.agent_states[hostname]?.status).toBe("completed");
    expect(job.agent_states[hostname]?.duration).toMatch(/^\d+ms$/);
    expect(Number.parseInt(job.agent_states[hostname]?.duration ?? "0", 10)).toBeGreaterThanOrEqual(
      20,
    );
    expect(job.timeline.map((t) => t.message)).toEqual([
      "Job submitted to queue",
      `Job acknowledged by agent ${hostname}`,
      `Job processing started on ${hostname}`,
      `Job completed successfully on ${hostname}`,
    ]);
  });

  it("records a failure with its error, and the failed job can be retried and then complete", async () => {
    const { hostname, job_id } = await claimed();
    const failed = await reportOk(hostname, job_id, { event: "failed", error: "disk full" });
    expect(failed.status).toBe("failed");
    const job = await expectViewsAgree(job_id);
    expect(job).toMatchObject({ status: "failed", error: "disk full", hostname, changed: null });
    expect(job.timeline.at(-1)).toMatchObject({
      event: "failed",
      message: `Job failed on ${hostname}`,
      error: "disk full",
    });
    const retried = await parse(
      await call("POST", `/job/${job_id}/retry`, { body: { target_hostname: hostname } }),
      JobAcceptedSchema,
    );
    expect((await claim(hostname)).map((j) => j.id)).toEqual([retried.job_id]);
    await reportOk(hostname, retried.job_id, { event: "completed", result: null, changed: false });
    const retry = await expectViewsAgree(retried.job_id);
    expect(retry).toMatchObject({ status: "completed", result: null, changed: false, attempt: 2 });
    expect((await getJob(job_id)).status).toBe("failed");
  });

  it("records a skip: skipped, with the reason in the timeline", async () => {
    const { hostname, job_id } = await claimed();
    const skipped = await reportOk(hostname, job_id, {
      event: "skipped",
      error: "unsupported OS family",
    });
    expect(skipped.status).toBe("skipped");
    const job = await expectViewsAgree(job_id);
    expect(job.agent_states[hostname]).toEqual({
      status: "skipped",
      error: "unsupported OS family",
    });
    expect(job.timeline.at(-1)).toMatchObject({
      message: `Job skipped on ${hostname}`,
      error: "unsupported OS family",
    });
  });

  it("refuses a second final report with 409 and changes nothing", async () => {
    const { hostname, job_id } = await claimed();
    await reportOk(hostname, job_id, { event: "completed", result: 1 });
    const before = await storeRevision();
    for (const body of [
      { event: "failed", error: "late" },
      { event: "completed", result: 2 },
      { event: "started" },
    ]) {
      const error = await expectError(await report(hostname, job_id, body), 409);
      expect(error.error).toBe(`agent ${hostname} already finished job ${job_id}`);
    }
    expect(await storeRevision()).toBe(before);
    expect(await expectViewsAgree(job_id)).toMatchObject({ status: "completed", result: 1 });
  });

  it("refuses a report on a job the agent has not claimed (409) and an unknown job (404)", async () => {
    const hostname = host();
    await register(hostname);
    const { job_id } = await createJob({ type: "x" }, hostname);
    const unclaimed = await expectError(
      await report(hostname, job_id, { event: "completed" }),
      409,
    );
    expect(unclaimed).toMatchObject({
      error: "unknown lease token",
      details: `agent ${hostname} does not hold job ${job_id}: claim it first`,
    });
    const stranger = host();
    await register(stranger);
    await claim(hostname);
    await expectError(await report(stranger, job_id, { event: "started" }), 409);
    const id = crypto.randomUUID();
    const missing = await expectError(await report(hostname, id, { event: "started" }), 404);
    expect(missing.error).toBe(`job not found: ${id}`);
    expect((await getJob(job_id)).status).toBe("processing");
  });

  it.each([
    ["an unknown event", { event: "acknowledged" }],
    ["started with a result", { event: "started", result: 1 }],
    ["failed without an error", { event: "failed" }],
    ["an empty error", { event: "failed", error: "" }],
    ["a non-boolean changed", { event: "completed", changed: "yes" }],
    ["an unknown field", { event: "completed", output: 1 }],
  ])("answers 400 for %s", async (_, body) => {
    const { hostname, job_id } = await claimed();
    await expectError(await report(hostname, job_id, body), 400);
    expect((await getJob(job_id)).status).toBe("processing");
  });

  it("says which events there are when the event is unknown, and what a body lacks", async () => {
    const { hostname, job_id } = await claimed();
    const unknown = await expectError(await report(hostname, job_id, { event: "done" }), 400);
    expect(unknown.details).toContain("event: must be one of started, completed, failed, skipped");
    const failed = await expectError(await report(hostname, job_id, { event: "failed" }), 400);
    expect(failed.details).toContain("error");
  });

  it("answers 413 for a result over 64 KiB", async () => {
    const { hostname, job_id } = await claimed();
    const body = { event: "completed", result: "x".repeat(65 * 1024) };
    const error = await expectError(await report(hostname, job_id, body), 413);
    expect(error.type).toBe("payload_too_large");
    expect((await getJob(job_id)).status).toBe("processing");
  });

  it("answers 400 for a bad job id or hostname, 403 without agent:write", async () => {
    const { hostname, job_id } = await claimed();
    await expectError(await report(hostname, "not-a-uuid", { event: "started" }), 400);
    await expectError(await report("bad@host", job_id, { event: "started" }), 400);
    const key = await createKey(["job:write", "agent:read"]);
    await expectError(
      await call("POST", `/agent/${hostname}/job/${job_id}/event`, {
        key,
        body: { event: "started" },
      }),
      403,
    );
  });

  it("accepts the job id in any letter case", async () => {
    const { hostname, job_id } = await claimed();
    const outcome = await reportOk(hostname, job_id.toUpperCase(), { event: "completed" });
    expect(outcome.job_id).toBe(job_id);
  });
});

describe("DELETE /job/{id} with agents", () => {
  it("removes the agents' rows with the job: a report then gets 404", async () => {
    const hostname = host();
    await register(hostname);
    const { job_id } = await createJob({ type: "x" }, hostname);
    await claim(hostname);
    expect((await call("DELETE", `/job/${job_id}`)).status).toBe(204);
    await expectError(await report(hostname, job_id, { event: "completed" }), 404);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM job_agents WHERE job_id = ?1")
      .bind(job_id)
      .first<{ n: number }>();
    expect(rows?.n).toBe(0);
  });
});

describe("counters", () => {
  it("equal the real counts after everything in this file", async () => {
    const { counters, actual } = await countersMatchJobs();
    expect(counters).toEqual(actual);
  });
});
