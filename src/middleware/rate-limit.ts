import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "../app";
import { ApiError } from "./errors";

const READ_METHODS = new Set(["GET", "HEAD"]);
const WINDOW_SECONDS = 60;

function limited(what: "reads" | "writes") {
  const retryAfter = Math.max(1, WINDOW_SECONDS - (Math.floor(Date.now() / 1000) % WINDOW_SECONDS));
  return new ApiError(
    "rate_limited",
    "rate limit exceeded",
    `too many ${what} for this API key; retry after ${retryAfter} s`,
    { "Retry-After": String(retryAfter) },
  );
}

/** Per-key budgets from the rate limiting bindings; runs after authentication. */
export const rateLimit: MiddlewareHandler<AppEnv> = async (c, next) => {
  const key = c.get("apiKey");
  if (!key) return next();
  const read = READ_METHODS.has(c.req.method);
  const { success } = await (read ? c.env.READ_LIMITER : c.env.WRITE_LIMITER).limit({
    key: key.id,
  });
  if (!success) throw limited(read ? "reads" : "writes");
  return next();
};

/**
 * A request that writes `jobs` jobs costs that many writes: the middleware charged one, this
 * charges the rest before anything is written, and refuses with 429 once the budget is spent.
 */
export async function chargeWrites(c: Context<AppEnv>, jobs: number): Promise<void> {
  const key = c.get("apiKey").id;
  const charged = await Promise.all(
    Array.from({ length: Math.max(0, jobs - 1) }, () => c.env.WRITE_LIMITER.limit({ key })),
  );
  if (charged.some(({ success }) => !success)) throw limited("writes");
}
