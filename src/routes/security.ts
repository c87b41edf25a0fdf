import type { OpenAPIHono } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app";
import type { Scope } from "../auth/api-key";
import { requireScope } from "../middleware/auth";

/** What every protected operation declares, so Swagger UI's Authorize sends the key. */
export const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

/**
 * A protected operation's security, the scope check, and the scope as `x-required-scopes`, from
 * which the document also writes it into the description.
 */
export function requires(scope: Scope) {
  return {
    security: SECURITY,
    middleware: [requireScope(scope)] as [MiddlewareHandler<AppEnv>],
    "x-required-scopes": [scope],
  };
}

/** An operation any valid key may call, whatever its scopes: an empty `x-required-scopes`. */
export function anyKey() {
  return { security: SECURITY, "x-required-scopes": [] as Scope[] };
}

export function registerSecuritySchemes(app: OpenAPIHono<AppEnv>) {
  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    description: "An API key: `Authorization: Bearer jobs_…`",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "apiKeyHeader", {
    type: "apiKey",
    in: "header",
    name: "X-API-Key",
    description: "The same API key in the `X-API-Key` header",
  });
}
