import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { VerifiedKey } from "./auth/api-key";
import type { Db } from "./db/session";
import { ApiError } from "./errors";
import type { WriteNote } from "./logging";

export type AppEnv = {
  Bindings: Env;
  Variables: { requestId: string; apiKey: VerifiedKey; db: Db; written: WriteNote };
};

const TARGET_NAMES: Record<string, string> = {
  json: "request body",
  query: "query parameter",
  param: "path parameter",
  header: "header",
};

/** Every router is built here, so every validation failure answers in the error shape. */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (result.success) return;
      const details = result.error.issues
        .map((issue) =>
          issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message,
        )
        .join("; ");
      throw new ApiError(400, `invalid ${TARGET_NAMES[result.target] ?? result.target}`, details);
    },
  });
}

/**
 * A header on a response already built, in place: `c.header()` after the handler makes a new
 * Response each time. Responses from `fetch()` (static assets) have immutable headers: those go
 * through `c.header()`.
 */
export function setResponseHeader(c: Context<AppEnv>, name: string, value: string): void {
  try {
    c.res.headers.set(name, value);
  } catch {
    c.header(name, value);
  }
}
