import { OpenAPIHono, type z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { VerifiedKey } from "./auth/api-key";
import type { Db } from "./db/session";
import { ApiError } from "./middleware/errors";
import type { WriteNote } from "./middleware/logging";
import type { ErrorType } from "./schemas/error";

export type AppEnv = {
  Bindings: Env;
  Variables: { requestId: string; apiKey: VerifiedKey; db: Db; written: WriteNote };
};

const TARGETS: Record<string, { name: string; type: ErrorType }> = {
  json: { name: "request body", type: "invalid_body" },
  query: { name: "query parameter", type: "invalid_query" },
  param: { name: "path parameter", type: "invalid_path" },
  header: { name: "header", type: "invalid_header" },
};

type Issue = z.core.$ZodIssue;

/** One validation issue for a person; a body that fits no alternative says what each one wanted. */
function describe(issue: Issue): string {
  const where = issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
  if (issue.code === "invalid_union") {
    if (issue.errors.length === 0) {
      const allowed = "options" in issue && issue.options ? issue.options.join(", ") : undefined;
      return issue.discriminator && allowed
        ? `${where}${issue.discriminator}: must be one of ${allowed}`
        : `${where}${issue.message}`;
    }
    const alternatives = issue.errors.map((issues) => issues.map(describe).join(", "));
    return `${where}fits none of the allowed shapes: ${alternatives.join(" | ")}`;
  }
  return `${where}${issue.message}`;
}

/** Every router is built here, so every validation failure answers in the error shape. */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (result.success) return;
      const details = result.error.issues.map(describe).join("; ");
      const target = TARGETS[result.target];
      const tooLarge = result.error.issues.some(
        (issue) => issue.code === "custom" && issue.params?.tooLarge === true,
      );
      throw new ApiError(
        tooLarge ? "payload_too_large" : (target?.type ?? "invalid_request"),
        `${tooLarge ? "too large:" : "invalid"} ${target?.name ?? result.target}`,
        details,
      );
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
