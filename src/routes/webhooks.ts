import { createRoute } from "@hono/zod-openapi";
import { createRouter } from "../app";
import { canKeepSecrets, encryptSecret, newWebhookSecret } from "../auth/webhook-secret";
import { webhooksChanged } from "../background/wakeups";
import { type WebhookMessage, webhookBody } from "../background/webhooks";
import {
  deleteWebhook,
  insertDeliveries,
  insertWebhook,
  listDeliveries,
  listWebhooks,
  resetDelivery,
  rotateWebhookSecret,
} from "../db/webhooks";
import { webhookUrlProblem } from "../domain/webhook-url";
import { ApiError } from "../middleware/errors";
import { errorResponses } from "../schemas/error";
import {
  CreatedWebhookSchema,
  CreateWebhookBodySchema,
  DeliveryListQuerySchema,
  DeliveryListSchema,
  DeliveryParamsSchema,
  DeliveryQueuedSchema,
  WebhookIdParamsSchema,
  WebhookListSchema,
  WebhookSecretSchema,
} from "../schemas/webhook";
import { requires } from "./security";

const json = <T>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

function hex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");
}

function notFound(id: string) {
  return new ApiError("webhook_not_found", `webhook not found: ${id}`);
}

function secretsUnavailable() {
  return new ApiError(
    "webhooks_not_configured",
    "webhooks are not configured",
    "set the Worker secret WEBHOOK_SECRET_KEY (32 random bytes, base64): wrangler secret put WEBHOOK_SECRET_KEY",
  );
}

export const createWebhookRoute = createRoute({
  tags: ["webhooks"],
  ...requires("admin"),
  method: "post",
  path: "/webhooks",
  operationId: "createWebhook",
  summary: "Register a webhook",
  description:
    "Events of writes made after this answers: job events (`job.created`, `job.completed`, `job.failed`, `job.partial_failure`, `job.skipped`, `job.cancelled`, `job.retried`) matching `events` and `filter` are POSTed to `url` as `{type, timestamp, data}`, signed the Standard Webhooks way (`Webhook-Id`, `Webhook-Timestamp`, `Webhook-Signature`), at least once, through a queue: a write never waits for a receiver. The signing secret is in this answer only.",
  request: {
    body: { required: true, content: { "application/json": { schema: CreateWebhookBodySchema } } },
  },
  responses: {
    201: json(CreatedWebhookSchema, "The webhook, with its signing secret (shown only now)"),
    ...errorResponses(400, 401, 403, 415, 429, 500, 503),
  },
});

export const listWebhooksRoute = createRoute({
  tags: ["webhooks"],
  ...requires("admin"),
  method: "get",
  path: "/webhooks",
  operationId: "listWebhooks",
  summary: "List webhooks",
  description: "Every webhook, oldest first, without secrets.",
  responses: {
    200: json(WebhookListSchema, "The webhooks"),
    ...errorResponses(401, 403, 429, 500, 503),
  },
});

export const deleteWebhookRoute = createRoute({
  tags: ["webhooks"],
  ...requires("admin"),
  method: "delete",
  path: "/webhooks/{id}",
  operationId: "deleteWebhook",
  summary: "Delete a webhook",
  description: "The webhook and its deliveries go; nothing more is sent to it.",
  request: { params: WebhookIdParamsSchema },
  responses: {
    204: { description: "Deleted" },
    ...errorResponses(400, 401, 403, 404, 429, 500, 503),
  },
});

export const testWebhookRoute = createRoute({
  tags: ["webhooks"],
  ...requires("admin"),
  method: "post",
  path: "/webhooks/{id}/test",
  operationId: "testWebhook",
  summary: "Send a test event",
  description:
    "Queues a `webhook.test` event to the webhook, signed like any other; its fate shows in the deliveries.",
  request: { params: WebhookIdParamsSchema },
  responses: {
    202: json(DeliveryQueuedSchema, "Queued"),
    ...errorResponses(400, 401, 403, 404, 429, 500, 503),
  },
});

export const rotateWebhookSecretRoute = createRoute({
  tags: ["webhooks"],
  ...requires("admin"),
  method: "post",
  path: "/webhooks/{id}/rotate-secret",
  operationId: "rotateWebhookSecret",
  summary: "Rotate a webhook's signing secret",
  description:
    "A new signing secret, shown only in this answer; every delivery from now on (retries included) is signed with it.",
  request: { params: WebhookIdParamsSchema },
  responses: {
    200: json(WebhookSecretSchema, "The new secret"),
    ...errorResponses(400, 401, 403, 404, 429, 500, 503),
  },
});

export const listDeliveriesRoute = createRoute({
  tags: ["webhooks"],
  ...requires("admin"),
  method: "get",
  path: "/webhooks/{id}/deliveries",
  operationId: "listWebhookDeliveries",
  summary: "List a webhook's deliveries",
  description:
    "Newest first: each event sent or to be sent, how many attempts it took, the receiver's last status and error. `failed` ones ran out of attempts and can be sent again.",
  request: { params: WebhookIdParamsSchema, query: DeliveryListQuerySchema },
  responses: {
    200: json(DeliveryListSchema, "The deliveries"),
    ...errorResponses(400, 401, 403, 404, 429, 500, 503),
  },
});

export const resendDeliveryRoute = createRoute({
  tags: ["webhooks"],
  ...requires("admin"),
  method: "post",
  path: "/webhooks/{id}/deliveries/{delivery_id}/resend",
  operationId: "resendWebhookDelivery",
  summary: "Send a delivery again",
  description:
    "Queues the same body again, under the same `Webhook-Id` (receivers that deduplicate see a repeat).",
  request: { params: DeliveryParamsSchema },
  responses: {
    202: json(DeliveryQueuedSchema, "Queued"),
    ...errorResponses(400, 401, 403, 404, 429, 500, 503),
  },
});

function enqueue(env: Env, message: WebhookMessage) {
  return env.WEBHOOK_QUEUE.send(message);
}

export const webhooks = createRouter()
  .openapi(createWebhookRoute, async (c) => {
    const body = c.req.valid("json");
    const problem = webhookUrlProblem(body.url, c.env.WEBHOOK_ALLOW_HOSTS ?? "");
    if (problem)
      throw new ApiError("invalid_webhook_url", "invalid request body", `url: ${problem}`);
    if (!canKeepSecrets(c.env)) throw secretsUnavailable();
    const secret = newWebhookSecret();
    const hook = await insertWebhook(c.var.db, {
      id: `wh_${hex(16)}`,
      url: body.url,
      events: body.events,
      filter: body.filter ?? null,
      secretCiphertext: await encryptSecret(c.env, secret),
      now: new Date().toISOString(),
    });
    await webhooksChanged(c.env);
    return c.json({ ...hook, secret }, 201);
  })
  .openapi(listWebhooksRoute, async (c) => c.json({ items: await listWebhooks(c.var.db) }, 200))
  .openapi(deleteWebhookRoute, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await deleteWebhook(c.var.db, id))) throw notFound(id);
    await webhooksChanged(c.env);
    return c.body(null, 204);
  })
  .openapi(testWebhookRoute, async (c) => {
    const { id } = c.req.valid("param");
    const now = new Date().toISOString();
    const delivery = `msg_${hex(16)}`;
    const stored = await insertDeliveries(
      c.var.db,
      [
        {
          id: delivery,
          webhook_id: id,
          event_type: "webhook.test",
          job_id: null,
          payload: webhookBody("webhook.test", now, { webhook_id: id }),
        },
      ],
      now,
    );
    if (stored === 0) throw notFound(id);
    await enqueue(c.env, { kind: "deliver", id: delivery });
    return c.json({ delivery_id: delivery, status: "pending" as const }, 202);
  })
  .openapi(rotateWebhookSecretRoute, async (c) => {
    const { id } = c.req.valid("param");
    if (!canKeepSecrets(c.env)) throw secretsUnavailable();
    const secret = newWebhookSecret();
    const now = new Date().toISOString();
    if (!(await rotateWebhookSecret(c.var.db, id, await encryptSecret(c.env, secret), now)))
      throw notFound(id);
    return c.json({ id, secret, rotated_at: now }, 200);
  })
  .openapi(listDeliveriesRoute, async (c) => {
    const { id } = c.req.valid("param");
    const items = await listDeliveries(c.var.db, id, c.req.valid("query"));
    if (items === null) throw notFound(id);
    return c.json({ items }, 200);
  })
  .openapi(resendDeliveryRoute, async (c) => {
    const { id, delivery_id } = c.req.valid("param");
    if (!(await resetDelivery(c.var.db, id, delivery_id, new Date().toISOString())))
      throw new ApiError("delivery_not_found", `delivery not found: ${delivery_id}`);
    await enqueue(c.env, { kind: "deliver", id: delivery_id });
    return c.json({ delivery_id, status: "pending" as const }, 202);
  });
