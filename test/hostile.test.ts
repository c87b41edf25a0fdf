import { env } from "cloudflare:workers";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ClaimResultSchema } from "../src/schemas/agent";
import { JobSchema } from "../src/schemas/job";
import { checkConsistency, onD1 } from "./consistency";
import { direct } from "./direct-fetch";
import { admin, createJob, expectError } from "./helpers";

type Operation = {
  parameters?: { name: string; in: string }[];
  requestBody?: { content: Record<string, unknown> };
};
type Route = { method: string; path: string; operation: Operation };

/** One generated request; `refuse` says the contract requires a 4xx whatever the schema. */
type Hostile = {
  label: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  refuse: boolean;
};

const MiB = 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const JSON_TYPE = { "Content-Type": "application/json" };
const RUNS = 200;

let routes: Route[] = [];
let jobId = "";
let tables: string[] = [];
const logged: string[] = [];

beforeAll(async () => {
  const doc = (await (await direct("GET", "/openapi.json", { key: null })).json()) as {
    paths: Record<string, Record<string, Operation>>;
  };
  routes = Object.entries(doc.paths).flatMap(([path, byMethod]) =>
    Object.entries(byMethod).map(([method, operation]) => ({
      method: method.toUpperCase(),
      path,
      operation,
    })),
  );
  jobId = (await createJob({ type: "hostile.target", data: { keep: true } })).job_id;
  const rows = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%' ORDER BY name",
  ).all<{ name: string }>();
  tables = rows.results.map((r) => r.name);
  await admin();
  for (const level of ["log", "info", "warn", "error"] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      logged.push(args.map(String).join(" "));
    });
  }
});

afterAll(() => {
  vi.restoreAllMocks();
});

/** The store revision and the row count of every table: what a refused request must not move. */
async function fingerprint() {
  const results = await env.DB.batch([
    env.DB.prepare("SELECT revision FROM store_revision"),
    ...tables.map((t) => env.DB.prepare(`SELECT '${t}' AS t, COUNT(*) AS n FROM "${t}"`)),
  ]);
  return JSON.stringify(results.map((r) => r.results));
}

function concrete(route: Route, id = jobId): string {
  return route.path.replace(/\{(\w+)\}/g, (_, name: string) =>
    name === "id" && route.path.startsWith("/job")
      ? id
      : name === "id"
        ? crypto.randomUUID()
        : "web-01",
  );
}

const bodyRoutes = () => routes.filter((r) => r.operation.requestBody);
const isCreate = (r: Route) => r.method === "POST" && r.path === "/job";
const isRetry = (r: Route) => r.method === "POST" && r.path === "/job/{id}/retry";

/** A valid body for the routes whose schema this file knows; `{}` for the others. */
function validBody(route: Route): Record<string, unknown> {
  if (isCreate(route)) return { operation: { type: "hostile.ok" }, target_hostname: "_any" };
  if (isRetry(route)) return { target_hostname: "_any" };
  return {};
}

async function send(request: Hostile): Promise<Response> {
  const ownKey = Object.keys(request.headers ?? {}).some((h) =>
    ["authorization", "x-api-key"].includes(h.toLowerCase()),
  );
  return direct(request.method, request.path, {
    rawBody: request.body,
    headers: request.headers,
    ...(ownKey ? { key: null } : {}),
  });
}

/**
 * The property: never a 5xx; a 4xx in the error shape when the request is refused (always, when
 * the contract says it must be), with nothing changed; a created job stores the operation as sent.
 */
async function holds(request: Hostile) {
  const before = await fingerprint();
  const response = await send(request);
  const where = `${request.label}: ${request.method} ${request.path.slice(0, 120)}`;
  expect(response.status, where).toBeLessThan(500);
  expect(response.headers.get("X-Request-Id"), where).toBeTruthy();
  if (request.refuse) expect(response.status, where).toBeGreaterThanOrEqual(400);
  if (response.status >= 400) {
    if (request.method !== "HEAD") await expectError(response, response.status);
    if (response.status === 405) {
      expect(response.headers.get("Allow")?.split(", "), where).not.toContain(request.method);
    }
    expect(await fingerprint(), where).toBe(before);
    return;
  }
  if (response.status === 201 && request.path === "/job" && typeof request.body === "string") {
    const { job_id } = (await response.json()) as { job_id: string };
    const stored = JobSchema.parse(await (await direct("GET", `/job/${job_id}`)).json());
    expect(stored.operation, where).toEqual(JSON.parse(request.body).operation);
  }
}

async function check(arbitrary: fc.Arbitrary<Hostile>, numRuns = RUNS) {
  await fc.assert(fc.asyncProperty(arbitrary, holds), { numRuns });
}

const INVALID_UTF8 = [
  [0xff],
  [0xc3, 0x28],
  [0xe2, 0x28, 0xa1],
  [0xf0, 0x90, 0x28, 0xbc],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
];

const WRONG_TYPES = [
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/xml",
  "text/json",
  "application/jsonx",
  "application/json;",
  "application/json; charset=utf-8; x",
  "application/octet-stream",
  "*/*",
  "json",
];

const SQL_AND_PATH = [
  "' OR '1'='1",
  "1; DROP TABLE jobs; --",
  '") UNION SELECT * FROM api_keys --',
  "../../etc/passwd",
  "..%2f..%2f",
  "%00",
  "\\x00",
  `\${jndi:ldap://x}`,
  "<script>",
  "%s%s%s%n",
];

const hostileString = fc.oneof(
  fc.string({ unit: "binary", minLength: 1 }),
  fc.constantFrom(...SQL_AND_PATH),
  fc.string({ unit: fc.constantFrom("\u0000", "\u0001", "\u001f", "\u007f", "\n", "\r", "\t") }),
);

/** Every malformed form of a UUID: cut, grown, wrong characters, wrong shape, or not one at all. */
const malformedId = fc
  .oneof(
    fc.tuple(fc.uuid(), fc.nat(35)).map(([u, i]) => u.slice(0, i) + u.slice(i + 1)),
    fc
      .tuple(fc.uuid(), fc.nat(36), fc.constantFrom("a", "0", "-"))
      .map(([u, i, c]) => u.slice(0, i) + c + u.slice(i)),
    fc
      .tuple(
        fc.uuid(),
        fc.nat(35),
        fc.constantFrom("g", "z", "G", " ", "_", "é", "\u0000", "%", "/"),
      )
      .map(([u, i, c]) => u.slice(0, i) + c + u.slice(i + 1)),
    fc.uuid().map((u) => u.replaceAll("-", "")),
    fc.uuid().map((u) => `{${u}}`),
    fc.uuid().map((u) => `urn:uuid:${u}`),
    fc.uuid().map((u) => `${u}.json`),
    fc.uuid().map((u) => ` ${u}`),
    fc.uuid().map((u) => `${u}\u0000`),
    fc.uuid().map((u) => u.replaceAll("-", "_")),
    fc.constantFrom("", ".", "..", "null", "undefined", "0", "-1", "true", "[]", "{}"),
    fc.constantFrom(...SQL_AND_PATH),
    fc.string({ unit: "binary", maxLength: 64 }),
    fc.integer({ min: 1000, max: 20000 }).map((n) => "a".repeat(n)),
  )
  .filter((id) => !UUID.test(id.trim()));

describe("hostile requests at every route of the document", { timeout: 120_000 }, () => {
  it("covers the job routes at least", () => {
    const names = routes.map((r) => `${r.method} ${r.path}`);
    expect(names).toEqual(
      expect.arrayContaining([
        "POST /job",
        "GET /job",
        "GET /job/{id}",
        "DELETE /job/{id}",
        "POST /job/{id}/retry",
      ]),
    );
  });

  it("refuse malformed UUIDs in the path", async () => {
    const idRoutes = () => routes.filter((r) => r.path.includes("{id}"));
    await check(
      fc.tuple(fc.constantFrom(...idRoutes()), malformedId).map(([route, id]) => ({
        label: "malformed id",
        method: route.method,
        path: concrete(route, encodeURIComponent(id)),
        headers: route.operation.requestBody ? JSON_TYPE : undefined,
        body: route.operation.requestBody ? JSON.stringify(validBody(route)) : undefined,
        refuse: true,
      })),
    );
  });

  it("refuse truncated JSON", async () => {
    await check(
      fc.constantFrom(...bodyRoutes()).chain((route) => {
        const text = JSON.stringify(validBody(route));
        return fc.nat(text.length - 1).map((cut) => ({
          label: "truncated JSON",
          method: route.method,
          path: concrete(route),
          headers: JSON_TYPE,
          body: text.slice(0, cut),
          refuse: true,
        }));
      }),
    );
  });

  it("refuse bodies that are not UTF-8", async () => {
    await check(
      fc
        .tuple(
          fc.constantFrom(...bodyRoutes()),
          fc.constantFrom(...INVALID_UTF8),
          fc.boolean(),
          fc.nat(),
        )
        .map(([route, bad, inString, at]) => {
          const body = isCreate(route)
            ? { operation: { type: "utf8.MARK" } }
            : { ...validBody(route), note: "MARK" };
          const bytes = new TextEncoder().encode(JSON.stringify(body));
          const mark = inString
            ? bytes.findIndex((_, i) => bytes[i] === 0x4d && bytes[i + 1] === 0x41)
            : at % (bytes.length + 1);
          return {
            label: "invalid UTF-8",
            method: route.method,
            path: concrete(route),
            headers: JSON_TYPE,
            body: new Uint8Array([...bytes.slice(0, mark), ...bad, ...bytes.slice(mark)]),
            refuse: true,
          };
        }),
    );
  });

  it("refuse wrong and missing content types", async () => {
    await check(
      fc
        .tuple(fc.constantFrom(...bodyRoutes()), fc.option(fc.constantFrom(...WRONG_TYPES)))
        .map(([route, type]) => ({
          label: `content type ${type}`,
          method: route.method,
          path: concrete(route),
          headers: type === null ? undefined : { "Content-Type": type },
          body: JSON.stringify(validBody(route)),
          refuse: true,
        })),
    );
  });

  it("refuse bodies over 1 MiB", async () => {
    await check(
      fc
        .tuple(fc.constantFrom(...bodyRoutes()), fc.integer({ min: 1, max: 4096 }))
        .map(([route, extra]) => ({
          label: "over 1 MiB",
          method: route.method,
          path: concrete(route),
          headers: JSON_TYPE,
          body: JSON.stringify({ ...validBody(route), pad: "x".repeat(MiB + extra) }),
          refuse: true,
        })),
      20,
    );
  });

  it("refuse operations nested deeper than the limit, and never fail on the deepest", async () => {
    await check(
      fc.tuple(fc.integer({ min: 65, max: 30_000 }), fc.boolean()).map(([depth, arrays]) => ({
        label: `nested ${depth}`,
        method: "POST",
        path: "/job",
        headers: JSON_TYPE,
        body: `{"operation":{"type":"deep","data":${arrays ? `${"[".repeat(depth)}${"]".repeat(depth)}` : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`}}}`,
        refuse: true,
      })),
      40,
    );
  });

  it("refuse operations that are not objects with a non-empty string type", async () => {
    const notOperation = fc.oneof(
      fc.string(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.jsonValue()),
      fc.record({
        type: fc.oneof(fc.constant(""), fc.integer(), fc.constant(null), fc.array(fc.string())),
      }),
      fc.dictionary(
        fc.string().filter((k) => k !== "type"),
        fc.jsonValue(),
      ),
    );
    await check(
      notOperation.map((operation) => ({
        label: "not an operation",
        method: "POST",
        path: "/job",
        headers: JSON_TYPE,
        body: JSON.stringify({ operation }),
        refuse: true,
      })),
    );
  });

  it("refuse huge strings, and bad targets with control, SQL and path characters", async () => {
    const badTarget = fc
      .oneof(
        hostileString,
        fc.integer({ min: 254, max: 300_000 }).map((n) => "a".repeat(n)),
        fc.string({ unit: "grapheme" }).map((s) => `web 01${s}`),
      )
      .filter(
        (t) =>
          !/^(?:_any|_all|[A-Za-z0-9][A-Za-z0-9._-]{0,252}|[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+)$/.test(
            t,
          ),
      );
    await check(
      fc.oneof(
        fc
          .tuple(fc.constantFrom("/job", `/job/${jobId}/retry`), badTarget)
          .map(([path, target]) => ({
            label: "bad target",
            method: "POST",
            path,
            headers: JSON_TYPE,
            body: JSON.stringify(
              path === "/job"
                ? { operation: { type: "x" }, target_hostname: target }
                : { target_hostname: target },
            ),
            refuse: true,
          })),
        fc.integer({ min: 64 * 1024, max: 900_000 }).map((n) => ({
          label: `type of ${n} characters`,
          method: "POST",
          path: "/job",
          headers: JSON_TYPE,
          body: JSON.stringify({ operation: { type: "t".repeat(n) } }),
          refuse: true,
        })),
      ),
    );
  });

  it("refuse unknown fields, prototype keys included, in the bodies the contract makes strict", async () => {
    const strict = routes.filter((r) => isCreate(r) || isRetry(r));
    const unknownKey = fc.oneof(
      fc.string({ minLength: 1 }).filter((k) => !["operation", "target_hostname"].includes(k)),
      fc.constantFrom("__proto__", "constructor", "prototype", "toString", "target", "Operation"),
    );
    await check(
      fc
        .tuple(fc.constantFrom(...strict), unknownKey, fc.jsonValue())
        .map(([route, key, value]) => ({
          label: `unknown field ${key}`,
          method: route.method,
          path: concrete(route),
          headers: JSON_TYPE,
          body: `${JSON.stringify(validBody(route)).slice(0, -1)},${JSON.stringify(key)}:${JSON.stringify(value) ?? "null"}}`,
          refuse: true,
        })),
    );
  });

  it("store hostile but valid operation content exactly as sent", async () => {
    await check(
      fc
        .tuple(hostileString, fc.dictionary(hostileString, fc.jsonValue(), { maxKeys: 4 }))
        .map(([type, extra]) => ({
          label: "hostile content",
          method: "POST",
          path: "/job",
          headers: JSON_TYPE,
          body: JSON.stringify({ operation: { ...extra, type } }),
          refuse: false,
        })),
      80,
    );
  });

  it("refuse repeated, out-of-range, malformed and unknown query parameters", async () => {
    const badValue = fc.oneof(
      fc.constantFrom(
        "0",
        "101",
        "-1",
        "1.5",
        "1e400",
        "NaN",
        "abc",
        "%00",
        "1%20OR%201=1",
        "99999999999999999999",
      ),
      fc.integer({ min: 101 }).map(String),
      fc.integer({ max: 0 }).map(String),
    );
    const query = fc.oneof(
      badValue.map((v) => `limit=${v}`),
      fc.constantFrom("-1", "-5", "1.5", "1e400", "x", "2000000000").map((v) => `offset=${v}`),
      fc
        .tuple(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 100 }))
        .map(([a, b]) => `limit=${a}&limit=${b}`),
      fc.constantFrom("offset=0&offset=1", "status=failed&status=completed"),
      fc
        .string({ minLength: 1 })
        .filter(
          (s) =>
            !/^(?:unprocessed|processing|completed|failed|partial_failure|skipped|submitted)$/.test(
              s,
            ),
        )
        .map((s) => `status=${encodeURIComponent(s)}`),
      fc
        .string({ unit: "binary", minLength: 1 })
        .filter((k) => !["limit", "offset", "status", "retry_of", "root_job_id"].includes(k))
        .map((k) => `${encodeURIComponent(k)}=1`),
    );
    await check(
      query.map((q) => ({
        label: `query ${q.slice(0, 60)}`,
        method: "GET",
        path: `/job?${q}`,
        refuse: true,
      })),
    );
  });

  it("refuse methods a path does not have, with 405 and an Allow that does not list them", async () => {
    const paths = [...new Set(routes.map((r) => r.path))];
    const wrong = paths.flatMap((path) => {
      const have = new Set(routes.filter((r) => r.path === path).map((r) => r.method));
      if (have.has("GET")) have.add("HEAD");
      return ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
        .filter((m) => !have.has(m))
        .map((method) => ({ method, path }));
    });
    await check(
      fc.constantFrom(...wrong).map(({ method, path }) => ({
        label: "wrong method",
        method,
        path: concrete({ method, path, operation: {} }),
        refuse: true,
      })),
      Math.min(RUNS, wrong.length * 3),
    );
  });

  it("refuse unknown paths, whatever is in them", async () => {
    const segment = fc.oneof(hostileString, malformedId).map(encodeURIComponent);
    await check(
      fc
        .tuple(
          fc.constantFrom(
            "/nope-",
            `/job/${jobId}/`,
            "/job/",
            "/jobs/",
            "/health/",
            "/openapi.json/",
          ),
          segment,
          fc.constantFrom("GET", "POST", "DELETE"),
        )
        .filter(
          ([prefix, s]) =>
            !(prefix === `/job/${jobId}/` && s === "retry") && s !== "" && s !== "." && s !== "..",
        )
        .map(([prefix, s, method]) => ({
          label: "unknown path",
          method,
          path: `${prefix}${s}`,
          refuse: true,
        })),
    );
  });

  it("refuse hostile credentials and survive hostile headers", async () => {
    await check(
      fc.oneof(
        hostileString.map((s) => ({
          label: "bad key",
          method: "GET",
          path: "/job",
          headers: { Authorization: `Bearer ${encodeURIComponent(s)}` },
          refuse: true,
        })),
        fc
          .string({
            unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789_-ABC"),
            minLength: 1,
            maxLength: 80,
          })
          .map((s) => ({
            label: "bad key header",
            method: "GET",
            path: "/job",
            headers: { "X-API-Key": `jobs_${s}` },
            refuse: true,
          })),
        fc
          .tuple(
            fc.constantFrom(
              "X-Request-Id",
              "x-d1-bookmark",
              "If-Match",
              "If-None-Match",
              "Idempotency-Key",
            ),
            fc.oneof(
              fc.string({
                unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
              }),
              fc.stringMatching(/^[0-9A-Za-z-]{1,256}$/),
              fc.integer({ min: 300, max: 9000 }).map((n) => "x".repeat(n)),
            ),
            fc.constantFrom(`/job/${jobId}`, "/job", "/job?limit=1"),
          )
          .map(([name, value, path]) => ({
            label: `header ${name}`,
            method: "GET",
            path,
            headers: { [name]: value.trim() },
            refuse: false,
          })),
      ),
    );
  });

  it("refuse malformed hostnames, claims and registrations at the agent routes", async () => {
    const agentRoutes = routes.filter((r) => r.path.startsWith("/agent/{hostname}"));
    const badHostname = fc
      .oneof(hostileString, malformedId, fc.constantFrom("-web", ".web", "_web", "a".repeat(254)))
      .filter((h) => !/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(h) && h !== "." && h !== "..");
    const badClaim = fc.oneof(
      fc
        .oneof(fc.integer({ max: 0 }), fc.integer({ min: 101 }), fc.double({ noInteger: true }))
        .map((limit) => ({ limit })),
      fc
        .oneof(fc.integer({ max: 4 }), fc.integer({ min: 3601 }), fc.constant("60"))
        .map((lease_seconds) => ({ lease_seconds })),
      fc
        .string({ minLength: 1 })
        .filter((k) => !["limit", "lease_seconds"].includes(k))
        .map((k) => ({ [k]: 1 })),
    );
    const badLabels = fc.oneof(
      fc.dictionary(
        fc.string({ minLength: 1 }).filter((k) => !/^[A-Za-z0-9_-]+$/.test(k)),
        fc.constant("v"),
        { minKeys: 1 },
      ),
      fc.dictionary(
        fc.constantFrom("group", "os"),
        hostileString.filter((v) => !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(v)),
        { minKeys: 1 },
      ),
      fc
        .integer({ min: 65, max: 200 })
        .map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]))),
      fc.constantFrom(null, "group:web", ["a"], 7),
    );
    await check(
      fc.oneof(
        fc.tuple(fc.constantFrom(...agentRoutes), badHostname).map(([route, hostname]) => ({
          label: "malformed hostname",
          method: route.method,
          path: route.path
            .replace("{hostname}", encodeURIComponent(hostname))
            .replace("{id}", jobId),
          headers: route.operation.requestBody ? JSON_TYPE : undefined,
          body: route.operation.requestBody ? "{}" : undefined,
          refuse: true,
        })),
        badClaim.map((body) => ({
          label: "bad claim",
          method: "POST",
          path: "/agent/web-01/claim",
          headers: JSON_TYPE,
          body: JSON.stringify(body),
          refuse: true,
        })),
        badLabels.map((labels) => ({
          label: "bad labels",
          method: "PUT",
          path: `/agent/hostile-${crypto.randomUUID().slice(0, 8)}`,
          headers: JSON_TYPE,
          body: JSON.stringify({ labels }),
          refuse: true,
        })),
      ),
    );
  });

  it("refuse malformed reports from the agent holding the job, and store accepted ones as sent", async () => {
    const agent = `hostile-agent-${crypto.randomUUID().slice(0, 8)}`;
    expect((await direct("PUT", `/agent/${agent}`, { body: {} })).status).toBe(200);
    const deep = (n: number) => JSON.parse(`${"[".repeat(n)}${"]".repeat(n)}`) as unknown;
    const report: fc.Arbitrary<{ refuse: boolean; body: { event?: unknown }; depth?: number }> =
      fc.oneof(
        fc
          .tuple(
            fc.oneof(fc.jsonValue(), hostileString),
            fc.option(fc.boolean(), { nil: undefined }),
          )
          .map(([result, changed]) => ({
            refuse: false,
            body: { event: "completed", result, changed } as Record<string, unknown>,
          })),
        fc
          .integer({ min: 65, max: 20_000 })
          .map((depth) => ({ refuse: true, depth, body: { event: "completed" } })),
        hostileString
          .filter((e) => e.length <= 4096)
          .map((error) => ({ refuse: false, body: { event: "failed", error } })),
        fc
          .oneof(
            fc
              .string()
              .filter(
                (e) => !["acknowledged", "started", "completed", "failed", "skipped"].includes(e),
              )
              .map((event) => ({ event })),
            fc.constant({ event: "started", result: 1 }),
            fc.constant({ event: "failed" }),
            fc.constant({ event: "completed", error: "" }),
            fc
              .integer({ min: 4097, max: 10_000 })
              .map((n) => ({ event: "failed", error: "e".repeat(n) })),
            fc
              .integer({ min: 64 * 1024, max: 200_000 })
              .map((n) => ({ event: "completed", result: "r".repeat(n) })),
            fc.constant({ event: "completed", changed: "yes" }),
            fc
              .string({ minLength: 1 })
              .filter((k) => !["event", "result", "changed", "error", "lease_token"].includes(k))
              .map((k) => ({ event: "completed", [k]: 1 })),
          )
          .map((body) => ({ refuse: true, body })),
      );
    await fc.assert(
      fc.asyncProperty(report, async ({ refuse, body: sent, depth }) => {
        const id = (await createJob({ type: "hostile.report" }, agent)).job_id;
        const claimed = await direct("POST", `/agent/${agent}/claim`, { body: { limit: 100 } });
        const { jobs } = ClaimResultSchema.parse(await claimed.json());
        const lease_token = jobs.find((j) => j.id === id)?.lease_token;
        expect(lease_token).toBeDefined();
        const body = { ...sent, ...(depth ? { result: deep(depth) } : {}), lease_token };
        const request = {
          label: `report ${JSON.stringify(body).slice(0, 60)}`,
          method: "POST",
          path: `/agent/${agent}/job/${id}/event`,
          headers: JSON_TYPE,
          body: JSON.stringify(body),
          refuse,
        };
        await holds(request);
        const job = JobSchema.parse(await (await direct("GET", `/job/${id}`)).json());
        const answered = job.timeline.some((t) => t.event === body.event && t.hostname === agent);
        if (refuse) expect(answered).toBe(false);
        else if (answered && body.event === "completed") {
          expect(job.result).toEqual(JSON.parse(JSON.stringify(body)).result);
        }
      }),
      { numRuns: RUNS / 2 },
    );
  });

  it("left the store consistent", async () => {
    const job = JobSchema.parse(await (await direct("GET", `/job/${jobId}`)).json());
    expect(job.operation).toEqual({ type: "hostile.target", data: { keep: true } });
    expect(job.timeline.map((t) => t.event).filter((e) => e !== "acknowledged")).toEqual([
      "submitted",
    ]);
    expect(await checkConsistency(onD1(env.DB))).toEqual([]);
  });

  it("never wrote the key to a log line", async () => {
    const key = await admin();
    expect(logged.length).toBeGreaterThan(RUNS);
    expect(logged.filter((line) => line.includes(key.slice(18)))).toEqual([]);
  });
});

describe("what this suite found, each pinned by an example", () => {
  it("an operation nested past 64 levels is a 400: it used to be stored, and its retry answered 500", async () => {
    const data = JSON.parse(`${"[".repeat(1500)}${"]".repeat(1500)}`);
    const error = await expectError(
      await direct("POST", "/job", { body: { operation: { type: "deep", data } } }),
      400,
    );
    expect(error.details).toContain("must nest at most 64 levels");
    const ok = JSON.parse(`${"[".repeat(60)}${"]".repeat(60)}`);
    const created = await direct("POST", "/job", {
      body: { operation: { type: "deep", data: ok } },
    });
    expect(created.status).toBe(201);
    const { job_id } = (await created.json()) as { job_id: string };
    expect((await direct("POST", `/job/${job_id}/retry`)).status).toBe(201);
  });

  it("a body that is not UTF-8 is a 400: bad bytes used to be stored as U+FFFD", async () => {
    const bytes = new TextEncoder().encode('{"operation":{"type":"x?"}}');
    bytes[23] = 0xff;
    const response = await direct("POST", "/job", { rawBody: bytes, headers: JSON_TYPE });
    expect(await expectError(response, 400)).toEqual({
      type: "invalid_body",
      error: "malformed request body",
      details: "the body is not valid UTF-8",
      code: 400,
    });
  });

  it("a trailing slash is an unknown path: it used to be a 405 whose Allow listed the method", async () => {
    await expectError(await direct("GET", "/job/"), 404);
    await expectError(await direct("POST", `/job/${jobId}/retry/`), 404);
  });

  it("an agent result nested past 64 levels is a 400: it used to be stored, and the job then answered 500", async () => {
    const agent = `deep-${crypto.randomUUID().slice(0, 8)}`;
    expect((await direct("PUT", `/agent/${agent}`, { body: {} })).status).toBe(200);
    const { job_id } = await createJob({ type: "deep.result" }, agent);
    const claimed = await direct("POST", `/agent/${agent}/claim`, { body: { limit: 100 } });
    const { jobs } = ClaimResultSchema.parse(await claimed.json());
    const lease_token = jobs.find((j) => j.id === job_id)?.lease_token;
    const result = JSON.parse(`${"[".repeat(15000)}${"]".repeat(15000)}`);
    const refused = await direct("POST", `/agent/${agent}/job/${job_id}/event`, {
      body: { event: "completed", result, lease_token },
    });
    expect((await expectError(refused, 400)).details).toContain("must nest at most 64 levels");
    expect((await direct("GET", `/job/${job_id}`)).status).toBe(200);
  });
});

describe("an operation with a __proto__ key", () => {
  it("is stored verbatim, top level and nested: the key is data, not a prototype", async () => {
    const body =
      '{"operation":{"__proto__":{"x":1},"type":"proto.test","data":{"__proto__":{"y":2}}}}';
    const created = await direct("POST", "/job", {
      rawBody: body,
      headers: { "Content-Type": "application/json" },
    });
    expect(created.status, await created.clone().text()).toBe(201);
    const { job_id } = (await created.json()) as { job_id: string };
    const text = await (await direct("GET", `/job/${job_id}`)).text();
    const operation = (JSON.parse(text) as { operation: unknown }).operation;
    expect(operation).toEqual(JSON.parse(body).operation);
    expect(Object.getPrototypeOf(operation)).toBe(Object.prototype);
    const patched = await direct("POST", `/job/${job_id}/retry`, {
      rawBody: '{"operation_patch":{"__proto__":{"z":3}}}',
      headers: { "Content-Type": "application/json" },
    });
    expect(patched.status, await patched.clone().text()).toBe(201);
    const retried = (await patched.json()) as { job_id: string };
    const job = JSON.parse(await (await direct("GET", `/job/${retried.job_id}`)).text());
    expect(Object.getOwnPropertyDescriptor(job.operation, "__proto__")?.value).toEqual({
      x: 1,
      z: 3,
    });
  });
});

describe("an agent's label named __proto__", () => {
  it("is stored and matched like any other label key", async () => {
    const host = "proto-labels-01";
    const registered = await direct("PUT", `/agent/${host}`, {
      rawBody: '{"labels":{"__proto__":"web.dev","group":"db"}}',
      headers: JSON_TYPE,
    });
    expect(registered.status, await registered.clone().text()).toBe(200);
    const agent = JSON.parse(await registered.text()) as { labels: object };
    expect(Object.getOwnPropertyDescriptor(agent.labels, "__proto__")?.value).toBe("web.dev");
    const { job_id } = await createJob({ type: "proto.labels" }, "__proto__:web");
    const claimed = await direct("POST", `/agent/${host}/claim`, { body: { limit: 10 } });
    const { jobs } = ClaimResultSchema.parse(await claimed.json());
    expect(jobs.map((job) => job.id)).toContain(job_id);
  });
});
