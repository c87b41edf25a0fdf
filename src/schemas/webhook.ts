import { z } from "@hono/zod-openapi";
import { Timestamp } from "./timestamp";

export const WEBHOOK_EVENTS = [
  "job.created",
  "job.completed",
  "job.failed",
  "job.partial_failure",
  "job.skipped",
  "job.cancelled",
  "job.retried",
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export const WebhookIdParamsSchema = z.object({
  id: z
    .string()
    .regex(/^wh_[0-9a-f]{32}$/, "must be a webhook id (wh_…)")
    .openapi({ param: { name: "id", in: "path" }, example: "wh_0f8c2f2b9d4e4b7a8e6f1a2b3c4d5e6f" }),
});

export const DeliveryParamsSchema = WebhookIdParamsSchema.extend({
  delivery_id: z
    .string()
    .regex(/^msg_[0-9a-f]{32}$/, "must be a delivery id (msg_…)")
    .openapi({ param: { name: "delivery_id", in: "path" } }),
});

const FilterSchema = z
  .strictObject({
    target_hostname: z.string().min(1).max(300).optional(),
    operation_type: z.string().min(1).max(300).optional(),
  })
  .openapi("WebhookFilter", {
    description: "Only jobs with this target and/or operation type",
  });

export const CreateWebhookBodySchema = z
  .strictObject({
    url: z.string().max(2048).openapi({
      description:
        "Where to POST: https, and not a loopback, private or link-local host (unless listed in WEBHOOK_ALLOW_HOSTS). Redirects are not followed.",
      example: "https://hooks.example.com/jobs",
    }),
    events: z
      .array(z.enum(WEBHOOK_EVENTS))
      .min(1)
      .refine((events) => new Set(events).size === events.length, {
        message: "must not repeat an event",
      })
      .openapi({ description: "The events to send" }),
    filter: FilterSchema.optional(),
  })
  .openapi("CreateWebhookRequest", {
    example: {
      url: "https://hooks.example.com/jobs",
      events: ["job.completed", "job.failed"],
      filter: { operation_type: "node.hostname.get" },
    },
  });

export const WebhookSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    events: z.array(z.enum(WEBHOOK_EVENTS)),
    filter: FilterSchema.nullable(),
    created_at: Timestamp,
    rotated_at: Timestamp.nullable(),
  })
  .openapi("Webhook");

export const CreatedWebhookSchema = WebhookSchema.extend({
  secret: z.string().openapi({
    description:
      "The signing secret (Standard Webhooks `whsec_…`): shown only now. Verify `Webhook-Signature` with it.",
  }),
}).openapi("CreatedWebhook");

export const WebhookSecretSchema = z
  .object({ id: z.string(), secret: z.string(), rotated_at: Timestamp })
  .openapi("WebhookSecret");

export const WebhookListSchema = z.object({ items: z.array(WebhookSchema) }).openapi("WebhookList");

export const DELIVERY_STATUSES = ["pending", "delivered", "failed"] as const;

export const DeliverySchema = z
  .object({
    id: z.string().openapi({ description: "The `Webhook-Id` of every attempt of this delivery" }),
    event_type: z.string(),
    job_id: z.string().nullable(),
    status: z.enum(DELIVERY_STATUSES),
    attempts: z.number().int(),
    last_status: z.number().int().nullable().openapi({
      description: "The receiver's last HTTP status; null when it did not answer",
    }),
    last_error: z.string().nullable(),
    created_at: Timestamp,
    updated_at: Timestamp,
    payload: z.record(z.string(), z.unknown()),
  })
  .openapi("WebhookDelivery");

export const DeliveryListQuerySchema = z.strictObject({
  status: z.enum(DELIVERY_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
});

export const DeliveryListSchema = z
  .object({ items: z.array(DeliverySchema) })
  .openapi("WebhookDeliveryList");

export const DeliveryQueuedSchema = z
  .object({ delivery_id: z.string(), status: z.literal("pending") })
  .openapi("WebhookDeliveryQueued");

export type Webhook = z.infer<typeof WebhookSchema>;
export type Delivery = z.infer<typeof DeliverySchema>;
