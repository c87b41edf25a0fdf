import { createRoute, z } from "@hono/zod-openapi";
import { createRouter } from "../app";
import { currentRevision } from "../db/revision";
import { ApiError } from "../middleware/errors";
import { errorResponses } from "../schemas/error";

const HealthSchema = z
  .object({
    status: z.literal("ok"),
    database: z.literal("ok"),
    revision: z.number().int().openapi({ description: "The store's current revision" }),
  })
  .openapi("Health");

export const getHealth = createRoute({
  method: "get",
  path: "/health",
  operationId: "getHealth",
  tags: ["service"],
  summary: "Health",
  description: "Whether the service and its D1 database answer. No key needed.",
  security: [],
  responses: {
    200: { description: "Healthy", content: { "application/json": { schema: HealthSchema } } },
    ...errorResponses(503),
  },
});

export const health = createRouter().openapi(getHealth, async (c) => {
  let revision: number;
  try {
    revision = await currentRevision(c.var.db);
  } catch {
    throw new ApiError(503, "database unavailable", "D1 did not answer", { "Retry-After": "5" });
  }
  return c.json({ status: "ok" as const, database: "ok" as const, revision }, 200);
});
