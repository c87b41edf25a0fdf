import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { AgentListSchema, AgentSchema, LeaseResultSchema } from "../src/schemas/agent";
import { CreatedKeySchema, KeyListSchema } from "../src/schemas/key";
import {
  claim,
  expectViewsAgree,
  expireLease,
  getJob,
  host,
  leaseToken,
  register,
  report,
  reportOk,
  storeRevision,
} from "./agents-helpers";
import { checkConsistency, onD1 } from "./consistency";
import { call, createJob, createKey, expectError, parse } from "./helpers";

const AGENT_SCOPES = ["agent:read", "agent:write", "job:read", "job:write"] as const;

/** A key made over the API, as an admin would: its secret, id and prefix. */
async function makeKey(body: Record<string, unknown> = {}) {
  const response = await call("POST", "/keys", {
    body: { name: "agent", scopes: AGENT_SCOPES, ...body },
  });
  expect(response.status, await response.clone().text()).toBe(201);
  return parse(response, CreatedKeySchema);
}

async function registerAs(key: string, hostname: string, labels?: Record<string, string>) {
  return call("PUT", `/agent/${hostname}`, { key, body: labels ? { labels } : {} });
}

async function listed(hostname: string) {
  const { items } = await parse(await call("GET", "/agent"), AgentListSchema);
  return items.find((agent) => agent.hostname === hostname);
}

/** Every agent route for one hostname and job, as the given key sends it. */
function agentCalls(hostname: string, jobId: string, token: string) {
  return {
    register: (key: string) => registerAs(key, hostname, { stolen: "yes" }),
    claim: (key: string) => call("POST", `/agent/${hostname}/claim`, { key, body: {} }),
    lease: (key: string) =>
      call("POST", `/agent/${hostname}/job/${jobId}/lease`, {
        key,
        body: { lease_token: token, lease_seconds: 600 },
      }),
    report: (key: string) =>
      report(hostname, jobId, { event: "completed", result: "fake", lease_token: token }, key),
    deregister: (key: string) => call("DELETE", `/agent/${hostname}`, { key }),
  };
}

describe("a hostname belongs to the key that registered it", () => {
  it("refuses every agent route to another key with 403, and nothing changes", async () => {
    const owner = await makeKey();
    const thief = await makeKey();
    const hostname = host("owned");
    expect((await registerAs(owner.key, hostname, { role: "db" })).status).toBe(200);
    const { job_id } = await createJob({ type: "secret", password: "hunter2" }, hostname);
    const [held] = await claim(hostname, {}, owner.key);
    expect(held?.id).toBe(job_id);
    const before = await storeRevision();

    const calls = agentCalls(hostname, job_id, held?.lease_token ?? "");
    for (const [name, send] of Object.entries(calls)) {
      const error = await expectError(await send(thief.key), 403);
      expect(error.error, name).toBe(`agent ${hostname} belongs to another key`);
    }

    expect(await storeRevision()).toBe(before);
    expect(await listed(hostname)).toMatchObject({
      labels: { role: "db" },
      owner_key_prefix: owner.prefix,
    });
    const job = await getJob(job_id);
    expect(job.status).toBe("processing");
    expect(job.timeline.map((t) => t.event)).toEqual(["submitted", "acknowledged"]);

    for (const [name, send] of Object.entries(calls)) {
      if (name === "claim") continue;
      expect((await send(owner.key)).status, name).toBeLessThan(300);
    }
    expect(await listed(hostname)).toBeUndefined();
  });

  it("lets an admin key deregister any agent, which frees the hostname", async () => {
    const owner = await makeKey();
    const other = await makeKey();
    const hostname = host("freed");
    expect((await registerAs(owner.key, hostname)).status).toBe(200);
    await expectError(await call("DELETE", `/agent/${hostname}`, { key: other.key }), 403);
    expect((await call("DELETE", `/agent/${hostname}`)).status).toBe(204);
    const taken = await parse(await registerAs(other.key, hostname), AgentSchema);
    expect(taken.owner_key_prefix).toBe(other.prefix);
    await expectError(await registerAs(owner.key, hostname), 403);
  });

  it("passes to the key it was rotated to, and the old key keeps it through the grace period", async () => {
    const owner = await makeKey({ agent_hostnames: ["rot-*"] });
    const hostname = host("rot");
    expect((await registerAs(owner.key, hostname)).status).toBe(200);
    const rotated = await call("POST", `/keys/${owner.id}/rotate`, {
      body: { grace_period_seconds: 600 },
    });
    expect(rotated.status).toBe(201);
    const successor = await parse(rotated, CreatedKeySchema);
    expect(successor.agent_hostnames).toEqual(["rot-*"]);
    expect((await listed(hostname))?.owner_key_prefix).toBe(successor.prefix);

    const { job_id } = await createJob({ type: "x" }, hostname);
    await claim(hostname, {}, successor.key);
    const started = await report(hostname, job_id, { event: "started" }, successor.key);
    expect(started.status).toBe(200);
    const done = await report(hostname, job_id, { event: "completed" }, owner.key);
    expect(done.status).toBe(200);
    await expectError(await registerAs(successor.key, host("web")), 403);
    const stranger = await makeKey();
    await expectError(await registerAs(stranger.key, hostname), 403);
  });

  it("is adopted, for an agent registered before ownership, by the first key that acts as it", async () => {
    const hostname = host("legacy");
    await env.DB.prepare(
      `INSERT INTO agents (hostname, labels, registered_at, last_seen, cursor_seq)
       VALUES (?1, '{}', ?2, ?2, (SELECT COALESCE(MAX(seq), 0) FROM jobs))`,
    )
      .bind(hostname, new Date().toISOString())
      .run();
    expect((await listed(hostname))?.owner_key_prefix).toBeNull();
    const first = await makeKey();
    const second = await makeKey();
    const { job_id } = await createJob({ type: "x" }, hostname);
    const [job] = await claim(hostname, {}, first.key);
    expect(job?.id).toBe(job_id);
    expect((await listed(hostname))?.owner_key_prefix).toBe(first.prefix);
    await expectError(await call("POST", `/agent/${hostname}/claim`, { key: second.key }), 403);
  });
});

describe("keys restricted to hostname patterns", () => {
  it("act only as matching hostnames; GET /keys shows the patterns", async () => {
    const key = await makeKey({ agent_hostnames: ["db-*", "web-01", "db-*"] });
    expect(key.agent_hostnames).toEqual(["db-*", "web-01"]);
    const { items } = await parse(await call("GET", "/keys?limit=100"), KeyListSchema);
    expect(items.find((k) => k.id === key.id)?.agent_hostnames).toEqual(["db-*", "web-01"]);
    expect(items.find((k) => k.id !== key.id)).toHaveProperty("agent_hostnames");

    const db = `db-${crypto.randomUUID().slice(0, 8)}.eu`;
    expect((await registerAs(key.key, db)).status).toBe(200);
    const before = await storeRevision();
    for (const hostname of ["xdb-1", "web-011", "web-01x", "DB-1", "web-02"]) {
      const refused = await expectError(await registerAs(key.key, hostname), 403);
      expect(refused).toMatchObject({
        error: `this key may not act as agent ${hostname}`,
        details: "it is restricted to hostnames matching db-*, web-01",
      });
    }
    const outside = host("outside");
    expect((await registerAs(await createKey(["agent:write"]), outside)).status).toBe(200);
    const { job_id } = await createJob({ type: "x" }, db);
    const calls = agentCalls(outside, job_id, "token");
    for (const [name, send] of Object.entries(calls)) {
      const error = await expectError(await send(key.key), 403);
      expect(error.error, name).toBe(`this key may not act as agent ${outside}`);
    }
    expect(await storeRevision(), "the other key's agent and the job").toBe(before + 2);
  });

  it("are refused at creation when a pattern is not a hostname pattern", async () => {
    for (const agent_hostnames of [[], ["db_*/x"], ["-web"], [""], ["a".repeat(254)], "db-*"]) {
      const error = await expectError(
        await call("POST", "/keys", {
          body: { name: "bad", scopes: ["agent:write"], agent_hostnames },
        }),
        400,
      );
      expect(error.details).toMatch(/^agent_hostnames/);
    }
  });
});

describe("lease tokens", () => {
  it("are new for every delivery, at least 128 bits, and stored only as a hash", async () => {
    const agent = host();
    await register(agent);
    const ids = await Promise.all([1, 2, 3].map(() => createJob({ type: "x" }, agent)));
    const first = await claim(agent, { limit: 3 });
    expect(first.map((j) => j.id).sort()).toEqual(ids.map((j) => j.job_id).sort());
    for (const job of first) expect(job.lease_token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(new Set(first.map((j) => j.lease_token)).size).toBe(3);
    for (const job of first) await expireLease(job.id);
    const second = await claim(agent, { limit: 3 });
    expect(second.map((j) => j.delivery)).toEqual([2, 2, 2]);
    const tokens = [...first, ...second].map((j) => j.lease_token);
    expect(new Set(tokens).size).toBe(6);
    const stored = await env.DB.prepare(
      "SELECT group_concat(lease_token_hash) AS hashes FROM job_agents WHERE hostname = ?1",
    )
      .bind(agent)
      .first<{ hashes: string }>();
    for (const token of tokens) expect(stored?.hashes).not.toContain(token);
    expect(stored?.hashes.split(",")).toHaveLength(3);
  });

  it("refuse a missing token (400), an unknown one and an earlier delivery's (409), writing nothing", async () => {
    const agent = host();
    await register(agent);
    const { job_id } = await createJob({ type: "x" }, agent);
    await claim(agent, {});
    const stale = leaseToken(agent, job_id);
    await expireLease(job_id);
    await claim(agent, {});
    const before = await storeRevision();

    const missing = await expectError(
      await report(agent, job_id, { event: "started", lease_token: undefined }),
      400,
    );
    expect(missing.details).toMatch(/^lease_token/);
    const unknown = await expectError(
      await report(agent, job_id, { event: "started", lease_token: "x".repeat(32) }),
      409,
    );
    expect(unknown).toMatchObject({
      error: "unknown lease token",
      details: `send the lease_token the claim handed out with job ${job_id}`,
    });
    const superseded = await expectError(
      await report(agent, job_id, { event: "completed", lease_token: stale }),
      409,
    );
    expect(superseded).toMatchObject({
      error: "superseded by delivery 2",
      details: "the token is delivery 1's; its lease ran out and the job was handed out again",
    });
    const lease = await call("POST", `/agent/${agent}/job/${job_id}/lease`, {
      body: { lease_token: stale, lease_seconds: 60 },
    });
    expect((await expectError(lease, 409)).error).toBe("superseded by delivery 2");
    expect(await storeRevision()).toBe(before);

    await reportOk(agent, job_id, { event: "completed", result: "current" });
    expect(await expectViewsAgree(job_id)).toMatchObject({
      status: "completed",
      result: "current",
    });
    const after = await expectError(await report(agent, job_id, { event: "completed" }), 409);
    expect(after.error).toBe(`agent ${agent} already finished job ${job_id}`);
  });

  it("extend a lease in one request: the delivery can then report after its first expiry", async () => {
    const agent = host();
    await register(agent);
    const { job_id } = await createJob({ type: "x" }, agent);
    const [job] = await claim(agent, { lease_seconds: 5 });
    const before = await storeRevision();
    const extend = (body: Record<string, unknown>) =>
      call("POST", `/agent/${agent}/job/${job_id}/lease`, { body });
    const extended = await parse(
      await extend({ lease_token: job?.lease_token, lease_seconds: 3600 }),
      LeaseResultSchema,
    );
    expect(extended).toMatchObject({ job_id, delivery: 1 });
    expect(Date.parse(extended.lease_expires_at)).toBeGreaterThan(Date.now() + 3500_000);
    expect(await storeRevision(), "the job did not change").toBe(before);
    for (const bad of [{ lease_seconds: 60 }, { lease_token: job?.lease_token }]) {
      await expectError(await extend(bad), 400);
    }
    await expectError(await extend({ lease_token: job?.lease_token, lease_seconds: 3601 }), 400);

    const row = await env.DB.prepare(
      "SELECT lease_expires_at FROM job_agents WHERE job_id = ?1 AND hostname = ?2",
    )
      .bind(job_id, agent)
      .first<{ lease_expires_at: string }>();
    expect(row?.lease_expires_at).toBe(extended.lease_expires_at);
    expect((await reportOk(agent, job_id, { event: "completed" })).status).toBe("completed");
    const ended = await extend({ lease_token: job?.lease_token, lease_seconds: 60 });
    expect((await expectError(ended, 409)).error).toBe(
      `agent ${agent} already finished job ${job_id}`,
    );
  });

  it("refuse an extension after the lease ran out", async () => {
    const agent = host();
    await register(agent);
    const { job_id } = await createJob({ type: "x" }, agent);
    const [job] = await claim(agent, {});
    await expireLease(job_id);
    const late = await call("POST", `/agent/${agent}/job/${job_id}/lease`, {
      body: { lease_token: job?.lease_token, lease_seconds: 60 },
    });
    expect((await expectError(late, 409)).error).toBe("lease expired");
  });
});

describe("started", () => {
  it("is taken once per delivery, however many race: the rest get 409 and write nothing", async () => {
    const agent = host();
    await register(agent);
    const { job_id } = await createJob({ type: "x" }, agent);
    await claim(agent, {});
    const before = await storeRevision();
    const responses = await Promise.all(
      Array.from({ length: 25 }, () => report(agent, job_id, { event: "started" })),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(24);
    const refused = responses.find((r) => r.status === 409);
    expect((await expectError(refused as Response, 409)).error).toBe("already started");
    expect(await storeRevision()).toBe(before + 1);
    const job = await getJob(job_id);
    expect(job.timeline.map((t) => t.event)).toEqual(["submitted", "acknowledged", "started"]);

    await expireLease(job_id);
    await claim(agent, {});
    expect((await reportOk(agent, job_id, { event: "started" })).status).toBe("processing");
    expect((await expectError(await report(agent, job_id, { event: "started" }), 409)).error).toBe(
      "already started",
    );
  });
});

describe("deregistration ends what the agent held", () => {
  it("skips its targeted and broadcast jobs, frees its _any jobs at once, and 404s its late reports", async () => {
    const gone = host("gone");
    const other = host("other");
    await register(gone, { tier: "gone" });
    await register(other);
    const targeted = (await createJob({ type: "t" }, gone)).job_id;
    const labelled = (await createJob({ type: "l" }, `tier:gone`)).job_id;
    const anyJob = (await createJob({ type: "any" })).job_id;
    const held = await claim(gone, { limit: 100 });
    expect(held.map((j) => j.id)).toEqual(expect.arrayContaining([targeted, labelled, anyJob]));
    await reportOk(gone, anyJob, { event: "started" });
    const unclaimed = (await createJob({ type: "later" }, gone)).job_id;
    const before = await storeRevision();

    expect((await call("DELETE", `/agent/${gone}`)).status).toBe(204);
    expect(await storeRevision()).toBe(before + 1);

    for (const id of [targeted, labelled, unclaimed]) {
      const job = await expectViewsAgree(id);
      expect(job.status, id).toBe("skipped");
      expect(job.agent_states[gone]).toEqual({ status: "skipped", error: "agent deregistered" });
      expect(job.timeline.at(-1)).toMatchObject({ event: "skipped", error: "agent deregistered" });
    }

    const [taken] = (await claim(other, { limit: 100 })).filter((j) => j.id === anyJob);
    expect(taken).toMatchObject({ id: anyJob, delivery: 2 });
    const job = await expectViewsAgree(anyJob);
    expect(job.agent_states[gone]).toEqual({
      status: "skipped",
      error: `agent deregistered; redelivered to ${other}`,
    });

    for (const id of [targeted, anyJob]) {
      const late = await expectError(await report(gone, id, { event: "completed" }), 404);
      expect(late.error).toBe(`agent not found: ${gone}`);
    }
    await reportOk(other, anyJob, { event: "completed" });
    expect((await getJob(anyJob)).status).toBe("completed");
  });
});

describe("the store", () => {
  it("is consistent after all of the above", async () => {
    expect(await checkConsistency(onD1(env.DB))).toEqual([]);
  });
});
