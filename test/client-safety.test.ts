import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { purgeIdempotencyKeys } from "../src/db/idempotency";
import worker from "../src/index";
import {
  BulkRetryResultSchema,
  JobAcceptedSchema,
  JobListSchema,
  JobSchema,
} from "../src/schemas/job";
import { admin, call, createJob, createKey, expectError, parse } from "./helpers";

async function revision(): Promise<number> {
  const row = await env.DB.prepare("SELECT revision FROM store_revision").first<{
    revision: number;
  }>();
  return row?.revision ?? -1;
}

async function jobCount(): Promise<number> {
  return (await env.DB.prepare("SELECT COUNT(*) AS n FROM jobs").first<{ n: number }>())?.n ?? -1;
}

const idem = (key: string) => ({ "Idempotency-Key": key });

describe("Idempotency-Key", () => {
  it("replays a retry: same status, body and job id, Idempotent-Replayed, nothing written", async () => {
    const { job_id } = await createJob();
    const key = crypto.randomUUID();
    const first = await call("POST", `/job/${job_id}/retry`, {
      headers: idem(key),
      body: { target_hostname: "_any" },
    });
    expect(first.status).toBe(201);
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();
    const firstBody = await first.text();
    const before = await revision();
    const count = await jobCount();

    const again = await call("POST", `/job/${job_id}/retry`, {
      headers: idem(key),
      body: { target_hostname: "_any" },
    });
    expect(again.status).toBe(201);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await again.text()).toBe(firstBody);
    const accepted = JobAcceptedSchema.parse(JSON.parse(firstBody));
    expect(again.headers.get("Location")).toBe(`/job/${accepted.job_id}`);
    expect(await revision()).toBe(before);
    expect(await jobCount()).toBe(count);
    const original = await parse(await call("GET", `/job/${job_id}`), JobSchema);
    expect(original.retried_as).toEqual([accepted.job_id]);
  });

  it("replays a create, with the key bare or as a quoted structured-field string", async () => {
    const key = `create-${crypto.randomUUID()}`;
    const body = { operation: { type: "idem.create", data: { a: 1, b: 2 } } };
    const first = await parse(
      await call("POST", "/job", { headers: idem(key), body }),
      JobAcceptedSchema,
    );
    const reordered = { operation: { data: { b: 2, a: 1 }, type: "idem.create" } };
    const quoted = await call("POST", "/job", { headers: idem(`"${key}"`), body: reordered });
    expect(quoted.headers.get("Idempotent-Replayed")).toBe("true");
    expect((await parse(quoted, JobAcceptedSchema)).job_id).toBe(first.job_id);
  });

  it("answers 422 and writes nothing when the key comes back with a different request", async () => {
    const { job_id } = await createJob();
    const key = crypto.randomUUID();
    expect((await call("POST", `/job/${job_id}/retry`, { headers: idem(key) })).status).toBe(201);
    const other = await createJob();
    const before = await revision();
    const changed = await call("POST", `/job/${job_id}/retry`, {
      headers: idem(key),
      body: { target_hostname: "_all" },
    });
    expect((await expectError(changed, 422)).error).toBe(
      "Idempotency-Key already used for a different request",
    );
    await expectError(
      await call("POST", `/job/${other.job_id}/retry`, { headers: idem(key) }),
      422,
    );
    expect(await revision()).toBe(before);
  });

  it("makes one job from 20 concurrent requests with one key", async () => {
    const key = crypto.randomUUID();
    const body = { operation: { type: "idem.concurrent" } };
    const count = await jobCount();
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => call("POST", "/job", { headers: idem(key), body })),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(201));
    const ids = new Set(
      await Promise.all(responses.map(async (r) => (await parse(r, JobAcceptedSchema)).job_id)),
    );
    expect(ids.size).toBe(1);
    expect(responses.filter((r) => r.headers.get("Idempotent-Replayed") === "true")).toHaveLength(
      19,
    );
    expect(await jobCount()).toBe(count + 1);
  });

  it("scopes a key to the API key that sent it", async () => {
    const key = crypto.randomUUID();
    const other = await createKey(["job:write"]);
    const body = { operation: { type: "idem.scope" } };
    const mine = await parse(
      await call("POST", "/job", { headers: idem(key), body }),
      JobAcceptedSchema,
    );
    const theirs = await parse(
      await call("POST", "/job", { key: other, headers: idem(key), body }),
      JobAcceptedSchema,
    );
    expect(theirs.job_id).not.toBe(mine.job_id);
  });

  it("replays for the key a rotation made, not only for the key that sent it first", async () => {
    const created = await call("POST", "/keys", { body: { name: "idem", scopes: ["job:write"] } });
    const old = (await created.json()) as { id: string; key: string };
    const key = crypto.randomUUID();
    const body = { operation: { type: "idem.rotation" } };
    const first = await parse(
      await call("POST", "/job", { key: old.key, headers: idem(key), body }),
      JobAcceptedSchema,
    );
    const rotated = await call("POST", `/keys/${old.id}/rotate`);
    const successor = ((await rotated.json()) as { key: string }).key;
    const count = await jobCount();
    const again = await call("POST", "/job", { key: successor, headers: idem(key), body });
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect((await parse(again, JobAcceptedSchema)).job_id).toBe(first.job_id);
    expect(await jobCount()).toBe(count);
  });

  it.each([
    [{}, { target_hostname: null }],
    [undefined, {}],
    [{ target_hostname: null }, { target_hostname: "_any" }],
  ])("takes retry bodies %j and %j for the same request", async (a, b) => {
    const { job_id } = await createJob();
    const key = crypto.randomUUID();
    const first = await call("POST", `/job/${job_id}/retry`, { headers: idem(key), body: a });
    expect(first.status).toBe(201);
    const second = await call("POST", `/job/${job_id}/retry`, { headers: idem(key), body: b });
    expect(second.status).toBe(201);
    expect(second.headers.get("Idempotent-Replayed")).toBe("true");
  });

  it.each(["", '""', "x".repeat(256), "tab\there", "é", '"unterminated'])(
    "answers 400 for the key %j",
    async (key) => {
      const before = await revision();
      const response = await call("POST", "/job", {
        headers: idem(key),
        body: { operation: { type: "x" } },
      });
      expect((await expectError(response, 400)).error).toBe("invalid Idempotency-Key header");
      expect(await revision()).toBe(before);
    },
  );

  it("purges only expired keys", async () => {
    const now = new Date();
    const past = new Date(now.getTime() - 1000).toISOString();
    const future = new Date(now.getTime() + 3_600_000).toISOString();
    const owner = crypto.randomUUID();
    for (const [key, expires] of [
      ["old", past],
      ["new", future],
    ]) {
      await env.DB.prepare(
        "INSERT INTO idempotency_keys (api_key_id, route, key, fingerprint, status, body, created_at, expires_at) VALUES (?1, 'POST /job', ?2, 'f', 201, '{}', ?3, ?4)",
      )
        .bind(owner, key, past, expires)
        .run();
    }
    expect(await purgeIdempotencyKeys(env.DB, now.toISOString())).toBeGreaterThanOrEqual(1);
    const left = await env.DB.prepare("SELECT key FROM idempotency_keys WHERE api_key_id = ?1")
      .bind(owner)
      .all();
    expect(left.results.map((r) => r.key)).toEqual(["new"]);
  });
});

describe("ETag and preconditions", () => {
  it("sends a strong ETag from the revision and answers If-None-Match with 304", async () => {
    const { job_id, revision: rev } = await createJob();
    const response = await call("GET", `/job/${job_id}`);
    expect(response.headers.get("ETag")).toBe(`"r${rev}"`);
    const cached = await call("GET", `/job/${job_id}`, {
      headers: { "If-None-Match": `"r${rev}"` },
    });
    expect(cached.status).toBe(304);
    expect(await cached.text()).toBe("");
    await call("POST", `/job/${job_id}/retry`);
    const changed = await call("GET", `/job/${job_id}`, {
      headers: { "If-None-Match": `"r${rev}"` },
    });
    expect(changed.status).toBe(200);
    expect(changed.headers.get("ETag")).not.toBe(`"r${rev}"`);
  });

  it("gives two operators retrying with the same If-Match one 201 and one 412", async () => {
    const { job_id, revision: rev } = await createJob();
    const headers = { "If-Match": `"r${rev}"` };
    const [a, b] = await Promise.all([
      call("POST", `/job/${job_id}/retry`, { headers }),
      call("POST", `/job/${job_id}/retry`, { headers }),
    ]);
    expect([a?.status, b?.status].sort()).toEqual([201, 412]);
    const original = await parse(await call("GET", `/job/${job_id}`), JobSchema);
    expect(original.retried_as).toHaveLength(1);
  });

  it("refuses a stale If-Match on retry and delete with 412 and writes nothing", async () => {
    const { job_id, revision: rev } = await createJob();
    await call("POST", `/job/${job_id}/retry`);
    const before = await revision();
    const stale = { "If-Match": `"r${rev}"` };
    const retry = await call("POST", `/job/${job_id}/retry`, { headers: stale });
    expect(retry.headers.get("ETag")).toBe(`"r${before}"`);
    await expectError(retry, 412);
    await expectError(await call("DELETE", `/job/${job_id}`, { headers: stale }), 412);
    await expectError(
      await call("DELETE", `/job/${job_id}`, { headers: { "If-Match": `W/"r${before}"` } }),
      412,
    );
    expect(await revision()).toBe(before);
    const current = { "If-Match": `"r${before}"` };
    expect((await call("DELETE", `/job/${job_id}`, { headers: current })).status).toBe(204);
    await expectError(await call("DELETE", `/job/${job_id}`, { headers: current }), 404);
  });
});

describe("entity tags compared as strings", () => {
  it("does not take a tag with a leading zero for the revision it spells", async () => {
    const { job_id, revision: rev } = await createJob();
    const padded = { "If-Match": `"r0${rev}"` };
    const before = await revision();
    expect(
      (await expectError(await call("POST", `/job/${job_id}/retry`, { headers: padded }), 412))
        .type,
    ).toBe("precondition_failed");
    await expectError(await call("DELETE", `/job/${job_id}`, { headers: padded }), 412);
    expect(await revision()).toBe(before);
  });

  it("answers If-None-Match: * on retry and delete of an existing job with 412, writing nothing", async () => {
    const { job_id, revision: rev } = await createJob();
    const before = await revision();
    const star = { "If-None-Match": "*" };
    const retry = await call("POST", `/job/${job_id}/retry`, { headers: star });
    expect(retry.headers.get("ETag")).toBe(`"r${rev}"`);
    await expectError(retry, 412);
    await expectError(await call("DELETE", `/job/${job_id}`, { headers: star }), 412);
    await expectError(
      await call("DELETE", `/job/${job_id}`, { headers: { "If-None-Match": `"r${rev}"` } }),
      412,
    );
    expect(await revision()).toBe(before);
    await expectError(await call("DELETE", `/job/${crypto.randomUUID()}`, { headers: star }), 404);
    expect(
      (await call("DELETE", `/job/${job_id}`, { headers: { "If-None-Match": '"r1"' } })).status,
    ).toBe(204);
  });
});

describe("D1 bookmarks", () => {
  it("returns a bookmark on reads and writes and accepts it back", async () => {
    const created = await call("POST", "/job", { body: { operation: { type: "bookmark" } } });
    const bookmark = created.headers.get("x-d1-bookmark");
    expect(bookmark).toBeTruthy();
    const { job_id } = await parse(created, JobAcceptedSchema);
    const read = await call("GET", `/job/${job_id}`, {
      headers: { "x-d1-bookmark": bookmark ?? "" },
    });
    expect(read.status).toBe(200);
    expect(read.headers.get("x-d1-bookmark")).toBeTruthy();
    expect((await call("GET", "/job")).headers.get("x-d1-bookmark")).toBeTruthy();
    expect((await call("GET", "/health", { key: null })).headers.get("x-d1-bookmark")).toBeTruthy();
  });

  it("answers 400 for a malformed bookmark", async () => {
    await expectError(
      await call("GET", "/job", { headers: { "x-d1-bookmark": "not a bookmark!" } }),
      400,
    );
  });
});

describe("rate limits", () => {
  it("answers 429 with Retry-After once a key's write budget is spent", async () => {
    const key = await createKey(["job:write"]);
    const tight = { ...env, WRITE_LIMITER: env.TEST_TIGHT_LIMITER };
    const statuses: number[] = [];
    let limited: Response | undefined;
    for (let i = 0; i < 6 && !limited; i++) {
      const ctx = createExecutionContext();
      const response = await worker.fetch(
        new Request("http://jobs.test/job", {
          method: "POST",
          headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
          body: JSON.stringify({ operation: { type: "limited" } }),
        }),
        tight,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      statuses.push(response.status);
      if (response.status === 429) limited = response;
    }
    // The limit is 3 a minute; a request landing on a minute boundary may start a fresh window.
    expect(statuses.slice(0, 3)).toEqual([201, 201, 201]);
    expect(statuses.at(-1)).toBe(429);
    expect(Number(limited?.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    if (limited) expect((await expectError(limited, 429)).error).toBe("rate limit exceeded");
  });
});

describe("the write cost of a bulk retry", () => {
  async function bulk(key: string, body: unknown) {
    const ctx = createExecutionContext();
    const response = await worker.fetch(
      new Request("http://jobs.test/job/retry", {
        method: "POST",
        headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      }),
      { ...env, WRITE_LIMITER: env.TEST_TIGHT_LIMITER },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    return response;
  }

  it("counts every job it may write against the key's write limit, and writes nothing past it", async () => {
    const key = await createKey(["job:read", "job:write"]);
    const ids = await Promise.all(
      Array.from({ length: 4 }, async () => (await createJob()).job_id),
    );
    const before = await revision();
    const refused = await bulk(key, { job_ids: ids });
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect((await expectError(refused, 429)).type).toBe("rate_limited");
    expect(await revision()).toBe(before);
    const other = await createKey(["job:read", "job:write"]);
    await expectError(await bulk(other, { status: "failed" }), 429);
    expect(await revision()).toBe(before);
  });
});

describe("POST /job/retry", () => {
  it("retries 100 jobs in one batch and one revision, reporting a missing id per item", async () => {
    const made = [];
    for (let i = 0; i < 99; i++) made.push((await createJob({ type: "bulk", i })).job_id);
    const missing = crypto.randomUUID();
    const ids = [...made.slice(0, 50), missing, ...made.slice(50)];
    const before = await revision();
    const response = await call("POST", "/job/retry", {
      body: { job_ids: ids, target_hostname: "_all" },
    });
    expect(response.status).toBe(200);
    const body = await parse(response, BulkRetryResultSchema);
    expect(body.revision).toBe(before + 1);
    expect(body.dry_run).toBe(false);
    expect(body.results.map((r) => r.source_job_id)).toEqual(ids);
    expect(body.results[50]).toEqual({
      source_job_id: missing,
      job_id: null,
      outcome: "not_found",
      error: "job not found",
    });
    const retried = body.results.filter((r) => r.outcome === "retried");
    expect(retried).toHaveLength(99);
    const sample = retried[7];
    const job = await parse(await call("GET", `/job/${sample?.job_id}`), JobSchema);
    expect(job).toMatchObject({
      retry_of: sample?.source_job_id,
      target_hostname: "_all",
      revision: before + 1,
      attempt: 2,
    });
    expect(job.operation).toEqual({ type: "bulk", i: 7 });
    const source = await parse(await call("GET", `/job/${sample?.source_job_id}`), JobSchema);
    expect(source.retried_as).toEqual([sample?.job_id]);
    expect(source.revision).toBe(before + 1);
  });

  it("retries the oldest jobs in a status, up to the limit", async () => {
    await createJob();
    const response = await call("POST", "/job/retry", {
      body: { status: "unprocessed", limit: 3 },
    });
    const body = await parse(response, BulkRetryResultSchema);
    expect(body.results).toHaveLength(3);
    expect(body.results.every((r) => r.outcome === "retried" && r.job_id)).toBe(true);
  });

  it("writes nothing on a dry run and says what would happen", async () => {
    const { job_id } = await createJob();
    const missing = crypto.randomUUID();
    const before = await revision();
    const response = await call("POST", "/job/retry", {
      body: { job_ids: [job_id, missing], dry_run: true },
    });
    expect(await parse(response, BulkRetryResultSchema)).toEqual({
      revision: null,
      dry_run: true,
      results: [
        { source_job_id: job_id, job_id: null, outcome: "would_retry", error: null },
        { source_job_id: missing, job_id: null, outcome: "not_found", error: "job not found" },
      ],
    });
    expect(await revision()).toBe(before);
  });

  it("refuses a dry run to a key without job:read: it would list job ids", async () => {
    const writer = await createKey(["job:write"]);
    await createJob({ type: "dry" });
    const response = await call("POST", "/job/retry", {
      key: writer,
      body: { status: "unprocessed", dry_run: true },
    });
    expect(await expectError(response, 403)).toMatchObject({
      type: "insufficient_scope",
      details: "requires job:read",
    });
  });

  it("writes nothing and takes no revision when no job exists", async () => {
    const before = await revision();
    const body = await parse(
      await call("POST", "/job/retry", { body: { job_ids: [crypto.randomUUID()] } }),
      BulkRetryResultSchema,
    );
    expect(body.revision).toBeNull();
    expect(await revision()).toBe(before);
  });

  it("replays with an Idempotency-Key", async () => {
    const { job_id } = await createJob();
    const key = crypto.randomUUID();
    const first = await call("POST", "/job/retry", {
      headers: idem(key),
      body: { job_ids: [job_id] },
    });
    const text = await first.text();
    const again = await call("POST", "/job/retry", {
      headers: idem(key),
      body: { job_ids: [job_id] },
    });
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await again.text()).toBe(text);
  });

  it.each([
    ["neither ids nor status", {}],
    ["both ids and status", { job_ids: [crypto.randomUUID()], status: "failed" }],
    ["101 ids", { job_ids: Array.from({ length: 101 }, () => crypto.randomUUID()) }],
    [
      "a repeated id",
      { job_ids: ["5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10", "5B0E2A52-7A4B-4C1E-9D07-4A3B1F7C2E10"] },
    ],
    ["a bad id", { job_ids: ["nope"] }],
    ["limit without status", { job_ids: [crypto.randomUUID()], limit: 2 }],
    ["an unknown status", { status: "done" }],
  ])("answers 400 for %s", async (_, body) => {
    await expectError(await call("POST", "/job/retry", { body }), 400);
  });
});

describe("lineage", () => {
  it("lists a chain by retry_of and root_job_id, each with its own total", async () => {
    const root = await createJob({ type: "chain" });
    const a = await parse(await call("POST", `/job/${root.job_id}/retry`), JobAcceptedSchema);
    const b = await parse(await call("POST", `/job/${root.job_id}/retry`), JobAcceptedSchema);
    const c = await parse(await call("POST", `/job/${a.job_id}/retry`), JobAcceptedSchema);
    const children = await parse(
      await call("GET", `/job?retry_of=${root.job_id.toUpperCase()}`),
      JobListSchema,
    );
    expect(children.items.map((j) => j.id)).toEqual([b.job_id, a.job_id]);
    expect(children.total_items).toBe(2);
    const chain = await parse(
      await call("GET", `/job?root_job_id=${root.job_id}&limit=2`),
      JobListSchema,
    );
    expect(chain.items.map((j) => j.id)).toEqual([c.job_id, b.job_id]);
    expect(chain.total_items).toBe(4);
    const none = await parse(
      await call("GET", `/job?root_job_id=${root.job_id}&status=failed`),
      JobListSchema,
    );
    expect(none.total_items).toBe(0);
    const detail = await parse(await call("GET", `/job/${root.job_id}`), JobSchema);
    expect(detail.retried_as).toEqual([a.job_id, b.job_id]);
    await expectError(await call("GET", "/job?retry_of=abc"), 400);
  });
});

describe("CORS", () => {
  it("answers a preflight from a configured origin without a key, and ignores others", async () => {
    const allowed = await call("OPTIONS", "/job", {
      key: null,
      headers: { Origin: "http://localhost:8787", "Access-Control-Request-Method": "POST" },
    });
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get("Access-Control-Allow-Origin")).toBe("http://localhost:8787");
    expect(allowed.headers.get("Access-Control-Allow-Headers")).toContain("Idempotency-Key");
    const get = await call("GET", "/job", { headers: { Origin: "http://localhost:8787" } });
    expect(get.headers.get("Access-Control-Expose-Headers")).toContain("x-d1-bookmark");
    const other = await call("GET", "/job", { headers: { Origin: "https://evil.example" } });
    expect(other.headers.get("Access-Control-Allow-Origin")).toBeNull();
    const plain = await call("GET", "/job");
    expect(plain.headers.get("Access-Control-Allow-Origin")).toBeNull();
    expect(plain.headers.get("Vary")).toContain("Origin");
    const refused = await call("GET", "/job", { key: null });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("Vary")).toContain("Origin");
    expect(await admin()).toBeTruthy();
  });
});
