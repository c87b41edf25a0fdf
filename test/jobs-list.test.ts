import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { deleteJobsCreatedBefore } from "../src/db/jobs";
import { AgentListSchema } from "../src/schemas/agent";
import { JobListSchema } from "../src/schemas/job";
import { claim, drainAnyJobs, host, register, reportOk, storeRevision } from "./agents-helpers";
import { checkConsistency, onD1 } from "./consistency";
import { call, createJob, expectError, parse } from "./helpers";

async function list(query: string) {
  const response = await call("GET", `/job?${query}`);
  expect(response.status, await response.clone().text()).toBe(200);
  return parse(response, JobListSchema);
}

async function ids(query: string): Promise<string[]> {
  return (await list(query)).items.map((job) => job.id);
}

async function jobsFor(target: string, n: number): Promise<string[]> {
  const made: string[] = [];
  for (let i = 0; i < n; i++) made.push((await createJob({ type: "list.test" }, target)).job_id);
  return made.reverse();
}

describe("GET /job?target=", () => {
  it("lists only the jobs submitted for exactly that target, newest first, counted", async () => {
    const web = host("web");
    await register(web, { tier: `t${web.slice(-8)}` });
    const label = `tier:t${web.slice(-8)}`;
    const forHost = await jobsFor(web, 3);
    const forLabel = await jobsFor(label, 2);
    const forAll = await jobsFor("_all", 1);
    await jobsFor("_any", 1);

    const byHost = await list(`target=${web}&limit=2`);
    expect(byHost.items.map((j) => j.id)).toEqual(forHost.slice(0, 2));
    expect(byHost.total_items).toBe(3);
    const rest = await list(`target=${web}&limit=2&cursor=${byHost.next_cursor}`);
    expect(rest.items.map((j) => j.id)).toEqual(forHost.slice(2));
    expect(rest.next_cursor).toBeNull();

    expect(await ids(`target=${encodeURIComponent(label)}`)).toEqual(forLabel);
    const all = await list("target=_all&limit=100");
    expect(all.items.every((j) => j.target_hostname === "_all")).toBe(true);
    expect(all.items.map((j) => j.id)).toContain(forAll[0]);
    const any = await list("target=_any&limit=100");
    expect(any.items.every((j) => j.target_hostname === "_any")).toBe(true);
  });

  it("combines with status and lineage", async () => {
    const web = host("web");
    await register(web);
    const [newest, oldest] = await jobsFor(web, 2);
    await call("POST", `/job/${oldest}/cancel`);
    const cancelled = await list(`target=${web}&status=cancelled`);
    expect(cancelled.items.map((j) => j.id)).toEqual([oldest]);
    expect(cancelled.total_items).toBe(1);
    expect(await ids(`target=${web}&status=unprocessed`)).toEqual([newest]);

    const retry = await call("POST", `/job/${oldest}/retry`, { body: { target_hostname: web } });
    const { job_id: retried } = (await retry.json()) as { job_id: string };
    await call("POST", `/job/${oldest}/retry`, { body: { target_hostname: "_any" } });
    expect(await ids(`target=${web}&root_job_id=${oldest}`)).toEqual([retried, oldest]);
    expect(await ids(`target=${web}&retry_of=${oldest}`)).toEqual([retried]);
    expect((await list(`target=_any&retry_of=${oldest}`)).total_items).toBe(1);
  });

  it("counts with the clock and dead-letter filters too: the target's counters less its waiting jobs", async () => {
    const web = host("web");
    await register(web);
    const [now] = await jobsFor(web, 1);
    const later = await call("POST", "/job", {
      body: { operation: { type: "list.test" }, target_hostname: web, delay_seconds: 3600 },
    });
    const { job_id: waiting } = (await later.json()) as { job_id: string };
    const due = await list(`target=${web}&due=true`);
    expect(due.items.map((j) => j.id)).toEqual([now]);
    expect(due.total_items).toBe(1);
    const notDue = await list(`target=${web}&due=false`);
    expect(notDue.items.map((j) => j.id)).toEqual([waiting]);
    expect(notDue.total_items).toBe(1);
    expect((await list(`target=${web}&status=unprocessed&due=true`)).total_items).toBe(1);
    expect((await list(`target=${web}&status=cancelled&due=true`)).total_items).toBe(0);
    const alive = await list(`target=${web}&retries_exhausted=false`);
    expect(alive.total_items).toBe(2);
    expect((await list(`target=${web}&retries_exhausted=true`)).total_items).toBe(0);
  });

  it.each([
    ["a malformed label", "gr@up:web"],
    ["a space", "web%2001"],
    ["an empty target", ""],
  ])("answers 400 for %s", async (_, target) => {
    const error = await expectError(await call("GET", `/job?target=${target}`), 400);
    expect(error.details).toMatch(/target/);
  });
});

async function heldJobs(hostname: string): Promise<number | undefined> {
  const agents = await parse(await call("GET", "/agent?limit=100"), AgentListSchema);
  return agents.items.find((a) => a.hostname === hostname)?.held_jobs;
}

describe("GET /job?held_by= and the agents' held_jobs", () => {
  it("lists the jobs the agent holds now, acknowledged or started, not pending or ended", async () => {
    await drainAnyJobs();
    const agent = host("holder");
    await register(agent);
    const [third, second, first] = await jobsFor(agent, 3);
    const claimed = await claim(agent, { limit: 2 });
    expect(claimed.map((j) => j.id)).toEqual([first, second]);
    await reportOk(agent, first as string, { event: "started" });

    const held = await list(`held_by=${agent}`);
    expect(held.items.map((j) => j.id)).toEqual([second, first]);
    expect(held.total_items).toBe(2);
    expect(await heldJobs(agent)).toBe(2);

    await reportOk(agent, first as string, { event: "completed", result: {} });
    expect(await ids(`held_by=${agent}`)).toEqual([second]);
    expect(await ids(`held_by=${agent}&status=completed`)).toEqual([]);
    expect(await ids(`held_by=${agent}&target=${agent}`)).toEqual([second]);
    expect(await ids(`held_by=${agent}&target=_any`)).toEqual([]);
    expect(await heldJobs(agent)).toBe(1);
    expect(third).toBeDefined();
    expect(await ids(`held_by=${host("nobody")}`)).toEqual([]);
  });

  it("answers 400 for a held_by that is no hostname", async () => {
    const error = await expectError(await call("GET", "/job?held_by=web%2001"), 400);
    expect(error.details).toMatch(/held_by/);
  });
});

async function tagOfList(query = ""): Promise<string> {
  const response = await call("GET", `/job${query}`);
  expect(response.status).toBe(200);
  await response.body?.cancel();
  return response.headers.get("ETag") ?? "";
}

describe("conditional GET /job", () => {
  it('sends the store revision as a strong ETag "s<revision>" and answers 304 while it holds', async () => {
    await createJob();
    const response = await call("GET", "/job?status=unprocessed&limit=3");
    const etag = response.headers.get("ETag");
    expect(etag).toBe(`"s${await storeRevision()}"`);
    await response.body?.cancel();

    for (const ifNoneMatch of [etag as string, `W/${etag}`, `"s0", ${etag}`, "*"]) {
      const again = await call("GET", "/job?status=unprocessed&limit=3", {
        headers: { "If-None-Match": ifNoneMatch },
      });
      expect(again.status, ifNoneMatch).toBe(304);
      expect(again.headers.get("ETag")).toBe(etag);
      expect(await again.text()).toBe("");
    }
    const jobTag = etag?.replace('"s', '"r') as string;
    const notAJobTag = await call("GET", "/job", { headers: { "If-None-Match": jobTag } });
    expect(notAJobTag.status).toBe(200);
    await notAJobTag.body?.cancel();
  });

  it("answers 200 with a new ETag after a write", async () => {
    const before = await tagOfList();
    const { job_id } = await createJob();
    const response = await call("GET", "/job", { headers: { "If-None-Match": before } });
    expect(response.status).toBe(200);
    const after = response.headers.get("ETag");
    expect(after).not.toBe(before);
    expect((await parse(response, JobListSchema)).items[0]?.id).toBe(job_id);
  });

  it("changes with every kind of write that changes a list", async () => {
    await drainAnyJobs();
    const agent = host("etag");
    await register(agent);
    const [c, b, a] = await jobsFor(agent, 3);
    const writes: [string, () => Promise<unknown>][] = [
      ["claim", () => claim(agent, { limit: 1 })],
      ["report", () => reportOk(agent, a as string, { event: "failed", error: "x" })],
      ["retry", () => call("POST", `/job/${a}/retry`)],
      ["bulk retry", () => call("POST", "/job/retry", { body: { job_ids: [a] } })],
      ["cancel", () => call("POST", `/job/${b}/cancel`)],
      ["delete", () => call("DELETE", `/job/${c}`)],
      [
        "retention",
        async () => {
          await env.DB.prepare(
            "UPDATE jobs SET created_at = '1999-01-01T00:00:00.000Z' WHERE id = ?1",
          )
            .bind(b)
            .run();
          expect(await deleteJobsCreatedBefore(env.DB, "2000-01-01T00:00:00.000Z", 1000)).toBe(1);
        },
      ],
      ["deregistration", () => call("DELETE", `/agent/${agent}`)],
    ];
    const deleted = new Set([c as string, b as string]);
    for (const [name, write] of writes) {
      const before = await tagOfList(`?target=${agent}`);
      await write();
      expect(await tagOfList(`?target=${agent}`), name).not.toBe(before);
      expect(await checkConsistency(onD1(env.DB), deleted), name).toEqual([]);
    }
  });

  it("sends no ETag for a list that depends on the clock (due=), and ignores If-None-Match there", async () => {
    const etag = await tagOfList();
    for (const due of ["true", "false"]) {
      const response = await call("GET", `/job?due=${due}`, { headers: { "If-None-Match": etag } });
      expect(response.status).toBe(200);
      expect(response.headers.get("ETag")).toBeNull();
      await response.body?.cancel();
    }
  });
});
