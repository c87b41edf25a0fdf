import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { claimJobs } from "../src/db/agents";
import { host, register, reportOk } from "./agents-helpers";
import { countingD1, createCounter } from "./counting-d1";
import { createJob } from "./helpers";

/** The lineage of the key that registered the test's agents: the file's admin key. */
async function lineage(): Promise<string> {
  const row = await env.DB.prepare("SELECT owner_lineage_id AS owner FROM agents LIMIT 1").first<{
    owner: string;
  }>();
  if (!row) throw new Error("no agent registered yet");
  return row.owner;
}

async function measureClaim(hostname: string) {
  const counter = createCounter();
  const db = countingD1(env.DB, counter);
  const now = Date.now();
  const outcome = await claimJobs(db, {
    hostname,
    owner: { lineage: await lineage() },
    now: new Date(now).toISOString(),
    seenBefore: new Date(now - 30_000).toISOString(),
    leaseExpiresAt: new Date(now + 60_000).toISOString(),
    limit: 10,
    maxDeliveries: 5,
  });
  const jobs = "jobs" in outcome ? outcome.jobs : [];
  return { jobs, calls: counter.count, rowsRead: counter.rowsRead };
}

/** Finished `_any` jobs the agent answered, and work waiting for other agents. */
async function seed(hostname: string, n: number) {
  const jobs = `INSERT INTO jobs (id, operation, target_hostname, status, created_at, updated_at, created_revision, revision, root_job_id, attempt)
    WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1),
    made AS MATERIALIZED (SELECT lower(hex(randomblob(16))) AS id FROM k)
    SELECT id, '{"type":"seed"}', ?2, ?3, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 0, 0, id, 1 FROM made`;
  await env.DB.batch([
    env.DB.prepare(jobs).bind(n, "_any", "completed"),
    env.DB.prepare(
      `INSERT OR IGNORE INTO job_agents (job_id, job_seq, hostname, state, delivery, finished_at)
       SELECT id, seq, ?1, 'completed', 1, created_at FROM jobs WHERE target_hostname = '_any' AND status = 'completed'
         AND operation = '{"type":"seed"}'`,
    ).bind(hostname),
    env.DB.prepare(jobs).bind(n, "someone-else", "unprocessed"),
  ]);
}

describe("claim cost", () => {
  it("is one round trip whose reads do not grow with finished jobs or other agents' work", async () => {
    const agent = host();
    await register(agent);
    const oneJob = async () => {
      const { job_id } = await createJob({ type: "x" }, agent);
      const measured = await measureClaim(agent);
      expect(measured.jobs.map((job) => job.id)).toEqual([job_id]);
      const lease_token = measured.jobs[0]?.lease_token;
      await reportOk(agent, job_id, { event: "completed", lease_token });
      return measured;
    };
    const measureAll = async () => ({ job: await oneJob(), idle: await measureClaim(agent) });
    const empty = await measureAll();
    await seed(agent, 5_000);
    const catchUp = await measureClaim(agent);
    const at10k = await measureAll();
    await seed(agent, 20_000);
    await measureClaim(agent);
    const at50k = await measureAll();
    console.log(
      `claim rows read with 0 / 10,000 / 50,000 other jobs: one job ${empty.job.rowsRead} / ${at10k.job.rowsRead} / ${at50k.job.rowsRead}, nothing due ${empty.idle.rowsRead} / ${at10k.idle.rowsRead} / ${at50k.idle.rowsRead}; the first claim after 10,000 new jobs ${catchUp.rowsRead}`,
    );
    for (const m of [empty.job, empty.idle, catchUp, at10k.job, at10k.idle, at50k.job, at50k.idle])
      expect(m.calls).toBe(1);
    expect(at50k).toMatchObject({
      job: { rowsRead: at10k.job.rowsRead },
      idle: { rowsRead: at10k.idle.rowsRead },
    });
    expect(at10k.job.rowsRead).toBeLessThanOrEqual(empty.job.rowsRead + 10);
    expect(at10k.idle.rowsRead).toBeLessThanOrEqual(empty.idle.rowsRead + 10);
  });
});
