import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { JobAcceptedSchema, JobListSchema, JobSchema } from "../src/schemas/job";
import { call, countersMatchJobs, createJob, expectError, parse } from "./helpers";

async function revision(): Promise<number> {
  const row = await env.DB.prepare("SELECT revision FROM store_revision").first<{
    revision: number;
  }>();
  return row?.revision ?? -1;
}

describe("POST /job", () => {
  it("stores the job and answers 201 with its id, status, revision and Location", async () => {
    const before = await revision();
    const response = await call("POST", "/job", {
      body: { operation: { type: "node.hostname.get", data: {} } },
    });
    expect(response.status).toBe(201);
    const accepted = await parse(response, JobAcceptedSchema);
    expect(accepted.status).toBe("unprocessed");
    expect(accepted.revision).toBe(before + 1);
    expect(accepted.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(response.headers.get("Location")).toBe(`/job/${accepted.job_id}`);
    const job = await parse(await call("GET", `/job/${accepted.job_id}`), JobSchema);
    expect(job).toMatchObject({
      id: accepted.job_id,
      status: "unprocessed",
      created: accepted.timestamp,
      updated_at: accepted.timestamp,
      target_hostname: "_any",
      revision: accepted.revision,
      root_job_id: accepted.job_id,
      attempt: 1,
      changed: null,
      responses: {},
      agent_states: {},
    });
    expect(job.retry_of).toBeUndefined();
    expect(job.timeline).toEqual([
      {
        timestamp: accepted.timestamp,
        event: "submitted",
        hostname: "_api",
        message: "Job submitted to queue",
      },
    ]);
  });

  it("stores the operation as sent, nested data and all", async () => {
    const operation = {
      type: "file.write",
      data: { path: "/etc/motd", lines: ["a", "b"], mode: 420, nested: { x: null } },
    };
    const { job_id } = await createJob(operation, "_all");
    const job = await parse(await call("GET", `/job/${job_id}`), JobSchema);
    expect(job.operation).toEqual(operation);
    expect(job.target_hostname).toBe("_all");
  });

  it.each([
    ["no operation", { target_hostname: "_any" }],
    ["an operation that is not an object", { operation: "node.hostname.get" }],
    ["an operation without type", { operation: { data: {} } }],
    ["an empty type", { operation: { type: "" } }],
    ["a non-string type", { operation: { type: 7 } }],
    ["an empty target", { operation: { type: "x" }, target_hostname: "" }],
    ["a malformed label target", { operation: { type: "x" }, target_hostname: "gr@up:web" }],
    ["a target with a bad character", { operation: { type: "x" }, target_hostname: "web 01" }],
    ["an unknown field", { operation: { type: "x" }, target_host: "web-01" }],
    ["an array body", [{ operation: { type: "x" } }]],
  ])("answers 400 for %s and writes nothing", async (_, body) => {
    const before = await revision();
    const error = await expectError(await call("POST", "/job", { body }), 400);
    expect(error.error).toBe("invalid request body");
    expect(error.details).toBeTruthy();
    expect(await revision()).toBe(before);
  });

  it("answers 400 for malformed JSON", async () => {
    const response = await call("POST", "/job", {
      rawBody: '{"operation":',
      headers: { "Content-Type": "application/json" },
    });
    expect((await expectError(response, 400)).error).toBe("malformed JSON in request body");
  });

  it("answers 415 for a body that is not JSON", async () => {
    const response = await call("POST", "/job", {
      rawBody: "operation=x",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
    await expectError(response, 415);
  });

  it("answers 413 for a body over 1 MiB and for an operation over 64 KiB", async () => {
    const huge = JSON.stringify({ operation: { type: "x", data: "a".repeat(1024 * 1024) } });
    await expectError(
      await call("POST", "/job", {
        rawBody: huge,
        headers: { "Content-Type": "application/json" },
      }),
      413,
    );
    const big = { operation: { type: "x", data: "a".repeat(70 * 1024) } };
    const error = await expectError(await call("POST", "/job", { body: big }), 413);
    expect(error.type).toBe("payload_too_large");
    expect(error.details).toContain("65536 bytes");
  });
});

describe("GET /job/{id}", () => {
  it("accepts the id in any letter case", async () => {
    const { job_id } = await createJob();
    const response = await call("GET", `/job/${job_id.toUpperCase()}`);
    expect(response.status).toBe(200);
    expect((await parse(response, JobSchema)).id).toBe(job_id);
  });

  it("answers 404 for an unknown id", async () => {
    const id = crypto.randomUUID();
    expect((await expectError(await call("GET", `/job/${id}`), 404)).error).toBe(
      `job not found: ${id}`,
    );
  });

  it.each([
    "not-a-uuid",
    "12345",
    "5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e1",
    "5b0e2a527a4b4c1e9d074a3b1f7c2e10",
    "%27%20OR%201=1",
  ])("answers 400 for the id %s", async (id) => {
    const error = await expectError(await call("GET", `/job/${id}`), 400);
    expect(error.details).toContain("id: must be a UUID");
  });
});

describe("GET /job", () => {
  it("lists newest first, pages with limit and offset, and counts every status", async () => {
    const made = [];
    for (let i = 0; i < 3; i++) made.push((await createJob({ type: "list.test", i })).job_id);
    const first = await parse(await call("GET", "/job?limit=2"), JobListSchema);
    expect(first.items.map((j) => j.id)).toEqual([made[2], made[1]]);
    const second = await parse(await call("GET", "/job?limit=1&offset=2"), JobListSchema);
    expect(second.items.map((j) => j.id)).toEqual([made[0]]);
    expect(first.total_items).toBeGreaterThanOrEqual(3);
    expect(Object.keys(first.status_counts).sort()).toEqual([
      "cancelled",
      "completed",
      "failed",
      "partial_failure",
      "processing",
      "skipped",
      "unprocessed",
    ]);
    const sum = Object.values(first.status_counts).reduce((a, b) => a + b, 0);
    expect(first.total_items).toBe(sum);
    const item = first.items[0];
    expect(item).toBeDefined();
    expect(item && "timeline" in item).toBe(false);
  });

  it("defaults to 10 items and filters by status, with submitted as an alias of unprocessed", async () => {
    for (let i = 0; i < 11; i++) await createJob();
    const page = await parse(await call("GET", "/job"), JobListSchema);
    expect(page.items).toHaveLength(10);
    const unprocessed = await parse(
      await call("GET", "/job?status=submitted&limit=100"),
      JobListSchema,
    );
    expect(unprocessed.items.every((j) => j.status === "unprocessed")).toBe(true);
    expect(unprocessed.total_items).toBe(unprocessed.status_counts.unprocessed);
    const completed = await parse(await call("GET", "/job?status=completed"), JobListSchema);
    expect(completed.total_items).toBe(completed.status_counts.completed);
    expect(completed.items.every((j) => j.status === "completed")).toBe(true);
  });

  it("answers an offset past the end with no items and the right total", async () => {
    await createJob();
    const page = await parse(await call("GET", "/job?offset=100000"), JobListSchema);
    expect(page.items).toEqual([]);
    expect(page.total_items).toBeGreaterThan(0);
  });

  it("pages with next_cursor: every job once, in order, unshifted by jobs created between pages", async () => {
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await createJob({ type: "cursor.test", i })).job_id);
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 3; page++) {
      const query: string = cursor === null ? "" : `&cursor=${cursor}`;
      const body = await parse(await call("GET", `/job?limit=2${query}`), JobListSchema);
      seen.push(...body.items.map((j) => j.id));
      expect(body.next_cursor).toMatch(/^[1-9][0-9]*$/);
      cursor = body.next_cursor;
      await createJob({ type: "cursor.test.later" });
    }
    expect(seen.slice(0, 5)).toEqual([...made].reverse());
    expect(new Set(seen).size).toBe(seen.length);

    const unprocessed = await parse(
      await call("GET", `/job?status=unprocessed&limit=100&cursor=${cursor}`),
      JobListSchema,
    );
    expect(unprocessed.items.every((j) => j.status === "unprocessed")).toBe(true);
    expect(unprocessed.items.some((j) => seen.includes(j.id))).toBe(false);
    expect(unprocessed.total_items).toBe(unprocessed.status_counts.unprocessed);
  });

  it("ends with next_cursor null on the last page, a full one too", async () => {
    const { job_id } = await createJob();
    const chain = await parse(
      await call("GET", `/job?root_job_id=${job_id}&limit=5`),
      JobListSchema,
    );
    expect(chain.items.map((j) => j.id)).toEqual([job_id]);
    expect(chain.next_cursor).toBeNull();
    const full = await parse(
      await call("GET", `/job?root_job_id=${job_id}&limit=1`),
      JobListSchema,
    );
    expect(full).toMatchObject({ items: [{ id: job_id }], next_cursor: null });
    const { job_id: retried } = await parse(
      await call("POST", `/job/${job_id}/retry`),
      JobAcceptedSchema,
    );
    const first = await parse(
      await call("GET", `/job?root_job_id=${job_id}&limit=1`),
      JobListSchema,
    );
    expect(first.items.map((j) => j.id)).toEqual([retried]);
    const last = await parse(
      await call("GET", `/job?root_job_id=${job_id}&limit=1&cursor=${first.next_cursor}`),
      JobListSchema,
    );
    expect(last).toMatchObject({ items: [{ id: job_id }], total_items: 2, next_cursor: null });
  });

  it.each([
    "limit=0x10",
    "limit=0b11",
    "limit=1e1",
    "limit=%2010",
    "limit=",
    "offset=",
    "offset=1e3",
    "offset=0x1",
    "limit=10.0",
  ])("answers 400 for the integer parameter %s, which is not a plain decimal", async (query) => {
    const error = await expectError(await call("GET", `/job?${query}`), 400);
    expect(error.type).toBe("invalid_query");
  });

  it.each([
    "cursor=abc",
    "cursor=0",
    "cursor=-5",
    "cursor=12345678901234567",
    "cursor=5&offset=10",
    "status=bogus",
    "limit=0",
    "limit=101",
    "limit=-1",
    "offset=-1",
    "limit=abc",
    "limit=1.5",
    "limit=1&limit=2",
    "colour=red",
  ])("answers 400 for ?%s", async (query) => {
    const error = await expectError(await call("GET", `/job?${query}`), 400);
    expect(error.error).toBe("invalid query parameter");
  });
});

describe("DELETE /job/{id}", () => {
  it("removes the job and its events, takes a revision and moves the counters", async () => {
    const { job_id } = await createJob();
    const before = await revision();
    const response = await call("DELETE", `/job/${job_id}`);
    expect(response.status).toBe(204);
    expect(await response.text()).toBe("");
    expect(await revision()).toBe(before + 1);
    await expectError(await call("GET", `/job/${job_id}`), 404);
    await expectError(await call("POST", `/job/${job_id}/retry`), 404);
    await expectError(await call("DELETE", `/job/${job_id}`), 404);
    const events = await env.DB.prepare("SELECT COUNT(*) AS n FROM job_events WHERE job_id = ?1")
      .bind(job_id)
      .first<{ n: number }>();
    expect(events?.n).toBe(0);
    const { counters, actual } = await countersMatchJobs();
    expect(counters).toEqual(actual);
  });

  it("answers 404 for an unknown id without taking a revision", async () => {
    const before = await revision();
    await expectError(await call("DELETE", `/job/${crypto.randomUUID()}`), 404);
    expect(await revision()).toBe(before);
  });
});

describe("routing", () => {
  it("answers 404 in the error shape for an unknown path", async () => {
    expect((await expectError(await call("GET", "/jobs"), 404)).error).toBe("not found");
  });

  it("answers 405 with Allow for a known path and a wrong method", async () => {
    const response = await call("PUT", "/job");
    expect(response.headers.get("Allow")).toBe("POST, GET");
    await expectError(response, 405);
    const { job_id } = await createJob();
    const onJob = await call("PATCH", `/job/${job_id}`);
    expect(onJob.headers.get("Allow")).toBe("GET, DELETE");
    await expectError(onJob, 405);
    await expectError(await call("GET", `/job/${job_id}/retry`), 405);
  });

  it("lists in Allow only the methods of the path itself, not of a template it also fits", async () => {
    const response = await call("PATCH", "/job/retry");
    expect(response.headers.get("Allow")).toBe("POST");
    expect((await expectError(response, 405)).type).toBe("method_not_allowed");
  });

  it("echoes a sane X-Request-Id and makes one otherwise", async () => {
    const mine = await call("GET", "/health", { headers: { "X-Request-Id": "trace-123" } });
    expect(mine.headers.get("X-Request-Id")).toBe("trace-123");
    const insane = await call("GET", "/health", {
      headers: { "X-Request-Id": "bad id\twith spaces" },
    });
    expect(insane.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
    const error = await call("GET", `/job/${crypto.randomUUID()}`);
    expect(error.headers.get("X-Request-Id")).toBeTruthy();
  });

  it("reports health without a key", async () => {
    const response = await call("GET", "/health", { key: null });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: "ok", database: "ok" });
  });
});
