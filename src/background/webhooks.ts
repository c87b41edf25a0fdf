import { toHex } from "../auth/api-key";
import { decryptSecret, signWebhook } from "../auth/webhook-secret";
import {
  type ChangedJob,
  type ChangeEvent,
  findDeliveryToSend,
  type HookRoute,
  insertDeliveries,
  type NewDelivery,
  readChanges,
  recordAttempt,
} from "../db/webhooks";
import { deriveStatus, FINAL_STATUSES } from "../domain/status";
import type { WebhookEvent } from "../schemas/webhook";

/**
 * Webhooks ride one Cloudflare Queue, produced and consumed by this Worker:
 *
 * - A write that changed jobs tells the fleet object (src/background/wakeups.ts), which, while any webhook
 *   exists, enqueues `changes` {revision, jobs}: the write is never held up by a receiver.
 * - The consumer turns `changes` into webhook events by reading the jobs' events up to that
 *   revision (created, retried, and a final status reached), stores a delivery per event and
 *   matching webhook (its id derived from what it delivers, so a repeated message adds nothing),
 *   and enqueues `deliver` for each.
 * - Bodies are small: ids, statuses and texts cut to MAX_TEXT characters; never a job's result.
 * - `deliver` POSTs the stored body, signed the Standard Webhooks way, without following
 *   redirects and with a timeout; a non-2xx or no answer is retried with backoff, and recorded as
 *   failed after MAX_ATTEMPTS (GET /webhooks/{id}/deliveries shows it; it can be sent again).
 */

export type WebhookMessage =
  | { kind: "changes"; revision: number; jobs: string[] }
  | { kind: "deliver"; id: string };

export const MAX_ATTEMPTS = 8;
const TIMEOUT_MS = 10_000;

/** Seconds before attempt n + 1: 5, 10, 20, … at most 10 minutes. */
export function backoffSeconds(attempts: number): number {
  return Math.min(600, 5 * 2 ** Math.max(0, attempts - 1));
}

type Emitted = {
  type: WebhookEvent;
  job: ChangedJob;
  timestamp: string;
  data: Record<string, unknown>;
};

/** Bodies stay small whatever a job carries: long texts are cut to this many characters. */
const MAX_TEXT = 1000;

function capped(text: string): string {
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
}

function parsed(data: string | null): Record<string, unknown> {
  return data === null ? {} : (JSON.parse(data) as Record<string, unknown>);
}

/** What a write at `revision` did to each job, as webhook events. */
export function webhookEvents(
  jobs: ChangedJob[],
  events: ChangeEvent[],
  revision: number,
): Emitted[] {
  const out: Emitted[] = [];
  for (const job of jobs) {
    const mine = events.filter((e) => e.job_id === job.id);
    const now = mine.filter((e) => e.revision === revision);
    if (now.length === 0) continue;
    for (const e of now) {
      if (e.event === "submitted")
        out.push({ type: "job.created", job, timestamp: e.created_at, data: {} });
      if (e.event === "retried") {
        const data = parsed(e.data);
        out.push({
          type: "job.retried",
          job,
          timestamp: e.created_at,
          data: {
            new_job_id: data.new_job_id,
            automatic: data.automatic === true,
            operation_changed: data.operation_changed === true,
            delay_seconds: data.delay_seconds ?? null,
          },
        });
      }
    }
    const before = deriveStatus(mine.filter((e) => e.revision < revision));
    const after = deriveStatus(mine);
    if (FINAL_STATUSES.has(after) && after !== before) {
      const last = now.at(-1) as ChangeEvent;
      const error = parsed(last.data).error;
      out.push({
        type: `job.${after}` as WebhookEvent,
        job,
        timestamp: last.created_at,
        data: { status: after, ...(typeof error === "string" ? { error: capped(error) } : {}) },
      });
    }
  }
  return out;
}

function routes(hook: HookRoute, e: Emitted): boolean {
  return (
    hook.events.includes(e.type) &&
    (!hook.filter?.target_hostname || hook.filter.target_hostname === e.job.target_hostname) &&
    (!hook.filter?.operation_type || hook.filter.operation_type === e.job.operation_type)
  );
}

async function deliveryId(...parts: unknown[]): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("|")));
  return `msg_${toHex(new Uint8Array(digest)).slice(0, 32)}`;
}

/** The body every receiver gets: `{type, timestamp, data}` (Standard Webhooks). */
export function webhookBody(
  type: string,
  timestamp: string,
  data: Record<string, unknown>,
): string {
  return JSON.stringify({ type, timestamp, data });
}

async function fanOut(env: Env, message: { revision: number; jobs: string[] }): Promise<void> {
  const { jobs, events, hooks } = await readChanges(env.DB, message.jobs, message.revision);
  if (hooks.length === 0) return;
  const rows: NewDelivery[] = [];
  for (const e of webhookEvents(jobs, events, message.revision)) {
    for (const hook of hooks.filter((h) => routes(h, e))) {
      rows.push({
        id: await deliveryId(hook.id, e.job.id, message.revision, e.type, e.data.new_job_id),
        webhook_id: hook.id,
        event_type: e.type,
        job_id: e.job.id,
        payload: webhookBody(e.type, e.timestamp, {
          job_id: e.job.id,
          target_hostname: e.job.target_hostname,
          operation_type: capped(e.job.operation_type),
          attempt: e.job.attempt,
          root_job_id: e.job.root_job_id,
          retry_of: e.job.retry_of,
          revision: message.revision,
          ...e.data,
        }),
      });
    }
  }
  if (rows.length === 0) return;
  await insertDeliveries(env.DB, rows, new Date().toISOString());
  await env.WEBHOOK_QUEUE.sendBatch(rows.map((r) => ({ body: { kind: "deliver", id: r.id } })));
}

/** One attempt: true when it is settled (delivered, or failed for good), false to try again. */
async function deliver(env: Env, id: string, attempts: number): Promise<boolean> {
  const delivery = await findDeliveryToSend(env.DB, id);
  if (!delivery || delivery.status === "delivered") return true;
  const secret = await decryptSecret(env, delivery.secret_ciphertext);
  const timestamp = Math.floor(Date.now() / 1000);
  let httpStatus: number | null = null;
  let error: string | null = null;
  try {
    const response = await fetch(delivery.url, {
      method: "POST",
      redirect: "manual",
      signal: AbortSignal.timeout(TIMEOUT_MS),
      headers: {
        "Content-Type": "application/json",
        "User-Agent": "edge-jobs-webhooks/1",
        "Webhook-Id": id,
        "Webhook-Timestamp": String(timestamp),
        "Webhook-Signature": await signWebhook(secret, id, timestamp, delivery.payload),
      },
      body: delivery.payload,
    });
    httpStatus = response.status;
    await response.body?.cancel();
    if (response.status >= 300 && response.status < 400)
      error = `redirect not followed (${response.status})`;
    else if (!response.ok) error = `HTTP ${response.status}`;
  } catch (e) {
    error =
      e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError")
        ? `no answer within ${TIMEOUT_MS / 1000} s`
        : `could not connect: ${e instanceof Error ? e.message : String(e)}`;
  }
  const settled = error === null || attempts >= MAX_ATTEMPTS;
  await recordAttempt(env.DB, id, {
    status: error === null ? "delivered" : settled ? "failed" : "pending",
    httpStatus,
    error,
    now: new Date().toISOString(),
  });
  return settled;
}

/** The queue consumer. */
export async function handleWebhookBatch(
  batch: MessageBatch<WebhookMessage>,
  env: Env,
): Promise<void> {
  for (const message of batch.messages) {
    try {
      const body = message.body;
      if (body.kind === "changes") {
        await fanOut(env, body);
        message.ack();
      } else if (await deliver(env, body.id, message.attempts)) message.ack();
      else message.retry({ delaySeconds: backoffSeconds(message.attempts) });
    } catch {
      message.retry({ delaySeconds: backoffSeconds(message.attempts) });
    }
  }
}
