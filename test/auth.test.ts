import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { call, createJob, createKey, expectError } from "./helpers";

describe("API keys", () => {
  it("accepts a key as a bearer token and in X-API-Key", async () => {
    const key = await createKey(["job:read"]);
    expect((await call("GET", "/job", { key })).status).toBe(200);
    const viaHeader = await call("GET", "/job", { key: null, headers: { "X-API-Key": key } });
    expect(viaHeader.status).toBe(200);
  });

  it("answers 401 'API key required' with a Bearer challenge when there is no key", async () => {
    const response = await call("GET", "/job", { key: null });
    expect(response.headers.get("WWW-Authenticate")).toBe('Bearer realm="jobs"');
    expect(await expectError(response, 401)).toEqual({
      type: "unauthenticated",
      error: "API key required",
      code: 401,
    });
  });

  it("answers 401 invalid_token for unknown, malformed, wrong-secret, revoked and expired keys", async () => {
    const real = await createKey(["admin"]);
    const keys = [
      `jobs_aaaaaaaaaaaa_${"A".repeat(43)}`,
      "not-a-key",
      `${real.slice(0, -1)}${real.endsWith("A") ? "B" : "A"}`,
      await createKey(["admin"], { revokedAt: new Date().toISOString() }),
      await createKey(["admin"], { expiresAt: new Date(Date.now() - 1000).toISOString() }),
    ];
    for (const key of keys) {
      const response = await call("GET", "/job", { key });
      expect(response.headers.get("WWW-Authenticate")).toContain('error="invalid_token"');
      expect((await expectError(response, 401)).error).toBe("invalid API key");
    }
    expect((await call("GET", "/job", { key: real })).status).toBe(200);
  });

  it("accepts a key until it expires", async () => {
    const key = await createKey(["job:read"], {
      expiresAt: new Date(Date.now() + 60_000).toISOString(),
    });
    expect((await call("GET", "/job", { key })).status).toBe(200);
  });

  it("answers 401 before any other check: bad ids, bodies, methods and paths", async () => {
    await expectError(await call("GET", "/job/not-a-uuid", { key: null }), 401);
    await expectError(
      await call("POST", "/job", {
        key: null,
        rawBody: "{",
        headers: { "Content-Type": "application/json" },
      }),
      401,
    );
    await expectError(await call("PUT", "/job", { key: null }), 401);
    await expectError(await call("GET", "/nowhere", { key: null }), 401);
  });

  it("answers 403 with the missing scope for keys without it", async () => {
    const reader = await createKey(["job:read"]);
    const writer = await createKey(["job:write"]);
    const agent = await createKey(["agent:read", "agent:write"]);
    const { job_id } = await createJob();
    const cases: [string, string, string, string][] = [
      [reader, "POST", "/job", "job:write"],
      [reader, "DELETE", `/job/${job_id}`, "job:write"],
      [reader, "POST", `/job/${job_id}/retry`, "job:write"],
      [writer, "GET", "/job", "job:read"],
      [writer, "GET", `/job/${job_id}`, "job:read"],
      [agent, "GET", "/job", "job:read"],
    ];
    for (const [key, method, path, scope] of cases) {
      const response = await call(method, path, {
        key,
        body: method === "POST" ? { operation: { type: "x" } } : undefined,
      });
      expect(response.headers.get("WWW-Authenticate")).toContain('error="insufficient_scope"');
      expect(await expectError(response, 403)).toEqual({
        type: "insufficient_scope",
        error: "Insufficient permissions",
        details: `requires ${scope}`,
        code: 403,
      });
    }
  });

  it("lets admin do everything", async () => {
    const key = await createKey(["admin"]);
    const { job_id } = await createJob();
    expect((await call("GET", `/job/${job_id}`, { key })).status).toBe(200);
    expect((await call("POST", `/job/${job_id}/retry`, { key })).status).toBe(201);
    expect((await call("DELETE", `/job/${job_id}`, { key })).status).toBe(204);
  });

  it("serves the health check, the document and the docs page without a key", async () => {
    for (const path of ["/health", "/openapi.json", "/docs"]) {
      expect((await call("GET", path, { key: null })).status).toBe(200);
    }
  });
});

describe("malformed credentials", () => {
  it.each([["Bearer a b"], ["Token x"], ["Basic dXNlcjpwYXNz"], ["Bearer"], ["Bearer "]])(
    "answers 400 invalid_request for Authorization: %j",
    async (authorization) => {
      const response = await call("GET", "/job", {
        key: null,
        headers: { Authorization: authorization },
      });
      expect(response.headers.get("WWW-Authenticate")).toContain('error="invalid_request"');
      expect((await expectError(response, 400)).type).toBe("invalid_authorization");
    },
  );

  it("answers 400 for a key in both Authorization and X-API-Key", async () => {
    const key = await createKey(["job:read"]);
    const response = await call("GET", "/job", { key, headers: { "X-API-Key": key } });
    expect((await expectError(response, 400)).details).toContain("not both");
  });
});

describe("Cache-Control", () => {
  it("is no-store on every authenticated answer, the new key's above all", async () => {
    const created = await call("POST", "/keys", { body: { name: "c", scopes: ["job:read"] } });
    expect(created.status).toBe(201);
    expect(created.headers.get("Cache-Control")).toBe("no-store");
    const { job_id } = await createJob();
    for (const path of [
      "/job",
      `/job/${job_id}`,
      "/keys",
      "/agent",
      `/job/${crypto.randomUUID()}`,
    ]) {
      expect((await call("GET", path)).headers.get("Cache-Control"), path).toBe("no-store");
    }
    const unauthenticated = await call("GET", "/job", { key: null });
    expect(unauthenticated.headers.get("Cache-Control")).toBe("no-store");
  });
});

describe("failed authentications", () => {
  async function send(key: string, address: string, limit = "3") {
    const ctx = createExecutionContext();
    const response = await worker.fetch(
      new Request("http://jobs.test/job", {
        headers: { Authorization: `Bearer ${key}`, "CF-Connecting-IP": address },
      }),
      { ...env, AUTH_FAILURES_PER_MINUTE: limit } as Env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    return response;
  }

  const unknownKey = () =>
    `jobs_${"z".repeat(12)}_${crypto.randomUUID().replaceAll("-", "")}${"A".repeat(11)}`;

  it("limits each address to AUTH_FAILURES_PER_MINUTE, then answers 429 with Retry-After", async () => {
    const address = `198.51.100.${Math.floor(Math.random() * 250)}`;
    for (let i = 0; i < 3; i++) await expectError(await send(unknownKey(), address), 401);
    const limited = await send(unknownKey(), address);
    expect(Number(limited.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect((await expectError(limited, 429)).type).toBe("too_many_failed_authentications");
    const valid = await createKey(["job:read"]);
    expect((await send(valid, "203.0.113.9")).status).toBe(200);
  });

  it("remembers a failed key for a while instead of looking it up again", async () => {
    const key = await createKey(["job:read"], { revokedAt: new Date().toISOString() });
    await expectError(await send(key, "192.0.2.10", "0"), 401);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = NULL WHERE prefix = ?1")
      .bind(key.slice(0, 17))
      .run();
    await expectError(await send(key, "192.0.2.10", "0"), 401);
  });
});
