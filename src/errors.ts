import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppEnv } from "./app";
import type { ErrorBody } from "./schemas/error";

/** The one error type the service throws; onError turns it into the error shape. */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly details?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function errorBody(status: number, error: string, details?: string): ErrorBody {
  return details === undefined ? { error, code: status } : { error, details, code: status };
}

function respond(c: Context<AppEnv>, err: ApiError) {
  for (const [name, value] of Object.entries(err.headers)) c.header(name, value);
  return c.json(errorBody(err.status, err.message, err.details), err.status);
}

const TRANSIENT_D1 =
  /Network connection lost|D1 DB is overloaded|reset because its code was updated|caused object to be reset|Cannot resolve D1 DB due to transient issue|internal error; reference/i;

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    if (status === 415) {
      return new ApiError(
        415,
        "unsupported media type",
        "send the body as Content-Type: application/json",
      );
    }
    if (status === 400 && /JSON/i.test(err.message))
      return new ApiError(400, "malformed JSON in request body");
    return new ApiError(status, err.message || "request refused");
  }
  if (err instanceof Error && TRANSIENT_D1.test(err.message)) {
    return new ApiError(503, "database temporarily unavailable", "retry after a short delay", {
      "Retry-After": "1",
    });
  }
  return new ApiError(500, "internal error");
}

/** Every error answers in the error shape; a 5xx is logged by the request log, with its message. */
export const onError: ErrorHandler<AppEnv> = (err, c) => respond(c, toApiError(err));

type RouteEntry = { method: string; path: string };

function compile(path: string) {
  const pattern = path
    .split("/")
    .map((segment) =>
      segment.startsWith(":") ? "[^/]+" : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"),
    )
    .join("/");
  return new RegExp(`^${pattern}$`);
}

/** 404 for an unknown path; 405 with `Allow` when the path exists under other methods. */
export function notFoundOrMethodNotAllowed(routes: readonly RouteEntry[]): NotFoundHandler<AppEnv> {
  let table: { pattern: RegExp; method: string }[] | undefined;
  return (c) => {
    table ??= routes
      .filter((route) => route.method !== "ALL")
      .map((route) => ({ pattern: compile(route.path), method: route.method }));
    const allowed = [
      ...new Set(table.filter((r) => r.pattern.test(c.req.path)).map((r) => r.method)),
    ];
    if (allowed.length > 0) {
      return respond(
        c,
        new ApiError(
          405,
          "method not allowed",
          `${c.req.method} ${c.req.path}; allowed: ${allowed.join(", ")}`,
          {
            Allow: allowed.join(", "),
          },
        ),
      );
    }
    return respond(c, new ApiError(404, "not found", `no route for ${c.req.method} ${c.req.path}`));
  };
}
