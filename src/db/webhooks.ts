import type { EventName, JobStatus } from "../domain/status";
import type { Delivery, Webhook, WebhookEvent } from "../schemas/webhook";
import type { Db } from "./session";

type WebhookRow = {
  id: string;
  url: string;
  events: string;
  filter: string | null;
  created_at: string;
  rotated_at: string | null;
};

const WEBHOOK_COLUMNS = "id, url, events, filter, created_at, rotated_at";

function toWebhook(row: WebhookRow): Webhook {
  return {
    id: row.id,
    url: row.url,
    events: JSON.parse(row.events) as WebhookEvent[],
    filter: row.filter === null ? null : (JSON.parse(row.filter) as Webhook["filter"]),
    created_at: row.created_at,
    rotated_at: row.rotated_at,
  };
}

export async function insertWebhook(
  db: Db,
  hook: Omit<Webhook, "rotated_at" | "created_at"> & { secretCiphertext: string; now: string },
): Promise<Webhook> {
  const row = await db
    .prepare(
      `INSERT INTO webhooks (id, url, events, filter, secret_ciphertext, created_at)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING ${WEBHOOK_COLUMNS}`,
    )
    .bind(
      hook.id,
      hook.url,
      JSON.stringify(hook.events),
      hook.filter === null ? null : JSON.stringify(hook.filter),
      hook.secretCiphertext,
      hook.now,
    )
    .first<WebhookRow>();
  return toWebhook(row as WebhookRow);
}

export async function listWebhooks(db: Db): Promise<Webhook[]> {
  const { results } = await db
    .prepare(`SELECT ${WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id`)
    .all<WebhookRow>();
  return results.map(toWebhook);
}

export async function anyWebhooks(db: Db): Promise<boolean> {
  const row = await db
    .prepare("SELECT EXISTS (SELECT 1 FROM webhooks) AS any")
    .first<{ any: number }>();
  return row?.any === 1;
}

/** An event in commit order, for the sweep that finds changes the webhooks were not told of. */
export type FeedEvent = { seq: number; job_id: string; revision: number; created_at: string };

/** Events after `seq` in commit order (seq is the events' rowid: no index needed), a page at a time. */
export async function eventsAfter(db: Db, seq: number, limit: number): Promise<FeedEvent[]> {
  const { results } = await db
    .prepare(
      "SELECT seq, job_id, revision, created_at FROM job_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )
    .bind(seq, limit)
    .all<FeedEvent>();
  return results;
}

/** The newest event's seq: where a sweep starts that is to see only what happens from now on. */
export async function lastEventSeq(db: Db): Promise<number> {
  const row = await db
    .prepare("SELECT COALESCE(MAX(seq), 0) AS seq FROM job_events")
    .first<{ seq: number }>();
  return row?.seq ?? 0;
}

/** One batch: the webhook and its deliveries go. False when there was no such webhook. */
export async function deleteWebhook(db: Db, id: string): Promise<boolean> {
  const [, deleted] = await db.batch([
    db.prepare("DELETE FROM webhook_deliveries WHERE webhook_id = ?1").bind(id),
    db.prepare("DELETE FROM webhooks WHERE id = ?1").bind(id),
  ]);
  return (deleted?.meta.changes ?? 0) > 0;
}

export async function rotateWebhookSecret(
  db: Db,
  id: string,
  secretCiphertext: string,
  now: string,
): Promise<boolean> {
  const result = await db
    .prepare("UPDATE webhooks SET secret_ciphertext = ?2, rotated_at = ?3 WHERE id = ?1")
    .bind(id, secretCiphertext, now)
    .run();
  return result.meta.changes > 0;
}

export type ChangedJob = {
  id: string;
  target_hostname: string;
  operation_type: string;
  status: JobStatus;
  attempt: number;
  root_job_id: string;
  retry_of: string | null;
};

export type ChangeEvent = {
  job_id: string;
  event: EventName;
  hostname: string;
  created_at: string;
  revision: number;
  data: string | null;
};

export type HookRoute = { id: string; events: WebhookEvent[]; filter: Webhook["filter"] };

/**
 * One read-only batch for the queue consumer: the jobs a write changed (and the jobs it created
 * from them), their events up to that write's revision, and every webhook's route.
 */
export async function readChanges(
  db: Db,
  jobIds: string[],
  revision: number,
): Promise<{ jobs: ChangedJob[]; events: ChangeEvent[]; hooks: HookRoute[] }> {
  const ids = `(SELECT value FROM json_each(?1) UNION
    SELECT json_extract(data, '$.new_job_id') FROM job_events
    WHERE job_id IN (SELECT value FROM json_each(?1)) AND event = 'retried' AND revision = ?2)`;
  const [jobs, events, hooks] = await db.batch([
    db
      .prepare(
        `SELECT id, target_hostname, json_extract(operation, '$.type') AS operation_type, status, attempt,
           root_job_id, retry_of FROM jobs WHERE id IN ${ids}`,
      )
      .bind(JSON.stringify(jobIds), revision),
    db
      .prepare(
        `SELECT job_id, event, hostname, created_at, revision, data FROM job_events
         WHERE job_id IN ${ids} AND revision <= ?2 ORDER BY seq`,
      )
      .bind(JSON.stringify(jobIds), revision),
    db.prepare("SELECT id, events, filter FROM webhooks"),
  ]);
  return {
    jobs: (jobs?.results ?? []) as ChangedJob[],
    events: (events?.results ?? []) as ChangeEvent[],
    hooks: ((hooks?.results ?? []) as { id: string; events: string; filter: string | null }[]).map(
      (h) => ({
        id: h.id,
        events: JSON.parse(h.events) as WebhookEvent[],
        filter: h.filter === null ? null : (JSON.parse(h.filter) as Webhook["filter"]),
      }),
    ),
  };
}

export type NewDelivery = {
  id: string;
  webhook_id: string;
  event_type: string;
  job_id: string | null;
  payload: string;
};

/**
 * The deliveries to make, once each (ids are derived from what they deliver), for webhooks that
 * still exist. Returns how many were stored.
 */
export async function insertDeliveries(db: Db, rows: NewDelivery[], now: string): Promise<number> {
  if (rows.length === 0) return 0;
  const result = await db
    .prepare(
      `INSERT OR IGNORE INTO webhook_deliveries (id, webhook_id, event_type, job_id, payload, created_at, updated_at)
       SELECT json_extract(value, '$.id'), json_extract(value, '$.webhook_id'), json_extract(value, '$.event_type'),
         json_extract(value, '$.job_id'), json_extract(value, '$.payload'), ?2, ?2
       FROM json_each(?1) WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = json_extract(value, '$.webhook_id'))`,
    )
    .bind(JSON.stringify(rows), now)
    .run();
  return result.meta.changes;
}

type DeliveryRow = Omit<Delivery, "payload"> & { payload: string };

const DELIVERY_COLUMNS =
  "id, event_type, job_id, status, attempts, last_status, last_error, created_at, updated_at, payload";

function toDelivery(row: DeliveryRow): Delivery {
  return { ...row, payload: JSON.parse(row.payload) as Record<string, unknown> };
}

/** A delivery to attempt, with where it goes and the secret to sign it with (encrypted). */
export async function findDeliveryToSend(
  db: Db,
  id: string,
): Promise<{ status: string; payload: string; url: string; secret_ciphertext: string } | null> {
  return db
    .prepare(
      `SELECT d.status, d.payload, w.url, w.secret_ciphertext FROM webhook_deliveries d
       JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = ?1`,
    )
    .bind(id)
    .first();
}

export async function recordAttempt(
  db: Db,
  id: string,
  attempt: {
    status: "pending" | "delivered" | "failed";
    httpStatus: number | null;
    error: string | null;
    now: string;
  },
): Promise<void> {
  await db
    .prepare(
      `UPDATE webhook_deliveries SET status = ?2, attempts = attempts + 1, last_status = ?3,
         last_error = ?4, updated_at = ?5 WHERE id = ?1`,
    )
    .bind(id, attempt.status, attempt.httpStatus, attempt.error, attempt.now)
    .run();
}

/** A webhook's deliveries, newest first; null when there is no such webhook. One round trip. */
export async function listDeliveries(
  db: Db,
  webhookId: string,
  query: { status?: string | undefined; limit: number },
): Promise<Delivery[] | null> {
  const [hook, rows] = await db.batch([
    db.prepare("SELECT 1 AS found FROM webhooks WHERE id = ?1").bind(webhookId),
    db
      .prepare(
        `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries INDEXED BY webhook_deliveries_hook
         WHERE webhook_id = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY created_at DESC, id DESC LIMIT ?3`,
      )
      .bind(webhookId, query.status ?? null, query.limit),
  ]);
  if ((hook?.results.length ?? 0) === 0) return null;
  return ((rows?.results ?? []) as DeliveryRow[]).map(toDelivery);
}

/** A delivery made due again (re-sent by hand): false when the webhook has no such delivery. */
export async function resetDelivery(
  db: Db,
  webhookId: string,
  deliveryId: string,
  now: string,
): Promise<boolean> {
  const result = await db
    .prepare(
      "UPDATE webhook_deliveries SET status = 'pending', updated_at = ?3 WHERE id = ?2 AND webhook_id = ?1",
    )
    .bind(webhookId, deliveryId, now)
    .run();
  return result.meta.changes > 0;
}
