import { z } from "@hono/zod-openapi";

export const ErrorSchema = z
  .object({
    error: z.string().openapi({ description: "What went wrong, for a person" }),
    details: z.string().optional().openapi({ description: "More about it, when there is more" }),
    code: z.number().int().openapi({ description: "The HTTP status, repeated" }),
  })
  .openapi("Error", {
    example: { error: "job not found: 3f0c…", code: 404 },
  });

export type ErrorBody = z.infer<typeof ErrorSchema>;

const descriptions = {
  400: "The request is malformed: a bad id, query parameter or body",
  401: "No API key, or an unknown, revoked or expired one",
  403: "The API key lacks the scope this operation requires",
  404: "No such resource",
  409: "The request conflicts with the resource's current state",
  413: "The request body (or the operation in it) is too large",
  412: "If-Match names a revision the job is no longer at; nothing was written",
  415: "The request body is not application/json",
  422: "The Idempotency-Key was already used for a different request; nothing was written",
  429: "Too many requests for this API key; retry after `Retry-After` seconds",
  500: "An unexpected failure; nothing was half-written",
  503: "The database is unavailable for a moment; retry after the given delay",
} as const;

export type DocumentedErrorStatus = keyof typeof descriptions;

type ErrorResponse = {
  description: string;
  content: { "application/json": { schema: typeof ErrorSchema } };
};

/** The OpenAPI `responses` entries for the error statuses an operation can return. */
export function errorResponses<S extends DocumentedErrorStatus>(
  ...statuses: S[]
): Record<S, ErrorResponse> {
  const responses = {} as Record<S, ErrorResponse>;
  for (const status of statuses) {
    responses[status] = {
      description: descriptions[status],
      content: { "application/json": { schema: ErrorSchema } },
    };
  }
  return responses;
}
