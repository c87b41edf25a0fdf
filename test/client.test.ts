import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createClient } from "../src/client";
import { JobAcceptedSchema, JobListSchema, JobSchema } from "../src/schemas/job";
import { CreatedKeySchema } from "../src/schemas/key";
import { admin, createKey } from "./helpers";

const workerFetch: typeof fetch = (input, init) =>
  exports.default.fetch(new Request(input as RequestInfo, init));

async function client(key?: string) {
  return createClient("http://jobs.test", key ?? (await admin()), { fetch: workerFetch });
}

describe("the typed client (hc with AppType) against the Worker", () => {
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

    const list = await api.job.$get({ query: { status: "unprocessed", limit: "100" } });
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
    expect((await reader.job.$get({ query: {} })).status).toBe(401);
  });

  it("sends the key it was made with", async () => {
    const api = await client(await createKey(["job:read"]));
    expect((await api.job.$get({ query: {} })).status).toBe(200);
    expect((await api.job.$post({ header: {}, json: { operation: { type: "x" } } })).status).toBe(
      403,
    );
  });
});
