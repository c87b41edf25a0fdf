import { hc } from "hono/client";
import type { AppType } from "./index";
import type { ClientOptions } from "./watch-job";

export {
  type ClientOptions,
  type WatchEnd,
  type WatchedEvent,
  type WatchOptions,
  watchJob,
} from "./watch-job";

/** A typed client for the job API: paths, parameters, bodies and responses come from the routes. */
export function createClient(baseUrl: string, key: string, options: ClientOptions = {}) {
  return hc<AppType>(baseUrl, {
    ...(options.fetch ? { fetch: options.fetch } : {}),
    headers: { ...options.headers, Authorization: `Bearer ${key}` },
  });
}

export type JobClient = ReturnType<typeof createClient>;
