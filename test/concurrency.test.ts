import { env } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AgentEventResultSchema, ClaimResultSchema } from "../src/schemas/agent";
import { JobAcceptedSchema, JobSchema } from "../src/schemas/job";
import { checkConsistency, onD1 } from "./consistency";
import { direct } from "./direct-fetch";
import { expectError } from "./helpers";

beforeAll(() => {
  vi.spyOn(console, "log").mockImplementation(() => {});
});

afterAll(() => {
  vi.restoreAllMocks();
});

/** Every job this file deleted (204): the check allows lineage that points at them. */
const deleted = new Set<string>();

async function violations() {
  return checkConsistency(onD1(env.DB), deleted);
}

async function revision(): Promise<number> {
  const row = await env.DB.prepare("SELECT revision FROM store_revision").first<{
    revision: number;
  }>();
  return row?.revision ?? -1;
}

async function create(type = "race.create", target?: string) {
  const response = await direct("POST", "/job", {
    body: target ? { operation: { type }, target_hostname: target } : { operation: { type } },
  });
  expect(response.status).toBe(201);
  return JobAcceptedSchema.parse(await response.json());
}

async function getJob(id: string) {
  const response = await direct("GET", `/job/${id}`);
  expect(response.status).toBe(200);
  return JobSchema.parse(await response.json());
}

function shuffle<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

/** Runs the thunks all at once, in a random order, and returns their results in input order. */
function race<T>(thunks: (() => Promise<T>)[]): Promise<T[]> {
  const order = shuffle(thunks.map((_, i) => i));
  const results: Promise<T>[] = new Array(thunks.length);
  for (const i of order) results[i] = (thunks[i] as () => Promise<T>)();
  return Promise.all(results);
}

describe("the consistency check", () => {
  it("finds the violations of retry policies and cancellation it is planted with", async () => {
    const [p, c1, c2, x, d] = Array.from({ length: 5 }, () => crypto.randomUUID());
    const policy = JSON.stringify({ max_attempts: 2, retry_on: ["failed"] });
    const insert = (fields: string, values: string) =>
      env.DB.prepare(
        `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision, root_job_id, attempt${fields})
         VALUES (?1, '{"type":"x"}', '_any', 'now', 'now', 0, 0, ?2, ?3${values})`,
      );
    await env.DB.batch([
      insert(", status, retry_policy, retries_exhausted", ", 'completed', ?4, 1").bind(
        p,
        p,
        1,
        policy,
      ),
      insert(", retry_of, retried_by, retry_policy", ", ?4, 'automatic', ?5").bind(
        c1,
        p,
        2,
        p,
        policy,
      ),
      insert(", retry_of, retried_by, retry_policy", ", ?4, 'automatic', ?5").bind(
        c2,
        p,
        2,
        p,
        policy,
      ),
      insert(", status", ", 'cancelled'").bind(x, x, 1),
      env.DB.prepare(
        "INSERT INTO job_agents (job_id, job_seq, hostname, state) SELECT id, seq, 'planted', 'pending' FROM jobs WHERE id = ?1",
      ).bind(x),
      // A job waiting for its time whose pending row does not carry that time.
      insert(", not_before", ", '2999-01-01T00:00:00.000Z'").bind(d, d, 1),
      env.DB.prepare(
        "INSERT INTO job_agents (job_id, job_seq, hostname, state) SELECT id, seq, 'planted', 'pending' FROM jobs WHERE id = ?1",
      ).bind(d),
    ]);
    try {
      const found = new Set((await violations()).map((v) => v.check));
      for (const check of [
        "automatic_retry_not_one",
        "automatic_retry_without_reason",
        "exhausted_without_reason",
        "cancelled_job_still_open",
        "cancelled_without_request",
        "agent_row_time_wrong",
      ])
        expect(found).toContain(check);
    } finally {
      await env.DB.batch([
        env.DB.prepare("DELETE FROM job_agents WHERE job_id IN (?1, ?2)").bind(x, d),
        env.DB.prepare("DELETE FROM jobs WHERE id IN (?1, ?2, ?3, ?4, ?5)").bind(c1, c2, x, p, d),
      ]);
    }
    expect(await violations()).toEqual([]);
  });

  it("finds each kind of violation it is planted with, and forgives what a delete explains", async () => {
    const { job_id } = await create("planted");
    const ghost = crypto.randomUUID();
    const stray = crypto.randomUUID();
    const plant = [
      env.DB.prepare(
        "INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision, root_job_id, attempt) VALUES (?1, '{\"type\":\"x\"}', '_any', 'now', 'now', 0, 0, ?1, 1)",
      ).bind(stray),
      env.DB.prepare(
        "INSERT INTO job_events (job_id, event, hostname, created_at, revision, data, lease_token_hash) VALUES (?1, 'retried', '_api', 'now', 0, json_object('new_job_id', ?2), 'reused'), (?1, 'retried', '_api', 'now', 0, json_object('new_job_id', ?2), 'reused')",
      ).bind(job_id, ghost),
      env.DB.prepare("UPDATE job_counts SET n = n + 1 WHERE status = 'failed'"),
      env.DB.prepare(
        "INSERT INTO job_agents (job_id, job_seq, hostname, state, revision, lease_token_hash) SELECT id, seq, 'planted-a', 'started', 1, 'unacknowledged' FROM jobs WHERE id = ?1 UNION ALL SELECT id, seq, 'planted-b', 'started', 1, NULL FROM jobs WHERE id = ?1 UNION ALL SELECT id, seq, 'planted-c', 'pending', 1, 'closed' FROM jobs WHERE id = ?1",
      ).bind(job_id),
      env.DB.prepare(
        "INSERT INTO agents (hostname, registered_at, last_seen) VALUES ('planted-ownerless', 'now', 'now')",
      ),
      env.DB.prepare(
        "UPDATE jobs SET revision = (SELECT revision + 5 FROM store_revision) WHERE id = ?1",
      ).bind(job_id),
    ];
    await env.DB.batch(plant);
    try {
      const found = await violations();
      expect(new Set(found.map((v) => v.check))).toEqual(
        new Set([
          "job_without_one_submitted_event",
          "retried_event_without_new_job",
          "counter_differs_from_count",
          "revision_ahead_of_store",
          "job_revisions_decreasing_in_commit_order",
          "event_revisions_decreasing_in_commit_order",
          "any_job_held_by_two_agents",
          "agent_state_without_its_event",
          "lease_token_on_closed_delivery",
          "open_delivery_not_the_latest",
          "lease_token_reused",
          "agent_without_owner",
        ]),
      );
      expect(found).toContainEqual({
        check: "retried_event_without_new_job",
        subject: job_id,
        ref: ghost,
      });
      expect(found).toContainEqual({
        check: "job_without_one_submitted_event",
        subject: stray,
        ref: "0",
      });
      const explained = await checkConsistency(onD1(env.DB), new Set([ghost]));
      expect(explained.map((v) => v.check)).not.toContain("retried_event_without_new_job");
    } finally {
      await env.DB.batch([
        env.DB.prepare("DELETE FROM jobs WHERE id = ?1").bind(stray),
        env.DB.prepare("DELETE FROM job_events WHERE job_id = ?1 AND event = 'retried'").bind(
          job_id,
        ),
        env.DB.prepare("UPDATE job_counts SET n = n - 1 WHERE status = 'failed'"),
        env.DB.prepare("DELETE FROM job_agents WHERE job_id = ?1").bind(job_id),
        env.DB.prepare("DELETE FROM agents WHERE hostname = 'planted-ownerless'"),
        env.DB.prepare("UPDATE jobs SET revision = created_revision WHERE id = ?1").bind(job_id),
      ]);
    }
    expect(await violations()).toEqual([]);
  });
});

describe("hundreds of concurrent writers", () => {
  it("creates: every 201 is one stored job with its submitted event, revisions one per write in commit order", async () => {
    const before = await revision();
    const valid = Array.from(
      { length: 300 },
      (_, i) => () => direct("POST", "/job", { body: { operation: { type: "race.create", i } } }),
    );
    const invalid = Array.from(
      { length: 60 },
      (_, i) => () =>
        direct("POST", "/job", { body: i % 2 ? { operation: { type: "" } } : { operation: "x" } }),
    );
    const responses = await race([...valid, ...invalid]);
    const created = responses.slice(0, 300);
    expect(created.map((r) => r.status)).toEqual(Array(300).fill(201));
    for (const refused of responses.slice(300)) await expectError(refused, 400);
    const accepted = await Promise.all(
      created.map(async (r) => JobAcceptedSchema.parse(await r.json())),
    );

    const revisions = accepted.map((a) => a.revision).sort((a, b) => a - b);
    expect(revisions).toEqual(Array.from({ length: 300 }, (_, i) => before + 1 + i));
    expect(await revision()).toBe(before + 300);

    const stored = await env.DB.prepare(
      `SELECT j.id, j.created_revision, j.revision, COUNT(e.seq) AS events, MIN(e.event) AS event, MIN(e.revision) AS event_revision
       FROM jobs j LEFT JOIN job_events e ON e.job_id = j.id
       WHERE j.created_revision > ?1 GROUP BY j.id ORDER BY j.seq`,
    )
      .bind(before)
      .all<{
        id: string;
        created_revision: number;
        revision: number;
        events: number;
        event: string;
        event_revision: number;
      }>();
    expect(stored.results).toHaveLength(300);
    const byId = new Map(accepted.map((a) => [a.job_id, a.revision]));
    const commitOrder = stored.results.map((row) => row.created_revision);
    expect(commitOrder).toEqual(revisions);
    for (const row of stored.results) {
      expect(row).toMatchObject({
        revision: byId.get(row.id),
        created_revision: byId.get(row.id),
        events: 1,
        event: "submitted",
        event_revision: byId.get(row.id),
      });
    }
    expect(await violations()).toEqual([]);
  });

  it("retries race each other, deletes of the original and retries of their own results", async () => {
    const originals = await Promise.all(Array.from({ length: 20 }, () => create("race.retry")));
    const before = await revision();

    const firstWave = originals.flatMap(({ job_id }, n) => [
      ...Array.from({ length: 8 }, () => () => direct("POST", `/job/${job_id}/retry`)),
      ...(n % 2 === 0 ? [() => direct("DELETE", `/job/${job_id}`)] : []),
    ]);
    const first = await race(firstWave);
    const children: { id: string; of: string; revision: number }[] = [];
    let writes = 0;
    let position = 0;
    for (const [n, { job_id }] of originals.entries()) {
      const mine = first.slice(position, position + (n % 2 === 0 ? 9 : 8));
      position += mine.length;
      for (const [i, response] of mine.entries()) {
        if (i === 8) {
          expect(response.status).toBe(204);
          deleted.add(job_id);
          writes++;
        } else if (response.status === 201) {
          const { job_id: id, revision } = JobAcceptedSchema.parse(await response.json());
          children.push({ id, of: job_id, revision });
          writes++;
        } else {
          expect((await expectError(response, 404)).error).toBe(`job not found: ${job_id}`);
          expect(n % 2, "only a deleted job answers 404").toBe(0);
        }
      }
    }
    expect(children.length).toBeGreaterThanOrEqual(80);

    const secondWave = [
      ...children.flatMap(({ id }, n) => [
        () => direct("POST", `/job/${id}/retry`, { body: { target_hostname: "_all" } }),
        ...(n % 3 === 0 ? [() => direct("DELETE", `/job/${id}`)] : []),
      ]),
      ...originals.map(
        ({ job_id }) =>
          () =>
            direct("POST", `/job/${job_id}/retry`),
      ),
    ];
    const second = await race(secondWave);
    const grandchildren: string[] = [];
    for (const response of second) {
      if (response.status === 201) {
        grandchildren.push(JobAcceptedSchema.parse(await response.json()).job_id);
        writes++;
      } else if (response.status === 204) {
        writes++;
      } else {
        await expectError(response, 404);
      }
    }
    for (const [n, { id }] of children.entries()) if (n % 3 === 0) deleted.add(id);

    expect(await revision()).toBe(before + writes);
    expect(new Set(children.map((c) => c.revision)).size).toBe(children.length);

    for (const { job_id } of originals) {
      if (deleted.has(job_id)) {
        const left = await env.DB.prepare("SELECT COUNT(*) AS n FROM job_events WHERE job_id = ?1")
          .bind(job_id)
          .first<{ n: number }>();
        expect(left?.n).toBe(0);
        continue;
      }
      const original = await getJob(job_id);
      const retriedAs = original.timeline
        .filter((t) => t.event === "retried")
        .map((t) => t.message.replace("Job retried as ", ""));
      const mine = await env.DB.prepare("SELECT id FROM jobs WHERE retry_of = ?1")
        .bind(job_id)
        .all<{ id: string }>();
      const gone = children.filter((c) => c.of === job_id && deleted.has(c.id)).map((c) => c.id);
      expect(new Set(retriedAs)).toEqual(new Set([...mine.results.map((r) => r.id), ...gone]));
      expect(retriedAs).toHaveLength(mine.results.length + gone.length);
    }
    const originalIds = new Set(originals.map((o) => o.job_id));
    for (const id of grandchildren) {
      const job = await getJob(id);
      const ofOriginal = originalIds.has(job.retry_of ?? "");
      expect(job.attempt).toBe(ofOriginal ? 2 : 3);
      expect(job.target_hostname).toBe(ofOriginal ? "_any" : "_all");
      expect(job.timeline.map((t) => t.event)).toEqual(["submitted"]);
    }
    expect(await violations()).toEqual([]);
  });
});

async function registerAgents(prefix: string, count: number): Promise<string[]> {
  const agents = Array.from(
    { length: count },
    (_, i) => `${prefix}-${i}-${crypto.randomUUID().slice(0, 6)}`,
  );
  for (const hostname of agents) {
    expect((await direct("PUT", `/agent/${hostname}`, { body: {} })).status).toBe(200);
  }
  return agents;
}

describe("agents racing for claims", () => {
  it("never share an _any job, while jobs are created, retried and deleted under them", async () => {
    const agents = await registerAgents("racer", 6);
    const jobs = (await Promise.all(Array.from({ length: 60 }, () => create("race.claim")))).map(
      (j) => j.job_id,
    );
    const heldBy = new Map<string, string[]>();
    const statuses: number[] = [];

    const claimAndWork = async (hostname: string) => {
      for (let round = 0; round < 4; round++) {
        const response = await direct("POST", `/agent/${hostname}/claim`, {
          body: { limit: 3, lease_seconds: 300 },
        });
        statuses.push(response.status);
        if (response.status !== 200) continue;
        const { jobs: claimed } = ClaimResultSchema.parse(await response.json());
        await Promise.all(
          claimed.map(async (job) => {
            heldBy.set(job.id, [...(heldBy.get(job.id) ?? []), hostname]);
            const { lease_token } = job;
            const started = await direct("POST", `/agent/${hostname}/job/${job.id}/event`, {
              body: { event: "started", lease_token },
            });
            statuses.push(started.status);
            const done = await direct("POST", `/agent/${hostname}/job/${job.id}/event`, {
              body:
                job.id.charCodeAt(0) % 2
                  ? { event: "completed", result: { by: hostname }, changed: true, lease_token }
                  : { event: "failed", error: `failed on ${hostname}`, lease_token },
            });
            statuses.push(done.status);
            if (done.status === 200) AgentEventResultSchema.parse(await done.json());
          }),
        );
      }
    };
    const meddle = jobs.flatMap((id, n) =>
      n % 5 === 0
        ? [
            async () => {
              const r = await direct("DELETE", `/job/${id}`);
              statuses.push(r.status);
              if (r.status === 204) deleted.add(id);
            },
          ]
        : n % 5 === 1
          ? [
              async () => {
                statuses.push((await direct("POST", `/job/${id}/retry`)).status);
              },
            ]
          : [],
    );
    const extra = Array.from({ length: 20 }, () => async () => {
      statuses.push(
        (await direct("POST", "/job", { body: { operation: { type: "race.late" } } })).status,
      );
    });
    await race<unknown>([...agents.map((h) => () => claimAndWork(h)), ...meddle, ...extra]);

    expect(statuses.filter((s) => s >= 500)).toEqual([]);
    const shared = [...heldBy].filter(([, holders]) => holders.length > 1);
    expect(shared).toEqual([]);
    expect(heldBy.size).toBeGreaterThan(30);
    expect(await violations()).toEqual([]);
  });

  it("never share one when leases run out mid-race: late reports race the agents taking over", async () => {
    const agents = await registerAgents("lease", 5);
    await Promise.all(Array.from({ length: 25 }, () => create("race.lease")));
    const claimAll = async () =>
      (
        await race(
          agents.map((hostname) => async () => {
            const response = await direct("POST", `/agent/${hostname}/claim`, {
              body: { limit: 10, lease_seconds: 60 },
            });
            expect(response.status).toBe(200);
            const { jobs } = ClaimResultSchema.parse(await response.json());
            return jobs.map((job) => ({ hostname, id: job.id, token: job.lease_token }));
          }),
        )
      ).flat();
    const first = await claimAll();
    expect(first.length).toBeGreaterThan(0);
    expect(new Set(first.map((c) => c.id)).size).toBe(first.length);
    const ids = first.map((c) => c.id);
    await env.DB.prepare(
      `UPDATE job_agents SET lease_expires_at = '2000-01-01T00:00:00.000Z'
       WHERE job_id IN (SELECT value FROM json_each(?1))`,
    )
      .bind(JSON.stringify(ids))
      .run();

    const lateReport = new Map<string, number>();
    const late = first.map(({ hostname, id, token }) => async () => {
      const response = await direct("POST", `/agent/${hostname}/job/${id}/event`, {
        body: { event: "completed", result: { late: true }, lease_token: token },
      });
      lateReport.set(id, response.status);
      return [] as { hostname: string; id: string; token: string }[];
    });
    const second = (await race([...late, claimAll])).flat();
    // A report from a delivery whose lease ran out is refused, whoever gets the job next (the
    // same agent included), so no late result is ever taken and every job is handed out again.
    expect([...lateReport.values()].filter((s) => s !== 409)).toEqual([]);
    expect(new Set(second.map((c) => c.id)).size).toBe(second.length);
    expect(second.map((c) => c.id).sort()).toEqual([...ids].sort());
    for (const { token, id } of second)
      expect(token, `${id} has a new token`).not.toBe(first.find((c) => c.id === id)?.token);
    expect(await violations()).toEqual([]);
  });
});
