import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { AppEnv } from "../app";
import { keyPrefix, redactKeys } from "../auth/api-key";

/** One line per request, as queried in Workers Logs and `wrangler tail`. Never a secret. */
export type RequestLog = {
  level: "info" | "warn" | "error";
  request_id: string;
  method: string;
  route: string | null;
  path: string;
  status: number;
  duration_ms: number;
  key_id?: string;
  key_prefix?: string;
  job_id?: string;
  new_job_id?: string;
  revision?: number;
  error?: string;
};

const JOB_PATH = /\/job\/([0-9a-fA-F-]{36})(?:\/|$)/;

/** Hono's `/job/:id` as the document writes it, `/job/{id}`, converted once per route. */
const patterns = new Map<string, string>();

function routePattern(c: Context<AppEnv>): string | null {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const route = routes[i];
    if (!route || route.method === "ALL") continue;
    let pattern = patterns.get(route.path);
    if (pattern === undefined) {
      pattern = route.path.replace(/:(\w+)/g, "{$1}");
      patterns.set(route.path, pattern);
    }
    return pattern;
  }
  return null;
}

function presentedPrefix(c: Context<AppEnv>): string | undefined {
  const header = c.req.header("Authorization") ?? c.req.header("X-API-Key") ?? "";
  const token = header.replace(/^Bearer\s+/i, "").trim();
  return keyPrefix(token) ?? undefined;
}

/** What a write answered, for its request's log line: the job it wrote and the revision it took. */
export type WriteNote = { job_id?: string; revision?: number | null };

/** Handlers of writes name their outcome here, so the log line need not read the response back. */
export function noteWrite(c: Context<AppEnv>, note: WriteNote): void {
  c.set("written", note);
}

export const requestLog: MiddlewareHandler<AppEnv> = async (c, next) => {
  const started = Date.now();
  await next();
  const key = c.get("apiKey");
  const status = c.res.status;
  const line: RequestLog = {
    level: status >= 500 ? "error" : status >= 400 ? "warn" : "info",
    request_id: c.get("requestId"),
    method: c.req.method,
    route: routePattern(c),
    path: redactKeys(c.req.path),
    status,
    duration_ms: Date.now() - started,
  };
  const prefix = key?.prefix ?? presentedPrefix(c);
  if (key) line.key_id = key.id;
  if (prefix) line.key_prefix = prefix;
  const pathJob = JOB_PATH.exec(c.req.path)?.[1]?.toLowerCase();
  const outcome = c.res.status < 300 ? (c.get("written") ?? {}) : {};
  if (pathJob) line.job_id = pathJob;
  const newJob = outcome.job_id;
  if (newJob && newJob !== pathJob) {
    if (pathJob) line.new_job_id = newJob;
    else line.job_id = newJob;
  }
  if (typeof outcome.revision === "number") line.revision = outcome.revision;
  if (status >= 500 && c.error) line.error = redactKeys(c.error.message);
  // Workers Logs and `wrangler tail` take the level from the console method.
  (line.level === "error" ? console.error : console.log)(JSON.stringify(line));
};
