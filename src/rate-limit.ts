import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "./app";
import { ApiError } from "./errors";

const READ_METHODS = new Set(["GET", "HEAD"]);
const WINDOW_SECONDS = 60;

/** Per-key budgets from the rate limiting bindings; runs after authentication. */
export const rateLimit: MiddlewareHandler<AppEnv> = async (c, next) => {
  const key = c.get("apiKey");
  if (!key) return next();
  const limiter = READ_METHODS.has(c.req.method) ? c.env.READ_LIMITER : c.env.WRITE_LIMITER;
  const { success } = await limiter.limit({ key: key.id });
  if (!success) {
    const retryAfter = Math.max(
      1,
      WINDOW_SECONDS - (Math.floor(Date.now() / 1000) % WINDOW_SECONDS),
    );
    throw new ApiError(
      429,
      "rate limit exceeded",
      `too many ${READ_METHODS.has(c.req.method) ? "reads" : "writes"} for this API key; retry after ${retryAfter} s`,
      {
        "Retry-After": String(retryAfter),
      },
    );
  }
  return next();
};
