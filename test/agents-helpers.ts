import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { AgentEventResultSchema, AgentSchema, ClaimResultSchema } from "../src/schemas/agent";
import { JobListSchema, JobSchema, type JobSummary } from "../src/schemas/job";
import { call, parse } from "./helpers";

/** A hostname no other test uses. */
export function host(prefix = "agent"): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

export async function register(hostname: string, labels?: Record<string, string>) {
  const response = await call("PUT", `/agent/${hostname}`, {
    body: labels === undefined ? {} : { labels },
  });
  expect(response.status).toBe(200);
  return parse(response, AgentSchema);
}

/** The lease token of each agent's latest delivery of each job, as its claim handed it out. */
const leaseTokens = new Map<string, string>();
const deliveryKey = (hostname: string, id: string) => `${hostname} ${id.toLowerCase()}`;

export function leaseToken(hostname: string, id: string): string {
  const token = leaseTokens.get(deliveryKey(hostname, id));
  if (token === undefined) throw new Error(`${hostname} was never handed job ${id}`);
  return token;
}

export async function claim(
  hostname: string,
  body: { limit?: number; lease_seconds?: number } = {},
  key?: string,
) {
  const response = await call("POST", `/agent/${hostname}/claim`, { body, key });
  if (response.status !== 200)
    throw new Error(`claim failed: ${response.status} ${await response.text()}`);
  const { jobs } = await parse(response, ClaimResultSchema);
  rememberLeases(hostname, jobs);
  return jobs;
}

/** Keeps the tokens a claim handed out, for report() to send. */
export function rememberLeases(hostname: string, jobs: { id: string; lease_token: string }[]) {
  for (const job of jobs) leaseTokens.set(deliveryKey(hostname, job.id), job.lease_token);
}

/**
 * A report as the agent sends it: with the lease token of its latest delivery of the job, unless
 * the body names one (or names `lease_token: undefined`, to send none).
 */
export function report(hostname: string, id: string, body: Record<string, unknown>, key?: string) {
  const withToken =
    "lease_token" in body
      ? body
      : { ...body, lease_token: leaseTokens.get(deliveryKey(hostname, id)) ?? "never-claimed" };
  return call("POST", `/agent/${hostname}/job/${id}/event`, { body: withToken, key });
}

export async function reportOk(hostname: string, id: string, body: Record<string, unknown>) {
  const response = await report(hostname, id, body);
  if (response.status !== 200)
    throw new Error(`report failed: ${response.status} ${await response.text()}`);
  return parse(response, AgentEventResultSchema);
}

export async function getJob(id: string) {
  const response = await call("GET", `/job/${id}`);
  expect(response.status).toBe(200);
  return parse(response, JobSchema);
}

/** The job as the list shows it (the summary columns), found by paging. */
export async function listItem(id: string): Promise<JobSummary> {
  for (let offset = 0; ; offset += 100) {
    const page = await parse(await call("GET", `/job?limit=100&offset=${offset}`), JobListSchema);
    const item = page.items.find((job) => job.id === id);
    if (item) return item;
    if (page.items.length < 100) throw new Error(`job ${id} is not in the list`);
  }
}

/**
 * The status kept in SQL by the claim and report batches (what the list and the counters show)
 * against the one derived from the events (what GET /job/{id} shows), with the answers' summary.
 */
export async function expectViewsAgree(id: string) {
  const [detail, item] = await Promise.all([getJob(id), listItem(id)]);
  const pick = (job: JobSummary) => ({
    status: job.status,
    result: job.result,
    changed: job.changed,
    error: job.error,
    hostname: job.hostname,
    revision: job.revision,
  });
  expect(pick(item)).toEqual(pick(detail));
  return detail;
}

/** Makes the lease of a job's row run out now, as if the time had passed. */
export async function expireLease(jobId: string, hostname?: string) {
  await env.DB.prepare(
    "UPDATE job_agents SET lease_expires_at = '2000-01-01T00:00:00.000Z' WHERE job_id = ?1 AND (?2 IS NULL OR hostname = ?2)",
  )
    .bind(jobId, hostname ?? null)
    .run();
}

export async function storeRevision(): Promise<number> {
  const row = await env.DB.prepare("SELECT revision FROM store_revision").first<{
    revision: number;
  }>();
  return row?.revision ?? -1;
}

/** Claims every `_any` job nobody holds and completes it, so a test starts from a clean queue. */
export async function drainAnyJobs() {
  const drainer = host("drain");
  await register(drainer);
  for (;;) {
    const jobs = await claim(drainer, { limit: 100 });
    if (jobs.length === 0) return;
    for (const job of jobs) await reportOk(drainer, job.id, { event: "completed" });
  }
}
