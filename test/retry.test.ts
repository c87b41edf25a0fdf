import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { JobAcceptedSchema, JobSchema } from "../src/schemas/job";
import { call, countersMatchJobs, createJob, createKey, expectError, parse } from "./helpers";

async function revision(): Promise<number> {
  const row = await env.DB.prepare("SELECT revision FROM store_revision").first<{
    revision: number;
  }>();
  return row?.revision ?? -1;
}

async function getJob(id: string) {
  return parse(await call("GET", `/job/${id}`), JobSchema);
}

describe("POST /job/{id}/retry", () => {
  it("makes a new job from the original's operation, with lineage, and leaves the original's status alone", async () => {
    const operation = { type: "pkg.install", data: { name: "curl", versions: [1, 2] } };
    const original = await createJob(operation, "_all");
    const response = await call("POST", `/job/${original.job_id}/retry`, {
      body: { target_hostname: "_any" },
    });
    expect(response.status).toBe(201);
    const retried = await parse(response, JobAcceptedSchema);
    expect(retried.job_id).not.toBe(original.job_id);
    expect(retried.status).toBe("unprocessed");
    expect(retried.revision).toBe(original.revision + 1);
    expect(response.headers.get("Location")).toBe(`/job/${retried.job_id}`);

    const copy = await getJob(retried.job_id);
    expect(copy).toMatchObject({
      operation,
      target_hostname: "_any",
      retry_of: original.job_id,
      root_job_id: original.job_id,
      attempt: 2,
      status: "unprocessed",
      revision: retried.revision,
      created: retried.timestamp,
    });
    expect(copy.timeline.map((t) => t.event)).toEqual(["submitted"]);

    const source = await getJob(original.job_id);
    expect(source.status).toBe("unprocessed");
    expect(source.revision).toBe(retried.revision);
    expect(source.updated_at).toBe(retried.timestamp);
    expect(source.timeline.map((t) => [t.event, t.hostname, t.message])).toEqual([
      ["submitted", "_api", "Job submitted to queue"],
      ["retried", "_api", `Job retried as ${retried.job_id}`],
    ]);
  });

  it("targets _any without a body, with {} and with a null target, whatever the original's target", async () => {
    const original = await createJob({ type: "x" }, "_all");
    for (const options of [{}, { body: {} }, { body: { target_hostname: null } }]) {
      const response = await call("POST", `/job/${original.job_id}/retry`, options);
      expect(response.status).toBe(201);
      const { job_id } = await parse(response, JobAcceptedSchema);
      expect((await getJob(job_id)).target_hostname).toBe("_any");
    }
  });

  it("follows a chain: root_job_id stays the first job and attempt counts up", async () => {
    const first = await createJob();
    let current = first.job_id;
    for (let attempt = 2; attempt <= 4; attempt++) {
      const { job_id } = await parse(
        await call("POST", `/job/${current}/retry`),
        JobAcceptedSchema,
      );
      const job = await getJob(job_id);
      expect(job).toMatchObject({ retry_of: current, root_job_id: first.job_id, attempt });
      current = job_id;
    }
  });

  it("accepts the id in any letter case", async () => {
    const original = await createJob();
    const response = await call("POST", `/job/${original.job_id.toUpperCase()}/retry`);
    expect(response.status).toBe(201);
    const { job_id } = await parse(response, JobAcceptedSchema);
    expect((await getJob(job_id)).retry_of).toBe(original.job_id);
  });

  it.each([
    ["an empty target", { target_hostname: "" }],
    ["a malformed label", { target_hostname: "group:web/dev" }],
    ["a label without key", { target_hostname: ":web" }],
    ["a non-string target", { target_hostname: 5 }],
    ["an unknown field", { target: "_any" }],
  ])("answers 400 for %s and writes nothing", async (_, body) => {
    const original = await createJob();
    const before = await revision();
    const error = await expectError(
      await call("POST", `/job/${original.job_id}/retry`, { body }),
      400,
    );
    expect(error.error).toBe("invalid request body");
    expect(await revision()).toBe(before);
    expect((await getJob(original.job_id)).timeline).toHaveLength(1);
  });

  it("answers 400 for a bad id and malformed JSON", async () => {
    await expectError(await call("POST", "/job/not-a-uuid/retry"), 400);
    const original = await createJob();
    const response = await call("POST", `/job/${original.job_id}/retry`, {
      rawBody: "{",
      headers: { "Content-Type": "application/json" },
    });
    await expectError(response, 400);
  });

  it("answers 415 for a body without a Content-Type, and retries without a body", async () => {
    const original = await createJob();
    const before = await revision();
    const untyped = await call("POST", `/job/${original.job_id}/retry`, {
      rawBody: new TextEncoder().encode('{"target_hostname":"_any"}'),
    });
    expect(untyped.headers.get("Content-Type")).toMatch(/^application\/json/);
    await expectError(untyped, 415);
    expect(await revision()).toBe(before);
    const bodiless = await call("POST", `/job/${original.job_id}/retry`);
    expect(bodiless.status).toBe(201);
  });

  it("answers 404 for an unknown job and writes nothing", async () => {
    const before = await revision();
    const id = crypto.randomUUID();
    const error = await expectError(await call("POST", `/job/${id}/retry`), 404);
    expect(error.error).toBe(`job not found: ${id}`);
    expect(await revision()).toBe(before);
  });

  it("answers 401 without a key and 403 with a read-only key, before looking at the body", async () => {
    const original = await createJob();
    const noKey = await call("POST", `/job/${original.job_id}/retry`, {
      key: null,
      body: { target_hostname: "" },
    });
    await expectError(noKey, 401);
    const reader = await createKey(["job:read"]);
    const forbidden = await call("POST", `/job/${original.job_id}/retry`, {
      key: reader,
      body: { target_hostname: "" },
    });
    expect(await expectError(forbidden, 403)).toEqual({
      type: "insufficient_scope",
      error: "Insufficient permissions",
      details: "requires job:write",
      code: 403,
    });
  });

  it("answers 500 without internals when a statement of the batch fails, and rolls all of it back", async () => {
    const original = await createJob();
    await env.DB.prepare(
      `CREATE TRIGGER fail_retry_${original.job_id.slice(0, 8)} BEFORE INSERT ON job_events
       WHEN NEW.event = 'retried' AND NEW.job_id = '${original.job_id}'
       BEGIN SELECT RAISE(ABORT, 'injected failure'); END`,
    ).run();
    const before = await revision();
    const jobsBefore = await env.DB.prepare("SELECT COUNT(*) AS n FROM jobs").first<{
      n: number;
    }>();
    const response = await call("POST", `/job/${original.job_id}/retry`);
    expect(await expectError(response, 500)).toEqual({
      type: "internal_error",
      error: "internal error",
      code: 500,
    });
    expect(await revision()).toBe(before);
    const jobsAfter = await env.DB.prepare("SELECT COUNT(*) AS n FROM jobs").first<{ n: number }>();
    expect(jobsAfter?.n).toBe(jobsBefore?.n);
    expect((await getJob(original.job_id)).timeline).toHaveLength(1);
    const { counters, actual } = await countersMatchJobs();
    expect(counters).toEqual(actual);
  });

  it("gives 50 concurrent retries of one job 50 new jobs, 50 increasing revisions and 50 retried events", async () => {
    const original = await createJob({ type: "concurrent.retry" });
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => call("POST", `/job/${original.job_id}/retry`)),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(201));
    const accepted = await Promise.all(responses.map((r) => parse(r, JobAcceptedSchema)));
    expect(new Set(accepted.map((a) => a.job_id)).size).toBe(50);
    const revisions = accepted.map((a) => a.revision);
    expect(new Set(revisions).size).toBe(50);
    expect(Math.min(...revisions)).toBeGreaterThan(original.revision);

    const stored = await env.DB.prepare(
      "SELECT id, created_revision FROM jobs WHERE retry_of = ?1 ORDER BY seq",
    )
      .bind(original.job_id)
      .all<{ id: string; created_revision: number }>();
    expect(stored.results).toHaveLength(50);
    const inCommitOrder = stored.results.map((r) => r.created_revision);
    expect(inCommitOrder).toEqual([...inCommitOrder].sort((a, b) => a - b));
    expect(new Set(stored.results.map((r) => r.id))).toEqual(
      new Set(accepted.map((a) => a.job_id)),
    );

    const source = await getJob(original.job_id);
    const retriedEvents = source.timeline.filter((t) => t.event === "retried");
    expect(retriedEvents).toHaveLength(50);
    expect(new Set(retriedEvents.map((t) => t.message))).toEqual(
      new Set(accepted.map((a) => `Job retried as ${a.job_id}`)),
    );
    expect(source.status).toBe("unprocessed");
    expect(source.revision).toBe(Math.max(...revisions));

    const { counters, actual } = await countersMatchJobs();
    expect(counters).toEqual(actual);
  });

  it("either writes everything or nothing when retries race a delete", async () => {
    const original = await createJob({ type: "race.delete" });
    const requests = [
      ...Array.from({ length: 10 }, () => call("POST", `/job/${original.job_id}/retry`)),
      call("DELETE", `/job/${original.job_id}`),
      ...Array.from({ length: 10 }, () => call("POST", `/job/${original.job_id}/retry`)),
    ];
    const responses = await Promise.all(requests);
    const retries = responses.filter((_, i) => i !== 10);
    expect(responses[10]?.status).toBe(204);
    const created = retries.filter((r) => r.status === 201);
    expect(created.length + retries.filter((r) => r.status === 404).length).toBe(20);
    const newIds = await Promise.all(
      created.map(async (r) => (await parse(r, JobAcceptedSchema)).job_id),
    );
    for (const id of newIds) {
      const job = await getJob(id);
      expect(job.retry_of).toBe(original.job_id);
      expect(job.timeline.map((t) => t.event)).toEqual(["submitted"]);
    }
    const children = await env.DB.prepare("SELECT COUNT(*) AS n FROM jobs WHERE retry_of = ?1")
      .bind(original.job_id)
      .first<{ n: number }>();
    expect(children?.n).toBe(created.length);
    const orphans = await env.DB.prepare("SELECT COUNT(*) AS n FROM job_events WHERE job_id = ?1")
      .bind(original.job_id)
      .first<{ n: number }>();
    expect(orphans?.n).toBe(0);
    const { counters, actual } = await countersMatchJobs();
    expect(counters).toEqual(actual);
  });

  it("answers 404 and writes nothing for a job deleted before the retry", async () => {
    const original = await createJob();
    expect((await call("DELETE", `/job/${original.job_id}`)).status).toBe(204);
    const before = await revision();
    await expectError(await call("POST", `/job/${original.job_id}/retry`), 404);
    expect(await revision()).toBe(before);
    const children = await env.DB.prepare("SELECT COUNT(*) AS n FROM jobs WHERE retry_of = ?1")
      .bind(original.job_id)
      .first<{ n: number }>();
    expect(children?.n).toBe(0);
  });
});
