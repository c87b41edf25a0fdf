import { type EventData, type StoredEvent, summarizeEvents } from "../domain/job-view";
import { type EventName, JOB_STATUSES, type JobStatus } from "../domain/status";
import {
  type Job,
  type JobAccepted,
  type JobSummary,
  MAX_OPERATION_BYTES,
  type Operation,
  type RetryPolicy,
} from "../schemas/job";
import { pageOf } from "../schemas/paging";
import { cancelledEventsSql, heldJobSeqs, OPEN_STATES, refreshJobs, targetFound } from "./agents";
import {
  findStoredResponse,
  type IdempotencyUse,
  idempotencyUnused,
  purgeAlongside,
  type StoredResponse,
  storeResponse,
} from "./idempotency";
import { beginWrite, type Condition, CURRENT_REVISION, SEQ_MARK } from "./revision";
import type { Db } from "./session";

type JobRow = {
  id: string;
  operation: string;
  target_hostname: string;
  status: JobStatus;
  created_at: string;
  updated_at: string;
  revision: number;
  retry_of: string | null;
  root_job_id: string;
  attempt: number;
  result: string | null;
  changed: number | null;
  error: string | null;
  hostname: string | null;
  retry_policy: string | null;
  not_before: string | null;
  retried_by: "manual" | "automatic" | null;
  operation_changed: number;
  cancel_requested: number;
  retries_exhausted: number;
};

type EventRow = { event: EventName; hostname: string; created_at: string; data: string | null };

const JOB_COLUMNS = `id, operation, target_hostname, status, created_at, updated_at, revision, retry_of,
  root_job_id, attempt, result, changed, error, hostname, retry_policy, not_before, retried_by,
  operation_changed, cancel_requested, retries_exhausted`;

export function toJobSummary(row: JobRow): JobSummary {
  const job: JobSummary = {
    id: row.id,
    status: row.status,
    created: row.created_at,
    updated_at: row.updated_at,
    operation: JSON.parse(row.operation) as Operation,
    target_hostname: row.target_hostname,
    revision: row.revision,
    root_job_id: row.root_job_id,
    attempt: row.attempt,
    changed: row.changed === null ? null : row.changed === 1,
    retry_policy: row.retry_policy === null ? null : (JSON.parse(row.retry_policy) as RetryPolicy),
    not_before: row.not_before,
    retried_by: row.retried_by,
    operation_changed: row.operation_changed === 1,
    cancel_requested: row.cancel_requested === 1,
    retries_exhausted: row.retries_exhausted === 1,
  };
  if (row.retry_of !== null) job.retry_of = row.retry_of;
  if (row.result !== null) job.result = JSON.parse(row.result) as unknown;
  if (row.error !== null) job.error = row.error;
  if (row.hostname !== null) job.hostname = row.hostname;
  return job;
}

function toStoredEvent(row: EventRow): StoredEvent {
  return {
    event: row.event,
    hostname: row.hostname,
    created_at: row.created_at,
    data: row.data === null ? null : (JSON.parse(row.data) as EventData),
  };
}

const ACCEPTED_BODY =
  "json_object('job_id', id, 'status', 'unprocessed', 'revision', revision, 'timestamp', created_at)";

/** What a guarded write did: applied, answered from an Idempotency-Key, or refused by its guard. */
export type WriteResult<T> =
  | { kind: "written"; value: T }
  | { kind: "replayed"; stored: StoredResponse }
  | { kind: "refused" };

function outcome<T>(
  value: T | undefined,
  stored: StoredResponse | undefined | null,
): WriteResult<T> {
  if (value !== undefined) return { kind: "written", value };
  if (stored) return { kind: "replayed", stored };
  return { kind: "refused" };
}

function parseBody<T>(row: { body: string } | undefined): T | undefined {
  return row ? (JSON.parse(row.body) as T) : undefined;
}

/** The job exists and, when `revisions` is given (If-Match), is at one of them. */
export function jobMatches(id: string, revisions?: number[]): Condition {
  return revisions === undefined
    ? { sql: "EXISTS (SELECT 1 FROM jobs WHERE id = ?)", params: [id] }
    : {
        sql: "EXISTS (SELECT 1 FROM jobs WHERE id = ? AND revision IN (SELECT value FROM json_each(?)))",
        params: [id, JSON.stringify(revisions)],
      };
}

function idempotencyStatements(
  db: Db,
  idem: IdempotencyUse | undefined,
  status: number,
  bodyQuery: string,
  ...params: unknown[]
) {
  return idem
    ? [
        storeResponse(db, idem, status, bodyQuery, ...params),
        findStoredResponse(db, idem),
        purgeAlongside(db, idem),
      ]
    : [];
}

export type NewJob = {
  id: string;
  operation: Operation;
  target: string;
  now: string;
  retryPolicy: RetryPolicy | null;
  notBefore: string | null;
  idempotency?: IdempotencyUse;
};

/** One batch: the job, its `submitted` event, the counters (by trigger) and the next revision. */
export async function insertJob(db: Db, job: NewJob): Promise<WriteResult<JobAccepted>> {
  const write = beginWrite(
    db,
    targetFound(job.target),
    ...(job.idempotency ? [idempotencyUnused(job.idempotency)] : []),
  );
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision,
           root_job_id, attempt, retry_policy, not_before)
         SELECT ?1, ?2, ?3, ?4, ?4, ${CURRENT_REVISION}, ${CURRENT_REVISION}, ?1, 1, ?5, ?6 WHERE ${write.applies}
         RETURNING ${ACCEPTED_BODY} AS body`,
      )
      .bind(
        job.id,
        JSON.stringify(job.operation),
        job.target,
        job.now,
        job.retryPolicy === null ? null : JSON.stringify(job.retryPolicy),
        job.notBefore,
      ),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT id, 'submitted', '_api', created_at, revision,
                json_object('target_hostname', target_hostname, 'operation_type', json_extract(operation, '$.type'))
         FROM jobs WHERE id = ?1`,
      )
      .bind(job.id),
    ...idempotencyStatements(
      db,
      job.idempotency,
      201,
      `SELECT ${ACCEPTED_BODY} AS body FROM jobs WHERE id = ?`,
      job.id,
    ),
  ]);
  return outcome(
    parseBody<JobAccepted>(results[1]?.results[0] as { body: string } | undefined),
    job.idempotency ? (results[4]?.results[0] as StoredResponse | undefined) : undefined,
  );
}

/** What the new job runs: the original's operation, a replacement, or a merge patch of it. */
export type OperationChange = { operation: Operation } | { patch: Record<string, unknown> } | null;

export type RetryRequest = {
  originalId: string;
  newId: string;
  target: string;
  now: string;
  change: OperationChange;
  /** undefined: the original's policy; null: none. */
  retryPolicy: RetryPolicy | null | undefined;
  resetAttempts: boolean;
  notBefore: string | null;
  ifMatch?: number[];
  idempotency?: IdempotencyUse;
};

/** A valid operation, as `OperationSchema` says, in SQL: what a merge patch must leave. */
function validOperationSql(op: string): string {
  return `(json_valid(${op}) AND json_type(${op}) = 'object' AND json_type(${op}, '$.type') = 'text'
    AND json_extract(${op}, '$.type') <> '' AND length(CAST(${op} AS BLOB)) <= ${MAX_OPERATION_BYTES})`;
}

/** The merge patch applied to the original's operation, for the error path: why it was refused. */
export async function patchedOperation(
  db: Db,
  id: string,
  patch: Record<string, unknown>,
): Promise<unknown> {
  const row = await db
    .prepare("SELECT json_patch(operation, ?2) AS op FROM jobs WHERE id = ?1")
    .bind(id, JSON.stringify(patch))
    .first<{ op: string | null }>();
  return row?.op == null ? undefined : JSON.parse(row.op);
}

/**
 * One batch: the new job copied from the original in SQL (its operation replaced or merge-patched
 * there, when asked), its `submitted` event, and the `retried` event and revision on the original.
 * The guard (the original exists, at the If-Match revision, a patch leaves a valid operation, the
 * Idempotency-Key is unused) is evaluated once inside the transaction, so a retry racing a delete
 * writes everything or nothing.
 */
export async function retryJob(db: Db, retry: RetryRequest): Promise<WriteResult<JobAccepted>> {
  const operation =
    retry.change && "operation" in retry.change ? JSON.stringify(retry.change.operation) : null;
  const patch = retry.change && "patch" in retry.change ? JSON.stringify(retry.change.patch) : null;
  const write = beginWrite(
    db,
    jobMatches(retry.originalId, retry.ifMatch),
    ...(patch === null
      ? []
      : [
          {
            sql: `EXISTS (SELECT 1 FROM (SELECT json_patch(operation, ?) AS op FROM jobs WHERE id = ?)
              WHERE ${validOperationSql("op")})`,
            params: [patch, retry.originalId],
          },
        ]),
    targetFound(retry.target),
    ...(retry.idempotency ? [idempotencyUnused(retry.idempotency)] : []),
  );
  const newOperation = "COALESCE(?5, json_patch(operation, ?6), operation)";
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision,
           retry_of, root_job_id, attempt, retry_policy, not_before, retried_by, operation_changed)
         SELECT ?2, ${newOperation}, ?3, ?4, ?4, ${CURRENT_REVISION}, ${CURRENT_REVISION}, id, root_job_id,
           CASE WHEN ?9 THEN 1 ELSE attempt + 1 END, CASE WHEN ?7 THEN retry_policy ELSE ?8 END, ?10, 'manual',
           ${newOperation} <> operation
         FROM jobs WHERE id = ?1 AND ${write.applies}
         RETURNING ${ACCEPTED_BODY} AS body`,
      )
      .bind(
        retry.originalId,
        retry.newId,
        retry.target,
        retry.now,
        operation,
        patch,
        retry.retryPolicy === undefined ? 1 : 0,
        retry.retryPolicy ? JSON.stringify(retry.retryPolicy) : null,
        retry.resetAttempts ? 1 : 0,
        retry.notBefore,
      ),
    submittedEvents(db, "id = ?1").bind(retry.newId),
    retriedEvents(db, "id = ?1").bind(retry.newId),
    db
      .prepare(
        `UPDATE jobs SET revision = ${CURRENT_REVISION}, updated_at = ?2 WHERE id = ?1 AND ${write.applies}`,
      )
      .bind(retry.originalId, retry.now),
    ...idempotencyStatements(
      db,
      retry.idempotency,
      201,
      `SELECT ${ACCEPTED_BODY} AS body FROM jobs WHERE id = ?`,
      retry.newId,
    ),
  ]);
  return outcome(
    parseBody<JobAccepted>(results[1]?.results[0] as { body: string } | undefined),
    retry.idempotency ? (results[6]?.results[0] as StoredResponse | undefined) : undefined,
  );
}

/** The `submitted` event of each new job `where` selects. */
function submittedEvents(db: Db, where: string) {
  return db.prepare(
    `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
     SELECT id, 'submitted', '_api', created_at, revision,
            json_object('target_hostname', target_hostname, 'operation_type', json_extract(operation, '$.type'),
              'not_before', not_before)
     FROM jobs WHERE ${where} ORDER BY seq`,
  );
}

/** The `retried` event, on its original, of each new job `where` selects. */
function retriedEvents(db: Db, where: string) {
  return db.prepare(
    `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
     SELECT retry_of, 'retried', '_api', created_at, revision,
            json_object('new_job_id', id, 'target_hostname', target_hostname,
              'automatic', json(CASE retried_by WHEN 'automatic' THEN 'true' ELSE 'false' END),
              'operation_changed', json(CASE operation_changed WHEN 1 THEN 'true' ELSE 'false' END),
              'delay_seconds', CASE WHEN not_before IS NOT NULL
                THEN round((julianday(not_before) - julianday(created_at)) * 86400, 3) END)
     FROM jobs WHERE ${where} ORDER BY seq`,
  );
}

/**
 * The wait before attempt `attempt` + 1 under the policy `policy` (SQL expressions), in
 * milliseconds: `delay_seconds` (× 2^(attempt − 1) when exponential), at most `max_delay_seconds`,
 * and with full jitter drawn uniformly from 0 to that.
 */
export function retryDelayMsSql(policy: string, attempt: string): string {
  const capped = `MIN(json_extract(${policy}, '$.max_delay_seconds') * 1000,
    json_extract(${policy}, '$.delay_seconds') * 1000
      * CASE json_extract(${policy}, '$.backoff') WHEN 'exponential' THEN (1 << MIN(MAX(${attempt} - 1, 0), 30)) ELSE 1 END)`;
  return `(SELECT CASE json_extract(${policy}, '$.jitter') WHEN 'full' THEN abs(random()) % (c + 1) ELSE c END
    FROM (SELECT ${capped} AS c))`;
}

/** `base` + `ms` milliseconds, as stored (RFC 3339, UTC, milliseconds). */
export function plusMsSql(base: string, ms: string): string {
  return `strftime('%Y-%m-%dT%H:%M:%fZ', ${base}, '+' || (${ms} / 1000.0) || ' seconds')`;
}

/**
 * The job `o` ended in a status its policy retries, nobody still holds or waits for it, it was not
 * cancelled, and no automatic attempt was made from it yet (so racing reports make one).
 */
const retryable = () => `o.retry_policy IS NOT NULL AND o.cancel_requested = 0
  AND o.status IN (SELECT value FROM json_each(o.retry_policy, '$.retry_on'))
  AND NOT EXISTS (SELECT 1 FROM job_agents WHERE job_id = o.id AND state IN ('pending', ${OPEN_STATES}))
  AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.retry_of = o.id AND r.retried_by = 'automatic')`;

/**
 * Statements that make the next attempt of every job `scope` selects (as `o`, with its `?`
 * parameters) that ended, in this batch, in a status its policy retries and has attempts left,
 * exactly as a manual retry would (operation, target, lineage, policy), due after the policy's
 * wait; and that mark the ones with no attempts left `retries_exhausted`. For a batch that has
 * changed those jobs already (their revision is this batch's) and whose guard is `applies`.
 */
export function automaticRetries(
  db: Db,
  scope: { sql: string; params: unknown[] },
  now: string,
  applies: string,
): D1PreparedStatement[] {
  const changed = `${scope.sql} AND o.revision = ${CURRENT_REVISION} AND ${applies} AND ${retryable()}`;
  const maxAttempts = "json_extract(o.retry_policy, '$.max_attempts')";
  const created = `seq > ${SEQ_MARK} AND retried_by = 'automatic' AND ${applies}`;
  return [
    db
      .prepare(
        `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision,
           retry_of, root_job_id, attempt, retry_policy, not_before, retried_by)
         SELECT ${NEW_UUID}, o.operation, o.target_hostname, ?, ?, ${CURRENT_REVISION}, ${CURRENT_REVISION},
           o.id, o.root_job_id, o.attempt + 1, o.retry_policy,
           ${plusMsSql("?", retryDelayMsSql("o.retry_policy", "o.attempt"))}, 'automatic'
         FROM jobs o WHERE ${changed} AND o.attempt < ${maxAttempts} ORDER BY o.seq`,
      )
      .bind(now, now, now, ...scope.params),
    submittedEvents(db, created),
    retriedEvents(db, created),
    db
      .prepare(
        `UPDATE jobs AS o SET retries_exhausted = 1 WHERE ${changed} AND o.attempt >= ${maxAttempts}`,
      )
      .bind(...scope.params),
  ];
}

export type BulkRetrySource = { ids: string[] } | { status: JobStatus; limit: number };

export type BulkRetryRequest = {
  source: BulkRetrySource;
  target: string;
  now: string;
  idempotency?: IdempotencyUse;
};

export type BulkRetryResult = {
  source_job_id: string;
  job_id: string | null;
  outcome: "retried" | "would_retry" | "not_found";
  error: string | null;
};

export type BulkRetryBody = {
  revision: number | null;
  dry_run: boolean;
  results: BulkRetryResult[];
};

const NEW_UUID = `lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'
  || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))`;

function bulkResultsSql(source: BulkRetrySource, applies: string): string {
  const item = (sourceId: string, jobId: string, found: string, outcome: string) =>
    `json_object('source_job_id', ${sourceId}, 'job_id', ${jobId}, 'outcome', CASE WHEN ${found} THEN ${outcome} ELSE 'not_found' END, 'error', CASE WHEN ${found} THEN NULL ELSE 'job not found' END)`;
  return "ids" in source
    ? `(SELECT json_group_array(${item("want.value", "n.id", "n.id IS NOT NULL", "'retried'")})
         FROM json_each(?) AS want LEFT JOIN jobs n ON n.retry_of = want.value AND n.seq > ${SEQ_MARK} AND ${applies})`
    : `(SELECT json_group_array(${item("n.retry_of", "n.id", "1", "'retried'")})
         FROM jobs n WHERE n.seq > ${SEQ_MARK} AND ${applies})`;
}

function bulkBodySql(source: BulkRetrySource, applies: string): string {
  return `SELECT json_object('revision', CASE WHEN ${applies} THEN ${CURRENT_REVISION} END, 'dry_run', json('false'),
    'results', json(${bulkResultsSql(source, applies)})) AS body`;
}

function bulkParams(source: BulkRetrySource): unknown[] {
  return "ids" in source ? [JSON.stringify(source.ids)] : [];
}

/**
 * Retries many jobs in one batch and one revision. The originals are chosen in SQL (by id, or
 * the oldest jobs in a status), the new ids are made in SQL, and the batch finds the jobs it
 * created by their seq being above the mark its first statement recorded.
 */
export async function retryJobs(
  db: Db,
  request: BulkRetryRequest,
): Promise<WriteResult<BulkRetryBody>> {
  const { source } = request;
  const exists: Condition =
    "ids" in source
      ? {
          sql: "EXISTS (SELECT 1 FROM jobs WHERE id IN (SELECT value FROM json_each(?)))",
          params: bulkParams(source),
        }
      : { sql: "EXISTS (SELECT 1 FROM jobs WHERE status = ?)", params: [source.status] };
  const write = beginWrite(
    db,
    exists,
    targetFound(request.target),
    ...(request.idempotency ? [idempotencyUnused(request.idempotency)] : []),
  );
  const columns =
    "id, operation, target_hostname, created_at, updated_at, created_revision, revision, retry_of, root_job_id, attempt, retry_policy, retried_by";
  const copy = `SELECT ${NEW_UUID}, o.operation, ?2, ?3, ?3, ${CURRENT_REVISION}, ${CURRENT_REVISION}, o.id, o.root_job_id, o.attempt + 1, o.retry_policy, 'manual'`;
  const insert =
    "ids" in source
      ? db
          .prepare(
            `INSERT INTO jobs (${columns}) ${copy}
             FROM json_each(?1) AS want JOIN jobs o ON o.id = want.value WHERE ${write.applies} ORDER BY want.key`,
          )
          .bind(JSON.stringify(source.ids), request.target, request.now)
      : db
          .prepare(
            `INSERT INTO jobs (${columns}) ${copy}
             FROM jobs o WHERE o.status = ?1 AND ${write.applies} ORDER BY o.seq LIMIT ?4`,
          )
          .bind(source.status, request.target, request.now, source.limit);
  const created = `FROM jobs WHERE seq > ${SEQ_MARK} AND ${write.applies}`;
  const body = bulkBodySql(source, write.applies);
  const results = await db.batch([
    write.begin,
    insert,
    submittedEvents(db, `seq > ${SEQ_MARK} AND ${write.applies}`),
    retriedEvents(db, `seq > ${SEQ_MARK} AND ${write.applies}`),
    db
      .prepare(
        `UPDATE jobs SET revision = ${CURRENT_REVISION}, updated_at = ?1
         WHERE id IN (SELECT retry_of ${created}) AND ${write.applies}`,
      )
      .bind(request.now),
    db.prepare(body).bind(...bulkParams(source)),
    ...idempotencyStatements(
      db,
      request.idempotency,
      200,
      `${body} WHERE ${write.applies}`,
      ...bulkParams(source),
    ),
  ]);
  const applied = (results[0]?.meta.changes ?? 0) > 0;
  const stored = request.idempotency
    ? (results[7]?.results[0] as StoredResponse | undefined)
    : undefined;
  if (!applied && stored) return { kind: "replayed", stored };
  return {
    kind: "written",
    value: parseBody<BulkRetryBody>(results[5]?.results[0] as { body: string }) as BulkRetryBody,
  };
}

/** What a bulk retry would do, writing nothing. */
export async function previewRetryJobs(db: Db, source: BulkRetrySource): Promise<BulkRetryBody> {
  const item = `json_object('source_job_id', want.value, 'job_id', NULL,
      'outcome', CASE WHEN o.id IS NULL THEN 'not_found' ELSE 'would_retry' END,
      'error', CASE WHEN o.id IS NULL THEN 'job not found' END)`;
  const statement =
    "ids" in source
      ? db
          .prepare(
            `SELECT json_group_array(${item}) AS results FROM json_each(?1) AS want LEFT JOIN jobs o ON o.id = want.value`,
          )
          .bind(JSON.stringify(source.ids))
      : db
          .prepare(
            `SELECT json_group_array(json_object('source_job_id', id, 'job_id', NULL, 'outcome', 'would_retry', 'error', NULL)) AS results
             FROM (SELECT id FROM jobs WHERE status = ?1 ORDER BY seq LIMIT ?2)`,
          )
          .bind(source.status, source.limit);
  const row = await statement.first<{ results: string }>();
  return {
    revision: null,
    dry_run: true,
    results: JSON.parse(row?.results ?? "[]") as BulkRetryResult[],
  };
}

export type CancelOutcome =
  | "cancelled"
  | "cancel_requested"
  | "would_cancel"
  | "would_request_cancel"
  | "finished"
  | "not_found";

export type CancelResult = { job_id: string; outcome: CancelOutcome; error: string | null };
export type CancelBody = { revision: number | null; dry_run: boolean; results: CancelResult[] };

const CANCELLED_ERROR = "cancelled";

/** Per job asked for (`want`, from json_each), what a cancel did or would do, as JSON. */
function cancelResultsSql(doneHere: string, dryRun: boolean): string {
  const held = `EXISTS (SELECT 1 FROM job_agents WHERE job_id = j.id AND state IN (${OPEN_STATES}) AND lease_expires_at > ?2)`;
  const outcome = `CASE
    WHEN j.id IS NULL THEN 'not_found'
    WHEN ${doneHere} THEN CASE WHEN j.status = 'cancelled' THEN 'cancelled' ELSE 'cancel_requested' END
    WHEN j.status NOT IN ('unprocessed', 'processing') THEN 'finished'
    WHEN j.cancel_requested = 1 THEN 'cancel_requested'
    ${dryRun ? `WHEN ${held} THEN 'would_request_cancel' ELSE 'would_cancel'` : "ELSE 'finished'"} END`;
  const error = `CASE
    WHEN j.id IS NULL THEN 'job not found'
    WHEN ${doneHere} THEN NULL
    WHEN j.status NOT IN ('unprocessed', 'processing') THEN 'job is ' || j.status
    WHEN j.cancel_requested = 1 THEN 'cancel already requested' END`;
  return `SELECT json_group_array(json_object('job_id', want.value, 'outcome', ${outcome}, 'error', ${error}))
    AS results FROM json_each(?1) AS want LEFT JOIN jobs j ON j.id = want.value`;
}

/**
 * Cancels the jobs named (at most 100), in one batch and one revision; what a job is asked must
 * still hold inside the transaction: it exists (at the If-Match revision), is unprocessed or
 * processing, and was not asked to stop before. A job no agent holds ends `cancelled` now (its
 * pending rows go, its lapsed deliveries are skipped); a job an agent holds is marked
 * `cancel_requested` and gets no more deliveries: the holder's next report or lease extension, or
 * its lease running out, ends it. The results say, per job, what happened.
 */
export async function cancelJobs(
  db: Db,
  request: { ids: string[]; now: string; ifMatch?: number[] },
): Promise<CancelBody> {
  const ids = JSON.stringify(request.ids);
  const write = beginWrite(
    db,
    ...(request.ifMatch && request.ids[0] !== undefined
      ? [jobMatches(request.ids[0], request.ifMatch)]
      : []),
    {
      sql: `EXISTS (SELECT 1 FROM jobs WHERE id IN (SELECT value FROM json_each(?))
        AND status IN ('unprocessed', 'processing') AND cancel_requested = 0)`,
      params: [ids],
    },
  );
  const mine = `id IN (SELECT value FROM json_each(?1)) AND revision = ${CURRENT_REVISION} AND ${write.applies}`;
  const rowsOf = `job_id IN (SELECT id FROM jobs WHERE ${mine})`;
  const lapsed = `${rowsOf} AND state IN (${OPEN_STATES}) AND lease_expires_at <= ?2`;
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `UPDATE jobs SET cancel_requested = 1, revision = ${CURRENT_REVISION}, updated_at = ?2
         WHERE id IN (SELECT value FROM json_each(?1)) AND status IN ('unprocessed', 'processing')
           AND cancel_requested = 0 AND ${write.applies}`,
      )
      .bind(ids, request.now),
    db.prepare(`DELETE FROM job_agents WHERE ${rowsOf} AND state = 'pending'`).bind(ids),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT job_id, 'skipped', hostname, ?2, ${CURRENT_REVISION}, json_object('error', '${CANCELLED_ERROR}')
         FROM job_agents WHERE ${lapsed} ORDER BY job_seq, hostname`,
      )
      .bind(ids, request.now),
    db
      .prepare(
        `UPDATE job_agents SET state = 'skipped', error = '${CANCELLED_ERROR}', finished_at = ?2,
           lease_token_hash = NULL, revision = ${CURRENT_REVISION}
         WHERE ${lapsed}`,
      )
      .bind(ids, request.now),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT id, 'cancel_requested', '_api', ?2, ${CURRENT_REVISION}, NULL FROM jobs
         WHERE ${mine} AND EXISTS (SELECT 1 FROM job_agents WHERE job_id = jobs.id AND state IN (${OPEN_STATES}))
         ORDER BY seq`,
      )
      .bind(ids, request.now),
    db.prepare(cancelledEventsSql("?2", mine)).bind(ids, request.now),
    db.prepare(refreshJobs("?2", mine)).bind(ids, request.now),
    db
      .prepare(
        `SELECT CASE WHEN ${write.applies} THEN ${CURRENT_REVISION} END AS revision,
           (${cancelResultsSql(`(j.revision = ${CURRENT_REVISION} AND j.cancel_requested = 1 AND ${write.applies})`, false)}) AS results`,
      )
      .bind(ids),
  ]);
  const row = results[8]?.results[0] as { revision: number | null; results: string } | undefined;
  return {
    revision: row?.revision ?? null,
    dry_run: false,
    results: JSON.parse(row?.results ?? "[]") as CancelResult[],
  };
}

/** What cancelling the jobs named would do, writing nothing. */
export async function previewCancelJobs(db: Db, ids: string[], now: string): Promise<CancelBody> {
  const row = await db
    .prepare(cancelResultsSql("0", true))
    .bind(JSON.stringify(ids), now)
    .first<{ results: string }>();
  return {
    revision: null,
    dry_run: true,
    results: JSON.parse(row?.results ?? "[]") as CancelResult[],
  };
}

/** The oldest jobs in a status, at most `limit`: what a bulk request by status acts on. */
export async function oldestJobIds(db: Db, status: JobStatus, limit: number): Promise<string[]> {
  const { results } = await db
    .prepare("SELECT id FROM jobs WHERE status = ?1 ORDER BY seq LIMIT ?2")
    .bind(status, limit)
    .all<{ id: string }>();
  return results.map((r) => r.id);
}

/**
 * What an error path needs to say why a write's guard refused it: the job's revision (404 or 412),
 * status and whether a cancel was asked; null when there is no such job.
 */
export async function findJobState(
  db: Db,
  id: string,
): Promise<{ revision: number; status: JobStatus; cancel_requested: number } | null> {
  return db
    .prepare("SELECT revision, status, cancel_requested FROM jobs WHERE id = ?1")
    .bind(id)
    .first();
}

/** One batch: the job and its events go, the counters follow; false when the guard refused it. */
export async function deleteJob(db: Db, id: string, ifMatch?: number[]): Promise<boolean> {
  const write = beginWrite(db, jobMatches(id, ifMatch));
  const results = await db.batch([
    write.begin,
    db.prepare(`DELETE FROM job_events WHERE job_id = ?1 AND ${write.applies}`).bind(id),
    db.prepare(`DELETE FROM job_agents WHERE job_id = ?1 AND ${write.applies}`).bind(id),
    db.prepare(`DELETE FROM jobs WHERE id = ?1 AND ${write.applies}`).bind(id),
  ]);
  return (results[0]?.meta.changes ?? 0) > 0;
}

// seq is commit order, so the oldest jobs come first: a batch reads at most `limit` jobs
// however large the table, and no index on created_at is needed.
const EXPIRED_JOBS =
  "SELECT seq FROM (SELECT seq, created_at FROM jobs ORDER BY seq LIMIT ?) WHERE created_at < ?";

/**
 * Retention, one batch: of the `limit` oldest jobs, those created before `cutoff` go with their
 * events and agent rows, the counters follow, and the batch takes a revision if any went.
 * Returns how many jobs went.
 */
export async function deleteJobsCreatedBefore(
  db: Db,
  cutoff: string,
  limit: number,
): Promise<number> {
  const write = beginWrite(db, { sql: `EXISTS (${EXPIRED_JOBS})`, params: [limit, cutoff] });
  const expiredIds = `SELECT id FROM jobs WHERE seq IN (${EXPIRED_JOBS})`;
  const results = await db.batch([
    write.begin,
    db
      .prepare(`DELETE FROM job_events WHERE job_id IN (${expiredIds}) AND ${write.applies}`)
      .bind(limit, cutoff),
    db
      .prepare(`DELETE FROM job_agents WHERE job_id IN (${expiredIds}) AND ${write.applies}`)
      .bind(limit, cutoff),
    db
      .prepare(`DELETE FROM jobs WHERE seq IN (${EXPIRED_JOBS}) AND ${write.applies} RETURNING seq`)
      .bind(limit, cutoff),
  ]);
  // meta.changes would also count the counter triggers' updates.
  return results[3]?.results.length ?? 0;
}

/** The job with everything its events say; one round trip. */
export async function findJob(db: Db, id: string): Promise<Job | null> {
  const [jobs, events] = await db.batch([
    db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?1`).bind(id),
    db
      .prepare(
        "SELECT event, hostname, created_at, data FROM job_events WHERE job_id = ?1 ORDER BY seq",
      )
      .bind(id),
  ]);
  const row = jobs?.results[0] as JobRow | undefined;
  if (!row) return null;
  const summary = summarizeEvents(((events?.results ?? []) as EventRow[]).map(toStoredEvent));
  const job: Job = {
    ...toJobSummary(row),
    status: summary.status,
    updated_at: summary.updated_at ?? row.updated_at,
    changed: summary.changed,
    responses: summary.responses,
    agent_states: summary.agent_states,
    timeline: summary.timeline,
    retried_as: summary.retried_as,
  };
  if ("result" in summary) job.result = summary.result;
  if (summary.error !== undefined) job.error = summary.error;
  if (summary.hostname !== undefined) job.hostname = summary.hostname;
  return job;
}

export type StatusCounts = Record<JobStatus, number>;
export type JobPage = {
  total_items: number;
  status_counts: StatusCounts;
  items: JobSummary[];
  next_cursor: string | null;
};

export type ListQuery = {
  status?: JobStatus | undefined;
  retry_of?: string | undefined;
  root_job_id?: string | undefined;
  /** false: only jobs waiting for their `not_before`; true: only jobs not waiting. */
  due?: boolean | undefined;
  retries_exhausted?: boolean | undefined;
  /** Only jobs submitted for exactly this target. */
  target?: string | undefined;
  /** Only jobs this agent holds now. */
  held_by?: string | undefined;
  limit: number;
  offset: number;
  /** Only jobs before this `seq` (a previous page's `next_cursor`). */
  cursor?: string | undefined;
};

/** Jobs waiting for their time, as the partial index jobs_waiting holds them (?: now). */
const WAITING = "not_before IS NOT NULL AND status = 'unprocessed' AND not_before > ?";
const EXHAUSTED = "retries_exhausted = 1";

/**
 * A page of jobs, newest first, and the store revision it was read at; one round trip (a
 * transaction, so the revision is the page's). Counts come from the counters table, from a
 * partial index (jobs waiting, dead letters: their number, not the table's), or through the
 * filter's own index (a retry chain, an agent's held jobs); a target's from its own counters; a
 * negative filter is counted as the counter less its complement.
 */
export async function listJobs(
  db: Db,
  query: ListQuery,
  now: string,
): Promise<{ page: JobPage; revision: number }> {
  const params: unknown[] = [];
  const where: string[] = [];
  const bind = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace("?", `?${params.length}`));
  };
  let index = query.status ? "INDEXED BY jobs_status_seq" : "";
  if (query.target !== undefined) {
    bind("target_hostname = ?", query.target);
    index = "INDEXED BY jobs_target_seq";
  }
  if (query.root_job_id !== undefined) {
    bind("root_job_id = ?", query.root_job_id);
    index = "INDEXED BY jobs_root_seq";
  }
  if (query.retry_of !== undefined) {
    bind("retry_of = ?", query.retry_of);
    index = "INDEXED BY jobs_retry_of_seq";
  }
  if (query.status) bind("status = ?", query.status);
  const lineage = query.retry_of !== undefined || query.root_job_id !== undefined;
  if (query.due === false) {
    bind(WAITING, now);
    if (!lineage) index = "INDEXED BY jobs_waiting";
  }
  if (query.due === true) bind(`NOT (${WAITING})`, now);
  if (query.retries_exhausted === true) {
    where.push(EXHAUSTED);
    if (!lineage && query.due !== false) index = "INDEXED BY jobs_exhausted_seq";
  }
  if (query.retries_exhausted === false) where.push(`NOT (${EXHAUSTED})`);
  if (query.held_by !== undefined) {
    // The few jobs an agent holds are found by rowid from its own rows, whatever else filters.
    bind(`seq IN (${heldJobSeqs("?")})`, query.held_by);
    index = "NOT INDEXED";
  }
  const clause = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
  // Counted directly when the matching jobs are found through an index of their own.
  const counted =
    lineage ||
    query.held_by !== undefined ||
    query.due === false ||
    query.retries_exhausted === true;
  const filterParams = [...params];
  const page = [...where];
  if (query.cursor !== undefined) {
    params.push(Number(query.cursor));
    page.push(`seq < ?${params.length}`);
  }
  // One row more than the page: it tells whether this page is the last.
  params.push(query.limit + 1, query.offset);
  const pageClause = page.length > 0 ? `WHERE ${page.join(" AND ")}` : "";
  // Otherwise from the counters (of a target, when one is asked for), less a negative filter's
  // complement, counted through its partial index, within the status and target asked for.
  const kept = [
    ...(query.status ? [{ sql: "status", value: query.status }] : []),
    ...(query.target !== undefined ? [{ sql: "target_hostname", value: query.target }] : []),
  ];
  const keptSql = (first: number) => kept.map((k, i) => ` AND ${k.sql} = ?${first + i}`).join("");
  const keptValues = kept.map((k) => k.value);
  const targetCount =
    query.target === undefined
      ? []
      : [
          db
            .prepare(`SELECT COALESCE(SUM(n), 0) AS n FROM job_target_counts WHERE 1${keptSql(1)}`)
            .bind(...keptValues),
        ];
  const complement = [
    ...(query.due === true
      ? [
          db
            .prepare(
              `SELECT COUNT(*) AS n FROM jobs INDEXED BY jobs_waiting WHERE ${WAITING}${keptSql(2)}`,
            )
            .bind(now, ...keptValues),
        ]
      : []),
    ...(query.retries_exhausted === false
      ? [
          db
            .prepare(
              `SELECT COUNT(*) AS n FROM jobs INDEXED BY jobs_exhausted_seq WHERE ${EXHAUSTED}${keptSql(1)}`,
            )
            .bind(...keptValues),
        ]
      : []),
  ];
  const results = await db.batch([
    db.prepare("SELECT status, n FROM job_counts"),
    db
      .prepare(
        `SELECT seq, ${JOB_COLUMNS} FROM jobs ${index} ${pageClause}
         ORDER BY seq DESC LIMIT ?${params.length - 1} OFFSET ?${params.length}`,
      )
      .bind(...params),
    ...(counted
      ? [db.prepare(`SELECT COUNT(*) AS n FROM jobs ${index} ${clause}`).bind(...filterParams)]
      : [...targetCount, ...complement]),
    db.prepare(`SELECT ${CURRENT_REVISION} AS revision`),
  ]);
  const status_counts = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as StatusCounts;
  for (const row of (results[0]?.results ?? []) as { status: JobStatus; n: number }[])
    status_counts[row.status] = row.n;
  const countOf = (i: number) => (results[i]?.results[0] as { n: number } | undefined)?.n ?? 0;
  const base =
    targetCount.length > 0
      ? countOf(2)
      : query.status
        ? status_counts[query.status]
        : Object.values(status_counts).reduce((sum, n) => sum + n, 0);
  const first = 2 + targetCount.length;
  const total_items = counted
    ? countOf(2)
    : base - complement.reduce((sum, _, i) => sum + countOf(first + i), 0);
  const rows = (results[1]?.results ?? []) as (JobRow & { seq: number })[];
  const { items, next_cursor } = pageOf(rows, query.limit, (row) => String(row.seq));
  const revision = (results.at(-1)?.results[0] as { revision: number } | undefined)?.revision ?? 0;
  return {
    page: { total_items, status_counts, items: items.map(toJobSummary), next_cursor },
    revision,
  };
}

/** An event with its position (commit order, unique across jobs). */
export type SequencedEvent = StoredEvent & { seq: number };

/** Where a job stands for a watcher: its status, whether it has ended, and its latest retry. */
export type WatchedJob = {
  status: JobStatus;
  /** Final, and no agent holds or waits for it: no event will change its status again. */
  ended: boolean;
  /** The newest job retried from it, if any (a watcher of the chain goes on there). */
  retried_as: string | null;
};

/**
 * One round trip: the job's events after `afterSeq` (commit order, at most `limit`), where the
 * job stands, and the store revision they were read at; null when there is no such job.
 */
export async function readJobEvents(
  db: Db,
  id: string,
  afterSeq: number,
  limit: number,
): Promise<{ events: SequencedEvent[]; job: WatchedJob; revision: number } | null> {
  const [events, job] = await db.batch([
    db
      .prepare(
        `SELECT seq, event, hostname, created_at, data FROM job_events INDEXED BY job_events_job
         WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3`,
      )
      .bind(id, afterSeq, limit),
    db
      .prepare(
        `SELECT status, ${CURRENT_REVISION} AS revision,
           status NOT IN ('unprocessed', 'processing') AND NOT EXISTS (SELECT 1 FROM job_agents
             WHERE job_id = ?1 AND state IN ('pending', ${OPEN_STATES})) AS ended,
           (SELECT id FROM jobs r INDEXED BY jobs_retry_of_seq WHERE r.retry_of = ?1
            ORDER BY r.seq DESC LIMIT 1) AS retried_as
         FROM jobs WHERE id = ?1`,
      )
      .bind(id),
  ]);
  const row = job?.results[0] as
    | { status: JobStatus; revision: number; ended: number; retried_as: string | null }
    | undefined;
  if (!row) return null;
  return {
    events: ((events?.results ?? []) as (EventRow & { seq: number })[]).map((e) => ({
      seq: e.seq,
      ...toStoredEvent(e),
    })),
    job: { status: row.status, ended: row.ended === 1, retried_as: row.retried_as },
    revision: row.revision,
  };
}

/** The job an event belongs to: where a watcher that names its last event resumes. */
export async function findEventJob(db: Db, seq: number): Promise<string | null> {
  const row = await db
    .prepare("SELECT job_id FROM job_events WHERE seq = ?1")
    .bind(seq)
    .first<{ job_id: string }>();
  return row?.job_id ?? null;
}
