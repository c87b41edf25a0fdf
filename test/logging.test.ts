import { afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from "vitest";
import type { RequestLog } from "../src/middleware/logging";
import { claim, host, register, report } from "./agents-helpers";
import { call, createJob, createKey } from "./helpers";

let log: MockInstance<typeof console.log>;
beforeEach(() => {
  log = vi.spyOn(console, "log").mockImplementation(() => {});
});
afterEach(() => log.mockRestore());

function requestLines(): { raw: string; line: RequestLog }[] {
  return log.mock.calls
    .map(([first]) => String(first))
    .filter((raw) => raw.startsWith("{") && raw.includes('"request_id"'))
    .map((raw) => ({ raw, line: JSON.parse(raw) as RequestLog }));
}

async function logged(response: Response) {
  await response.arrayBuffer();
  const id = response.headers.get("X-Request-Id");
  const lines = requestLines().filter(({ line }) => line.request_id === id);
  expect(lines).toHaveLength(1);
  return lines[0] as { raw: string; line: RequestLog };
}

describe("the request log", () => {
  it("writes one JSON line per request: id, method, route pattern, status, duration, key, job, revision", async () => {
    const key = await createKey(["job:read", "job:write"]);
    const { job_id } = await createJob();
    const response = await call("POST", `/job/${job_id.toUpperCase()}/retry`, {
      key,
      headers: { "X-Request-Id": "retry-log-test-1" },
    });
    expect(response.status).toBe(201);
    const { job_id: newId, revision } = (await response.clone().json()) as {
      job_id: string;
      revision: number;
    };
    const { raw, line } = await logged(response);
    expect(line).toMatchObject({
      level: "info",
      request_id: "retry-log-test-1",
      method: "POST",
      route: "/job/{id}/retry",
      status: 201,
      key_prefix: key.slice(0, 17),
      job_id,
      new_job_id: newId,
      revision,
    });
    expect(line.key_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(line.duration_ms).toBeGreaterThanOrEqual(0);
    expect(raw).not.toContain(key.slice(18));
  });

  it("names the new job on create and the job on reads; no revision for reads", async () => {
    const created = await call("POST", "/job", { body: { operation: { type: "log.test" } } });
    const { job_id, revision } = (await created.clone().json()) as {
      job_id: string;
      revision: number;
    };
    expect((await logged(created)).line).toMatchObject({ route: "/job", job_id, revision });
    const read = (await logged(await call("GET", `/job/${job_id}`))).line;
    expect(read).toMatchObject({ route: "/job/{id}", status: 200, job_id });
    expect(read.revision).toBeUndefined();
  });

  it("names the job and revision of replays, bulk retries and agent reports", async () => {
    const { job_id } = await createJob();
    const send = () =>
      call("POST", `/job/${job_id}/retry`, { headers: { "Idempotency-Key": `log-${job_id}` } });
    const first = await send();
    const { job_id: newId, revision } = (await first.clone().json()) as {
      job_id: string;
      revision: number;
    };
    await logged(first);
    const replay = await send();
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect((await logged(replay)).line).toMatchObject({ job_id, new_job_id: newId, revision });

    const bulk = await call("POST", "/job/retry", { body: { job_ids: [job_id] } });
    const bulkBody = (await bulk.clone().json()) as { revision: number };
    expect((await logged(bulk)).line).toMatchObject({ status: 200, revision: bulkBody.revision });

    const hostname = host("log");
    await register(hostname);
    const target = await createJob(undefined, hostname);
    await claim(hostname, { limit: 100 });
    const reported = await report(hostname, target.job_id, { event: "started" });
    const result = (await reported.clone().json()) as { revision: number };
    expect((await logged(reported)).line).toMatchObject({
      route: "/agent/{hostname}/job/{id}/event",
      job_id: target.job_id,
      revision: result.revision,
    });
  });

  it("logs refused requests with the presented prefix only, and never the secret", async () => {
    const revoked = await createKey(["admin"], { revokedAt: new Date().toISOString() });
    const { raw, line } = await logged(await call("GET", "/keys", { key: revoked }));
    expect(line).toMatchObject({
      level: "warn",
      status: 401,
      route: "/keys",
      key_prefix: revoked.slice(0, 17),
    });
    expect(line.key_id).toBeUndefined();
    expect(raw).not.toContain(revoked.slice(18));

    const malformed = (await logged(await call("GET", "/job", { key: "hunter2-not-a-key" }))).raw;
    expect(malformed).not.toContain("hunter2");
  });

  it("redacts a key pasted into the path", async () => {
    const secret = await createKey(["admin"]);
    for (const path of [
      `/keys/${secret}`,
      `/nowhere/x${secret}y`,
      `/keys/${secret.slice(0, 30)}`,
    ]) {
      const response = await call("DELETE", path);
      expect(response.status).toBeGreaterThanOrEqual(400);
      const { raw, line } = await logged(response);
      expect(raw).not.toContain(secret.slice(18, 30));
      expect(line.path).toContain(`${secret.slice(0, 17)}_[redacted]`);
    }
  });

  it("never logs the secret of a key created through the API", async () => {
    const response = await call("POST", "/keys", {
      body: { name: "logged", scopes: ["job:read"] },
    });
    const { key } = (await response.clone().json()) as { key: string };
    const { raw, line } = await logged(response);
    expect(line).toMatchObject({ route: "/keys", status: 201 });
    expect(raw).not.toContain(key.slice(18));
    expect(log.mock.calls.flat().join("\n")).not.toContain(key.slice(18));
  });

  it("logs unknown paths with no route, and the public ones without a key", async () => {
    expect((await logged(await call("GET", "/nowhere"))).line).toMatchObject({
      status: 404,
      route: null,
      path: "/nowhere",
    });
    const health = (await logged(await call("GET", "/health", { key: null }))).line;
    expect(health).toMatchObject({ route: "/health", status: 200 });
    expect(health.key_prefix).toBeUndefined();
  });
});
