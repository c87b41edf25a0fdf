import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createClient, watchJob } from "../src/client";
import {
  BulkCancelResultSchema,
  JobAcceptedSchema,
  JobListSchema,
  JobSchema,
} from "../src/schemas/job";
import { CreatedKeySchema } from "../src/schemas/key";
import { admin, createKey } from "./helpers";

const workerFetch: typeof fetch = (input, init) =>
  exports.default.fetch(new Request(input as RequestInfo, init));

async function client(key?: string) {
  return createClient("http://jobs.test", key ?? (await admin()), { fetch: workerFetch });
}

describe("the typed client's watchJob", () => {
  it("yields a job's events as they happen and returns how it ended, resuming a dropped stream", async () => {
    const key = await admin();
    const agent = `client-${crypto.randomUUID().slice(0, 8)}`;
    expect(
      (
        await workerFetch(`http://jobs.test/agent/${agent}`, {
          method: "PUT",
          headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
          body: "{}",
        })
      ).status,
    ).toBe(200);
    const api = await client();
    const created = await api.job.$post({
      header: {},
      json: { operation: { type: "client.watch" }, target_hostname: agent },
    });
    const { job_id } = JobAcceptedSchema.parse(await created.json());
    let opened = 0;
    // The first stream is cut after its first chunk, as a flaky network would.
    const flaky: typeof fetch = async (input, init) => {
      const response = await workerFetch(input, init);
      if (opened++ > 0 || !response.body) return response;
      const reader = response.body.getReader();
      const first = await reader.read();
      await reader.cancel();
      return new Response(first.value, { status: response.status, headers: response.headers });
    };
    const events = watchJob("http://jobs.test", key, job_id, { fetch: flaky });
    const seen: string[] = [];
    const first = await events.next();
    if (!first.done) seen.push(first.value.event);
    const claimed = await workerFetch(`http://jobs.test/agent/${agent}/claim`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: "{}",
    });
    const [job] = ((await claimed.json()) as { jobs: { lease_token: string }[] }).jobs;
    await workerFetch(`http://jobs.test/agent/${agent}/job/${job_id}/event`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ event: "completed", lease_token: job?.lease_token }),
    });
    let next = await events.next();
    while (!next.done) {
      seen.push(next.value.event);
      next = await events.next();
    }
    expect(seen).toEqual(["submitted", "acknowledged", "completed"]);
    expect(next.value).toEqual({ job_id, status: "completed" });
    expect(opened).toBe(2);
  });
});

describe("watchJob's reading of Server-Sent Events", () => {
  it("takes CRLF line ends, also when a chunk ends between the CR and the LF", async () => {
    const event = { id: "7", job_id: "j", event: "submitted", hostname: "", timestamp: "t" };
    const text = `id: 7\r\nevent: job\r\ndata: ${JSON.stringify(event)}\r\n\r\nevent: end\r\ndata: {"job_id":"j","status":"completed"}\r\n\r\n`;
    // Cut after every CR: a CR at a chunk's end must not count as a line end of its own.
    const parts = text.split(/(?<=\r)/);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const part of parts) controller.enqueue(new TextEncoder().encode(part));
        controller.close();
      },
    });
    const fetchOnce: typeof fetch = async () =>
      new Response(body, { headers: { "Content-Type": "text/event-stream" } });
    const events = watchJob("http://jobs.test", "key", "j", { fetch: fetchOnce });
    const first = await events.next();
    expect(first).toEqual({ done: false, value: event });
    expect(await events.next()).toEqual({
      done: true,
      value: { job_id: "j", status: "completed" },
    });
  });
});

describe("the typed client (hc with AppType) against the Worker", () => {
  it("covers retry policies, delays, changed operations and cancel", async () => {
    const api = await client();
    const created = await api.job.$post({
      header: {},
      json: {
        operation: { type: "client.policy", data: { n: 1 } },
        retry_policy: { max_attempts: 2, backoff: "fixed" },
        delay_seconds: 600,
      },
    });
    expect(created.status).toBe(201);
    const { job_id } = JobAcceptedSchema.parse(await created.json());
    const waiting = await api.job.$get({ query: { due: "false", limit: "100" }, header: {} });
    expect(JobListSchema.parse(await waiting.json()).items.map((j) => j.id)).toContain(job_id);

    const retried = await api.job[":id"].retry.$post({
      param: { id: job_id },
      header: {},
      json: { operation_patch: { data: { n: 2 } }, reset_attempts: true },
    });
    expect(retried.status).toBe(201);
    const retry = JobAcceptedSchema.parse(await retried.json());
    const got = await api.job[":id"].$get({ param: { id: retry.job_id }, header: {} });
    const job = JobSchema.parse(await got.json());
    expect(job).toMatchObject({
      operation: { data: { n: 2 } },
      operation_changed: true,
      attempt: 1,
    });
    expect(job.retry_policy?.max_attempts).toBe(2);

    const cancelled = await api.job[":id"].cancel.$post({ param: { id: job_id }, header: {} });
    expect(cancelled.status).toBe(200);
    const bulk = await api.job.cancel.$post({ json: { job_ids: [retry.job_id], dry_run: true } });
    expect(BulkCancelResultSchema.parse(await bulk.json()).results[0]?.outcome).toBe(
      "would_cancel",
    );
  });

  it("creates, gets, lists, retries and deletes a job", async () => {
    const api = await client();
    const created = await api.job.$post({
      header: {},
      json: { operation: { type: "node.hostname.get" } },
    });
    expect(created.status).toBe(201);
    const accepted = JobAcceptedSchema.parse(await created.json());

    const got = await api.job[":id"].$get({ param: { id: accepted.job_id }, header: {} });
    expect(got.status).toBe(200);
    if (got.status !== 200) return;
    const job = JobSchema.parse(await got.json());
    expect(job.operation.type).toBe("node.hostname.get");

    const retried = await api.job[":id"].retry.$post({
      param: { id: accepted.job_id },
      header: {},
      json: { target_hostname: "_any" },
    });
    expect(retried.status).toBe(201);
    const retry = JobAcceptedSchema.parse(await retried.json());

    const list = await api.job.$get({ query: { status: "unprocessed", limit: "100" }, header: {} });
    const page = JobListSchema.parse(await list.json());
    expect(page.items.map((item) => item.id)).toContain(retry.job_id);

    expect((await api.job[":id"].$delete({ param: { id: retry.job_id }, header: {} })).status).toBe(
      204,
    );
    expect((await api.job[":id"].$get({ param: { id: retry.job_id }, header: {} })).status).toBe(
      404,
    );
  });

  it("manages keys, and the error responses are typed too", async () => {
    const api = await client();
    const created = await api.keys.$post({ json: { name: "from-client", scopes: ["job:read"] } });
    expect(created.status).toBe(201);
    if (created.status !== 201) return;
    const key = CreatedKeySchema.parse(await created.json());

    const reader = await client(key.key);
    const refused = await reader.keys.$get({ query: {} });
    expect(refused.status).toBe(403);
    if (refused.status === 403) {
      expect(await refused.json()).toEqual({
        type: "insufficient_scope",
        error: "Insufficient permissions",
        details: "requires admin",
        code: 403,
      });
    }
    expect((await api.keys[":id"].$delete({ param: { id: key.id } })).status).toBe(204);
    expect((await reader.job.$get({ query: {}, header: {} })).status).toBe(401);
  });

  it("sends the key it was made with", async () => {
    const api = await client(await createKey(["job:read"]));
    expect((await api.job.$get({ query: {}, header: {} })).status).toBe(200);
    expect((await api.job.$post({ header: {}, json: { operation: { type: "x" } } })).status).toBe(
      403,
    );
  });
});
