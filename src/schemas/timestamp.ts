import { z } from "@hono/zod-openapi";

/** Every time the service answers with: RFC 3339 in UTC with milliseconds. */
export const Timestamp = z.string().openapi({
  format: "date-time",
  example: "2026-11-28T10:00:00.123Z",
});
