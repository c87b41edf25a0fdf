import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import worker, { app } from "../src/index";
import { ClaimResultSchema } from "../src/schemas/agent";
import { JobListSchema, JobSchema } from "../src/schemas/job";
import { call, createKey, expectError } from "./helpers";

type Parameter = {
  name: string;
  in: string;
  example?: unknown;
  schema?: { pattern?: string; example?: unknown };
};
type Operation = {
  operationId?: string;
  description?: string;
  "x-required-scopes"?: string[];
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: { $ref?: string; example?: unknown } }> };
  responses: Record<string, unknown>;
};
type Document = {
  openapi: string;
  info: { license?: { name: string; identifier?: string } };
  servers?: { url: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: {
    schemas: Record<string, { example?: unknown }>;
    securitySchemes: Record<string, unknown>;
  };
};

const PUBLIC = new Set(["GET /health", "GET /openapi.json", "GET /docs"]);

async function document(): Promise<Document> {
  const response = await call("GET", "/openapi.json", { key: null });
  expect(response.status).toBe(200);
  return response.json();
}

function operations(doc: Document) {
  return Object.entries(doc.paths).flatMap(([path, byMethod]) =>
    Object.entries(byMethod).map(([method, operation]) => ({
      method: method.toUpperCase(),
      path,
      operation,
    })),
  );
}

const exampleOf = (parameter: Parameter) => parameter.example ?? parameter.schema?.example;

function placeholder(parameter: Parameter): string {
  const example = exampleOf(parameter);
  if (typeof example === "string") return example;
  return parameter.name === "id" ? crypto.randomUUID() : "web-01";
}

function concretePath(path: string, operation: Operation): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const parameter = operation.parameters?.find((p) => p.in === "path" && p.name === name);
    return encodeURIComponent(parameter ? placeholder(parameter) : "x");
  });
}

/** What "Try it out" sends: every parameter and body example the document gives, ids aside. */
async function tryItOut(
  doc: Document,
  method: string,
  path: string,
  ids: Record<string, string> = {},
): Promise<Response> {
  const operation = doc.paths[path]?.[method.toLowerCase()];
  if (!operation) throw new Error(`${method} ${path} is not documented`);
  const query = new URLSearchParams();
  const headers: Record<string, string> = {};
  for (const parameter of operation.parameters ?? []) {
    const example = exampleOf(parameter);
    if (example === undefined) continue;
    if (parameter.in === "query") query.set(parameter.name, String(example));
    if (parameter.in === "header") headers[parameter.name] = String(example);
  }
  const url = path.replace(/\{(\w+)\}/g, (_, name: string) => ids[name] ?? name);
  const response = await call(method, `${url}${query.size > 0 ? `?${query}` : ""}`, {
    headers,
    body: bodyExample(doc, operation),
  });
  expect(response.status, `${method} ${path}`).toBeLessThan(300);
  return response;
}

const bodyFor = (method: string) => (method === "GET" || method === "HEAD" ? undefined : {});

function bodyExample(doc: Document, operation: Operation): unknown {
  const media = operation.requestBody?.content["application/json"];
  if (!media) return undefined;
  if (media.schema.example !== undefined) return media.schema.example;
  const name = media.schema.$ref?.split("/").at(-1);
  return name ? doc.components.schemas[name]?.example : undefined;
}

describe("the OpenAPI document", () => {
  it("is OpenAPI 3.1 with both security schemes", async () => {
    const doc = await document();
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual([
      "apiKeyHeader",
      "bearerAuth",
    ]);
  });

  it("documents every route of the app, and nothing that is not one", async () => {
    const doc = await document();
    const routed = new Set(
      app.routes
        .filter((route) => route.method !== "ALL")
        .map((route) => `${route.method} ${route.path.replace(/:(\w+)/g, "{$1}")}`)
        .filter((route) => !PUBLIC.has(route) || route === "GET /health"),
    );
    const documented = new Set(operations(doc).map(({ method, path }) => `${method} ${path}`));
    expect([...documented].sort()).toEqual([...routed].sort());
  });

  it("gives every operation an operationId, a summary, a tag and its error responses", async () => {
    const doc = await document();
    const ids = new Set<string>();
    for (const { method, path, operation } of operations(doc)) {
      const name = `${method} ${path}`;
      expect(operation.operationId, name).toBeTruthy();
      ids.add(operation.operationId ?? "");
      if (PUBLIC.has(name)) continue;
      expect(Object.keys(operation.responses), name).toContain("500");
      expect(operation.security, name).toEqual([{ bearerAuth: [] }, { apiKeyHeader: [] }]);
      expect(Object.keys(operation.responses), name).toContain("401");
      const scoped = (operation["x-required-scopes"] ?? []).length > 0;
      expect(Object.keys(operation.responses).includes("403"), name).toBe(scoped);
    }
    expect(ids.size).toBe(operations(doc).length);
  });

  it("has parameter patterns that are JSON Schema regexes matching their own examples", async () => {
    const doc = await document();
    for (const { method, path, operation } of operations(doc)) {
      for (const parameter of operation.parameters ?? []) {
        const pattern = parameter.schema?.pattern;
        const example = exampleOf(parameter);
        if (pattern === undefined || typeof example !== "string") continue;
        expect(new RegExp(pattern, "u").test(example), `${method} ${path} ${pattern}`).toBe(true);
      }
    }
  });
});

type Responses = Record<
  string,
  { headers?: Record<string, { $ref?: string }>; content?: Record<string, unknown> }
>;

describe("what the document says", () => {
  it("gives every answer its headers: Retry-After, WWW-Authenticate, ETag, Allow, X-Request-Id, x-d1-bookmark", async () => {
    const doc = await document();
    const expected: Record<string, string[]> = {
      "304": ["ETag"],
      "401": ["WWW-Authenticate"],
      "403": ["WWW-Authenticate"],
      "405": ["Allow"],
      "412": ["ETag"],
      "429": ["Retry-After"],
      "503": ["Retry-After"],
    };
    for (const { method, path, operation } of operations(doc)) {
      const name = `${method} ${path}`;
      const responses = operation.responses as Responses;
      expect(Object.keys(responses), name).toContain("405");
      if (operation.security?.length) expect(Object.keys(responses), name).toContain("429");
      for (const [status, response] of Object.entries(responses)) {
        const headers = Object.keys(response.headers ?? {});
        for (const header of [...(expected[status] ?? []), "X-Request-Id", "x-d1-bookmark"])
          expect(headers, `${name} ${status}`).toContain(header);
      }
      const refs = (operation.parameters ?? []) as { $ref?: string }[];
      expect(refs.map((p) => p.$ref).filter(Boolean), name).toEqual([
        "#/components/parameters/RequestId",
        "#/components/parameters/Bookmark",
      ]);
    }
  });

  it("has no nullable query parameter: an absent one takes its default", async () => {
    const doc = await document();
    for (const { method, path, operation } of operations(doc)) {
      for (const parameter of operation.parameters ?? []) {
        if (parameter.in !== "query") continue;
        expect(JSON.stringify(parameter.schema), `${method} ${path} ${parameter.name}`).not.toMatch(
          /"null"|"nullable"/,
        );
      }
    }
  });

  it("has servers, a license, no security on /health, and an error type enum", async () => {
    const doc = await document();
    expect(doc.servers?.length).toBeGreaterThan(0);
    expect(doc.info.license?.name).toBeTruthy();
    expect(doc.paths["/health"]?.get?.security).toEqual([]);
    const errorType = doc.components.schemas.ErrorType as { enum?: string[] };
    expect(errorType.enum).toEqual(expect.arrayContaining(["job_not_found", "rate_limited"]));
    for (const name of ["Job", "JobList", "Agent"])
      expect(doc.components.schemas[name]?.example, name).toBeDefined();
  });

  it("declares every timestamp as date-time and the either/or bodies as oneOf", async () => {
    const doc = await document();
    const schemas = doc.components.schemas as Record<
      string,
      { properties?: Record<string, { format?: string; $ref?: string }>; oneOf?: unknown[] }
    >;
    const TIME =
      /^(created|created_at|updated_at|timestamp|registered_at|last_seen|lease_expires_at|expires_at|revoked_at|last_used_at)$/;
    let timestamps = 0;
    for (const [name, schema] of Object.entries(schemas)) {
      for (const [field, property] of Object.entries(schema.properties ?? {})) {
        if (!TIME.test(field)) continue;
        timestamps++;
        expect(JSON.stringify(property), `${name}.${field}`).toContain('"format":"date-time"');
      }
    }
    expect(timestamps).toBeGreaterThan(10);
    expect(schemas.BulkRetryRequest?.oneOf).toHaveLength(2);
    expect(schemas.AgentEventRequest?.oneOf).toHaveLength(4);
  });

  it("documents the Idempotency-Key's length and pattern, and target and label patterns", async () => {
    const doc = await document();
    const idempotency = doc.paths["/job"]?.post?.parameters?.find(
      (p) => p.name === "idempotency-key",
    )?.schema as { pattern?: string; maxLength?: number; minLength?: number };
    expect(idempotency).toMatchObject({ minLength: 1, maxLength: 512 });
    expect(idempotency.pattern).toBeTruthy();
    const labels = doc.components.schemas.Labels as {
      maxProperties?: number;
      propertyNames?: { pattern?: string };
      additionalProperties?: { pattern?: string };
    };
    expect(labels.maxProperties).toBe(64);
    expect(labels.propertyNames?.pattern).toBeTruthy();
    expect(labels.additionalProperties?.pattern).toBeTruthy();
    const target = new RegExp(
      JSON.parse(JSON.stringify(doc.components.schemas.CreateJobRequest)).properties.target_hostname
        .pattern,
      "u",
    );
    for (const good of ["_any", "_all", "web-01", "group:web.dev", "a.b_c"])
      expect(target.test(good), good).toBe(true);
    for (const bad of ["", "_x", "-web", "group:", ":x", "k:a..b", `k:${"a".repeat(254)}`])
      expect(target.test(bad), bad).toBe(false);
  });

  it("is built once per isolate", async () => {
    await document();
    const build = vi.spyOn(app, "getOpenAPI31Document");
    try {
      await document();
      expect(build).not.toHaveBeenCalled();
    } finally {
      build.mockRestore();
    }
  });

  it("has Swagger UI keep the key for the tab only, unless the operator asks for more", async () => {
    const page = await (await call("GET", "/docs", { key: null })).text();
    expect(page).toContain("persistAuthorization: false");
    const ctx = createExecutionContext();
    const persisted = await worker.fetch(
      new Request("http://jobs.test/docs"),
      { ...env, DOCS_PERSIST_AUTHORIZATION: "true" as string } as Env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(await persisted.text()).toContain("persistAuthorization: true");
  });
});

describe("every operation with security", () => {
  it("answers 401 without a key, and with unknown, revoked and expired keys", async () => {
    const doc = await document();
    const refused = [
      `jobs_zzzzzzzzzzzz_${"Z".repeat(43)}`,
      await createKey(["admin"], { revokedAt: new Date().toISOString() }),
      await createKey(["admin"], { expiresAt: new Date(Date.now() - 1000).toISOString() }),
    ];
    for (const { method, path, operation } of operations(doc)) {
      if (!operation.security?.length) continue;
      const url = concretePath(path, operation);
      const name = `${method} ${path}`;
      const anonymous = await call(method, url, { key: null, body: bodyFor(method) });
      expect(anonymous.headers.get("WWW-Authenticate"), name).toBe('Bearer realm="jobs"');
      expect((await expectError(anonymous, 401)).error, name).toBe("API key required");
      for (const key of refused) {
        const response = await call(method, url, { key, body: bodyFor(method) });
        expect((await expectError(response, 401)).error, name).toBe("invalid API key");
      }
    }
  });

  it("answers 403 naming the scope to a key without it, and the named scope lets it through", async () => {
    const doc = await document();
    const none = await createKey([]);
    for (const { method, path, operation } of operations(doc)) {
      if (!operation.security?.length) continue;
      const url = concretePath(path, operation);
      const name = `${method} ${path}`;
      if (operation["x-required-scopes"]?.length === 0) {
        const anyKey = await call(method, url, { key: none, body: bodyFor(method) });
        expect(anyKey.ok, `${name} with no scope: ${anyKey.status}`).toBe(true);
        expect(operation.description, name).toContain("Any valid key may call it");
        continue;
      }
      const error = await expectError(
        await call(method, url, { key: none, body: bodyFor(method) }),
        403,
      );
      expect(error.error, name).toBe("Insufficient permissions");
      const scope = /^requires (\S+)$/.exec(error.details ?? "")?.[1];
      expect(scope, name).toMatch(/^(job|agent):(read|write)$|^admin$/);
      expect(operation["x-required-scopes"], name).toEqual([scope]);
      expect(operation.description, name).toContain(`Requires the scope \`${scope}\``);
      const withScope = await createKey([scope as "admin"]);
      const through = await call(method, url, { key: withScope, body: bodyFor(method) });
      expect(through.status, `${name} with ${scope}`).not.toBe(401);
      // Past the scope, an agent route may still refuse a key that does not own the hostname.
      if (through.status === 403)
        expect((await expectError(through, 403)).error, `${name} with ${scope}`).toMatch(
          /^agent \S+ belongs to another key$/,
        );
    }
  });
});

describe("the examples in the document", () => {
  it("of answers are what the service answers: they parse with the schemas the routes use", async () => {
    const doc = await document();
    const schemas = doc.components.schemas;
    JobSchema.parse(schemas.Job?.example);
    JobListSchema.parse(schemas.JobList?.example);
    ClaimResultSchema.parse(schemas.ClaimResult?.example);
  });

  it("are accepted by their operations (no 400, no 415, no 5xx)", async () => {
    const doc = await document();
    for (const { method, path, operation } of operations(doc)) {
      const body = bodyExample(doc, operation);
      if (body === undefined) continue;
      const response = await call(method, concretePath(path, operation), { body });
      const name = `${method} ${path}: ${await response.clone().text()}`;
      expect([400, 415], name).not.toContain(response.status);
      expect(response.status, name).toBeLessThan(500);
    }
  });

  it("work for real as Swagger UI sends them: create, retry, make a key, rotate it, all 201", async () => {
    const doc = await document();
    const retry = doc.paths["/job/{id}/retry"]?.post;
    expect(retry && bodyExample(doc, retry)).toEqual({ target_hostname: "_any" });
    const { job_id } = (await (await tryItOut(doc, "POST", "/job")).json()) as { job_id: string };
    const retried = await tryItOut(doc, "POST", "/job/{id}/retry", { id: job_id });
    expect(retried.status, await retried.clone().text()).toBe(201);
    const second = (await (await tryItOut(doc, "POST", "/job")).json()) as { job_id: string };
    expect(second.job_id, "a second Try it out makes a second job").not.toBe(job_id);
    const key = await tryItOut(doc, "POST", "/keys");
    expect(key.status).toBe(201);
    const { id } = (await key.json()) as { id: string };
    expect((await tryItOut(doc, "POST", "/keys/{id}/rotate", { id })).status).toBe(201);
  });
});
