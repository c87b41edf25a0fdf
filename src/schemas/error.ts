import { z } from "@hono/zod-openapi";

/** Every kind of error the service answers with, and its HTTP status: clients branch on the kind. */
export const ERROR_STATUSES = {
  invalid_request: 400,
  invalid_body: 400,
  invalid_query: 400,
  invalid_path: 400,
  invalid_header: 400,
  malformed_json: 400,
  invalid_authorization: 400,
  target_not_found: 400,
  invalid_operation_patch: 400,
  invalid_webhook_url: 400,
  unauthenticated: 401,
  invalid_api_key: 401,
  insufficient_scope: 403,
  forbidden: 403,
  not_found: 404,
  job_not_found: 404,
  agent_not_found: 404,
  key_not_found: 404,
  webhook_not_found: 404,
  delivery_not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  lease_expired: 409,
  lease_superseded: 409,
  unknown_lease_token: 409,
  already_started: 409,
  already_finished: 409,
  key_not_active: 409,
  cancelled: 409,
  job_finished: 409,
  precondition_failed: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  idempotency_key_reused: 422,
  rate_limited: 429,
  too_many_failed_authentications: 429,
  internal_error: 500,
  unavailable: 503,
  webhooks_not_configured: 503,
} as const satisfies Record<string, number>;

export type ErrorType = keyof typeof ERROR_STATUSES;
export const ERROR_TYPES = Object.keys(ERROR_STATUSES) as [ErrorType, ...ErrorType[]];

export const ErrorTypeSchema = z.enum(ERROR_TYPES).openapi("ErrorType", {
  description:
    "What went wrong, for a program: branch on this, not on `error`. Each kind has one HTTP status; a kind may be added in a later version.",
});

export const ErrorSchema = z
  .object({
    type: ErrorTypeSchema,
    error: z.string().openapi({ description: "What went wrong, for a person" }),
    details: z.string().optional().openapi({ description: "More about it, when there is more" }),
    code: z.number().int().openapi({ description: "The HTTP status, repeated" }),
  })
  .openapi("Error", {
    example: {
      type: "job_not_found",
      error: "job not found: 5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10",
      code: 404,
    },
  });

/** The `params` of a refinement whose failure means "too large": the answer is 413, not 400. */
export const TOO_LARGE = { tooLarge: true } as const;

export type ErrorBody = z.infer<typeof ErrorSchema>;

const string = { type: "string" as const };

const retryAfter = {
  "Retry-After": { description: "Seconds to wait before trying again", schema: string },
};
const challenge = {
  "WWW-Authenticate": { description: "The Bearer challenge (RFC 6750 §3)", schema: string },
};
const etag = { ETag: { description: "The job's current entity tag", schema: string } };

const responses = {
  400: { description: "The request is malformed: a bad id, query parameter, header or body" },
  401: {
    description: "No API key, or an unknown, revoked or expired one",
    headers: challenge,
  },
  403: {
    description:
      "The API key lacks the scope this operation requires, or may not act as this agent",
    headers: challenge,
  },
  404: { description: "No such resource" },
  405: {
    description: "The path exists, but not with this method",
    headers: { Allow: { description: "The methods this path answers", schema: string } },
  },
  409: { description: "The request conflicts with the resource's current state" },
  412: {
    description:
      "If-Match names a revision the job is no longer at, or If-None-Match matches it; nothing was written",
    headers: etag,
  },
  413: { description: "The request body (or the operation or result in it) is too large" },
  415: { description: "The request body is not application/json" },
  422: {
    description:
      "The Idempotency-Key was already used for a different request; nothing was written",
  },
  429: {
    description:
      "Too many requests for this API key, or too many failed authentications from this address; retry after `Retry-After` seconds",
    headers: retryAfter,
  },
  500: { description: "An unexpected failure; nothing was half-written" },
  503: {
    description: "The database is unavailable for a moment; retry after the given delay",
    headers: retryAfter,
  },
} as const;

export type DocumentedErrorStatus = Exclude<keyof typeof responses, 405>;

type ErrorResponse = {
  description: string;
  headers?: Record<string, { description: string; schema: typeof string }>;
  content: { "application/json": { schema: typeof ErrorSchema } };
};

/**
 * The OpenAPI `responses` entries for the error statuses an operation can return, and 405, which
 * every path answers to the methods it does not have.
 */
export function errorResponses<S extends DocumentedErrorStatus>(
  ...statuses: S[]
): Record<S | 405, ErrorResponse> {
  const entries = {} as Record<S | 405, ErrorResponse>;
  for (const status of [...statuses, 405 as const]) {
    entries[status] = {
      ...(responses[status] as Omit<ErrorResponse, "content">),
      content: { "application/json": { schema: ErrorSchema } },
    };
  }
  return entries;
}
