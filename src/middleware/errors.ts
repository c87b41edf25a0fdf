import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppEnv } from "../app";
import { ERROR_STATUSES, type ErrorBody, type ErrorType } from "../schemas/error";

/** The kind an error has when it is thrown with a bare status. */
const GENERIC: Partial<Record<number, ErrorType>> = {
  400: "invalid_request",
  401: "unauthenticated",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  409: "conflict",
  412: "precondition_failed",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "idempotency_key_reused",
  429: "rate_limited",
  503: "unavailable",
};

/**
 * The one error type the service throws; onError turns it into the error shape. Thrown with an
 * error kind (`"job_not_found"`) it takes that kind's status; with a bare status, the generic kind.
 */
export class ApiError extends Error {
  readonly status: ContentfulStatusCode;
  readonly type: ErrorType;

  constructor(
    kind: ErrorType | ContentfulStatusCode,
    message: string,
    readonly details?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    if (typeof kind === "string") {
      this.type = kind;
      this.status = ERROR_STATUSES[kind];
    } else {
      this.status = kind;
      this.type = GENERIC[kind] ?? (kind >= 500 ? "internal_error" : "invalid_request");
    }
  }

  get body(): ErrorBody {
    const { type, message: error, details, status: code } = this;
    return details === undefined ? { type, error, code } : { type, error, details, code };
  }
}

function respond(c: Context<AppEnv>, err: ApiError) {
  for (const [name, value] of Object.entries(err.headers)) c.header(name, value);
  return c.json(err.body, err.status);
}

const TRANSIENT_D1 =
  /Network connection lost|D1 DB is overloaded|reset because its code was updated|caused object to be reset|Cannot resolve D1 DB due to transient issue|internal error; reference/i;

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    if (status === 415) {
      return new ApiError(
        "unsupported_media_type",
        "unsupported media type",
        "send the body as Content-Type: application/json",
      );
    }
    if (status === 400 && /JSON/i.test(err.message))
      return new ApiError("malformed_json", "malformed JSON in request body");
    return new ApiError(status, err.message || "request refused");
  }
  if (err instanceof Error && TRANSIENT_D1.test(err.message)) {
    return new ApiError(
      "unavailable",
      "database temporarily unavailable",
      "retry after a short delay",
      {
        "Retry-After": "1",
      },
    );
  }
  return new ApiError("internal_error", "internal error");
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

/**
 * 404 for an unknown path; 405 with `Allow` when the path exists under other methods. A path is
 * the most specific template that matches it: `/job/retry` is that path, not `/job/{id}`.
 */
export function notFoundOrMethodNotAllowed(routes: readonly RouteEntry[]): NotFoundHandler<AppEnv> {
  let table: { pattern: RegExp; literals: number; method: string }[] | undefined;
  return (c) => {
    table ??= routes
      .filter((route) => route.method !== "ALL")
      .map((route) => ({
        pattern: compile(route.path),
        literals: route.path.split("/").filter((s) => s && !s.startsWith(":")).length,
        method: route.method,
      }));
    const matching = table.filter((r) => r.pattern.test(c.req.path));
    const specific = Math.max(...matching.map((r) => r.literals));
    const allowed = [
      ...new Set(matching.filter((r) => r.literals === specific).map((r) => r.method)),
    ];
    if (allowed.length > 0) {
      return respond(
        c,
        new ApiError(
          "method_not_allowed",
          "method not allowed",
          `${c.req.method} ${c.req.path}; allowed: ${allowed.join(", ")}`,
          {
            Allow: allowed.join(", "),
          },
        ),
      );
    }
    return respond(
      c,
      new ApiError("not_found", "not found", `no route for ${c.req.method} ${c.req.path}`),
    );
  };
}
