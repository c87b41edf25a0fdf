import { hc } from "hono/client";
import type { AppType } from "./index";

export type ClientOptions = {
  /** A fetch to send requests with: the global one by default; a Worker's in tests. */
  fetch?: typeof fetch;
  headers?: Record<string, string>;
};

/** A typed client for the job API: paths, parameters, bodies and responses come from the routes. */
export function createClient(baseUrl: string, key: string, options: ClientOptions = {}) {
  return hc<AppType>(baseUrl, {
    ...(options.fetch ? { fetch: options.fetch } : {}),
    headers: { ...options.headers, Authorization: `Bearer ${key}` },
  });
}

export type JobClient = ReturnType<typeof createClient>;
