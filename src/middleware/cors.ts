import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import type { AppEnv } from "../app";
import { BOOKMARK_HEADER } from "./session";

const browserCors = cors({
  origin: (origin, c) => (c.env.CORS_ORIGINS.split(",").includes(origin) ? origin : null),
  allowHeaders: [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    BOOKMARK_HEADER,
    "X-Request-Id",
    "Last-Event-ID",
  ],
  exposeHeaders: [
    "Location",
    "ETag",
    "Retry-After",
    "Idempotent-Replayed",
    BOOKMARK_HEADER,
    "X-Request-Id",
  ],
  maxAge: 600,
});

/**
 * CORS headers for browsers, the requests that carry an Origin. Hono's cors middleware writes its
 * headers before the handler runs, which builds and then merges a second response on every
 * request; the others need only `Vary: Origin`, so a cache never hands them to a browser.
 */
export const corsHeaders: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.req.header("Origin") !== undefined) return browserCors(c, next);
  // Before the handler: Hono merges it into the response it builds (after, it would rebuild it).
  c.header("Vary", "Origin");
  return next();
};
