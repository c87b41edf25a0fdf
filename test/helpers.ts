import { env, exports } from "cloudflare:workers";
import type { z } from "@hono/zod-openapi";
import { hashKey, type Scope, toHex } from "../src/auth/api-key";
import { ERROR_STATUSES, ErrorSchema } from "../src/schemas/error";

const BASE = "http://jobs.test";

/** Stores a fresh key with these scopes straight in D1 and returns the secret. */
export async function createKey(
  scopes: Scope[],
  options: { expiresAt?: string; revokedAt?: string; name?: string } = {},
): Promise<string> {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const random = crypto.getRandomValues(new Uint8Array(12));
  const prefix = `jobs_${Array.from(random, (b) => alphabet[b % alphabet.length]).join("")}`;
  const secret = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
  const key = `${prefix}_${secret}`;
  await env.DB.prepare(
    "INSERT INTO api_keys (id, prefix, key_hash, name, scopes, created_at, expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
  )
    .bind(
      crypto.randomUUID(),
      prefix,
      toHex(await hashKey(key)),
      options.name ?? "test",
      scopes.join(","),
      new Date().toISOString(),
      options.expiresAt ?? null,
      options.revokedAt ?? null,
    )
    .run();
  return key;
}

let adminKey: Promise<string> | undefined;
/** One admin key per test file. */
export function admin(): Promise<string> {
  adminKey ??= createKey(["admin"]);
  return adminKey;
}

export type CallOptions = {
  key?: string | null;
  body?: unknown;
  rawBody?: BodyInit;
  headers?: Record<string, string>;
};

/** A request through the Worker's own fetch: middleware, auth, validation, errors and all. */
export async function call(
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<Response> {
  return exports.default.fetch(await buildRequest(method, path, options));
}

/** The request call() sends: the admin key unless told otherwise, a JSON body when given one. */
export async function buildRequest(
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<Request> {
  const headers = new Headers(options.headers);
  const key = options.key === undefined ? await admin() : options.key;
  if (key !== null && !headers.has("Authorization")) headers.set("Authorization", `Bearer ${key}`);
  let body: BodyInit | undefined = options.rawBody;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    if (!headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  }
  return new Request(`${BASE}${path}`, { method, headers, body });
}

export async function parse<T extends z.ZodType>(
  response: Response,
  schema: T,
): Promise<z.infer<T>> {
  return schema.parse(await response.json());
}

/** Asserts the error shape and status, and returns the body. */
export async function expectError(response: Response, status: number) {
  const text = await response.text();
  if (response.status !== status) {
    throw new Error(`expected ${status}, got ${response.status}: ${text}`);
  }
  const body = ErrorSchema.strict().parse(JSON.parse(text));
  if (body.code !== status) throw new Error(`code ${body.code} does not match status ${status}`);
  if (ERROR_STATUSES[body.type] !== status)
    throw new Error(`type ${body.type} is not a ${status} kind`);
  return body;
}

export async function createJob(
  operation: Record<string, unknown> = { type: "test.echo" },
  target?: string,
): Promise<{ job_id: string; revision: number; timestamp: string }> {
  const response = await call("POST", "/job", {
    body: target === undefined ? { operation } : { operation, target_hostname: target },
  });
  if (response.status !== 201)
    throw new Error(`create failed: ${response.status} ${await response.text()}`);
  return response.json();
}

/** The counters table against real counts, for invariant checks. */
export async function countersMatchJobs(): Promise<{
  counters: Record<string, number>;
  actual: Record<string, number>;
}> {
  const counters = await env.DB.prepare("SELECT status, n FROM job_counts").all<{
    status: string;
    n: number;
  }>();
  const actual = await env.DB.prepare(
    "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status",
  ).all<{
    status: string;
    n: number;
  }>();
  const toMap = (rows: { status: string; n: number }[]) =>
    Object.fromEntries(rows.filter((r) => r.n > 0).map((r) => [r.status, r.n]));
  return { counters: toMap(counters.results), actual: toMap(actual.results) };
}

/** Time passes for the job: its not_before, and the time its agents' pending rows carry, are past. */
export async function makeDue(id: string) {
  const past = "2000-01-01T00:00:00.000Z";
  await env.DB.batch([
    env.DB.prepare("UPDATE jobs SET not_before = ?2 WHERE id = ?1").bind(id, past),
    env.DB.prepare(
      "UPDATE job_agents SET due_at = ?2 WHERE job_id = ?1 AND state = 'pending'",
    ).bind(id, past),
  ]);
}
