import { type EventData, type StoredEvent, summarizeEvents } from "../domain/job-view";
import { type EventName, JOB_STATUSES, type JobStatus } from "../domain/status";
import type { Job, JobAccepted, JobSummary, Operation } from "../schemas/job";
import { pageOf } from "../schemas/paging";
import { targetFound } from "./agents";
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
};

type EventRow = { event: EventName; hostname: string; created_at: string; data: string | null };

const JOB_COLUMNS =
  "id, operation, target_hostname, status, created_at, updated_at, revision, retry_of, root_job_id, attempt, result, changed, error, hostname";

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
        `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision, root_job_id, attempt)
         SELECT ?1, ?2, ?3, ?4, ?4, ${CURRENT_REVISION}, ${CURRENT_REVISION}, ?1, 1 WHERE ${write.applies}
         RETURNING ${ACCEPTED_BODY} AS body`,
      )
      .bind(job.id, JSON.stringify(job.operation), job.target, job.now),
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

export type RetryRequest = {
  originalId: string;
  newId: string;
  target: string;
  now: string;
  ifMatch?: number[];
  idempotency?: IdempotencyUse;
};

/**
 * One batch: the new job copied from the original in SQL, its `submitted` event, and the
 * `retried` event and revision on the original. The guard (the original exists, at the If-Match
 * revision, with an unused Idempotency-Key) is evaluated once inside the transaction, so a retry
 * racing a delete writes everything or nothing.
 */
export async function retryJob(db: Db, retry: RetryRequest): Promise<WriteResult<JobAccepted>> {
  const write = beginWrite(
    db,
    jobMatches(retry.originalId, retry.ifMatch),
    targetFound(retry.target),
    ...(retry.idempotency ? [idempotencyUnused(retry.idempotency)] : []),
  );
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision, retry_of, root_job_id, attempt)
         SELECT ?2, operation, ?3, ?4, ?4, ${CURRENT_REVISION}, ${CURRENT_REVISION}, id, root_job_id, attempt + 1
         FROM jobs WHERE id = ?1 AND ${write.applies}
         RETURNING ${ACCEPTED_BODY} AS body`,
      )
      .bind(retry.originalId, retry.newId, retry.target, retry.now),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT id, 'submitted', '_api', created_at, revision,
                json_object('target_hostname', target_hostname, 'operation_type', json_extract(operation, '$.type'))
         FROM jobs WHERE id = ?1`,
      )
      .bind(retry.newId),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT retry_of, 'retried', '_api', created_at, revision, json_object('new_job_id', id, 'target_hostname', target_hostname)
         FROM jobs WHERE id = ?1`,
      )
      .bind(retry.newId),
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
    "id, operation, target_hostname, created_at, updated_at, created_revision, revision, retry_of, root_job_id, attempt";
  const copy = `SELECT ${NEW_UUID}, o.operation, ?2, ?3, ?3, ${CURRENT_REVISION}, ${CURRENT_REVISION}, o.id, o.root_job_id, o.attempt + 1`;
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
    db.prepare(
      `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
       SELECT id, 'submitted', '_api', created_at, revision,
              json_object('target_hostname', target_hostname, 'operation_type', json_extract(operation, '$.type'))
       ${created} ORDER BY seq`,
    ),
    db.prepare(
      `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
       SELECT retry_of, 'retried', '_api', created_at, revision, json_object('new_job_id', id, 'target_hostname', target_hostname)
       ${created} ORDER BY seq`,
    ),
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

/** The job's current revision, or null when there is no such job: tells 404 from 412. */
export async function findJobRevision(db: Db, id: string): Promise<number | null> {
  const row = await db
    .prepare("SELECT revision FROM jobs WHERE id = ?1")
    .bind(id)
    .first<{ revision: number }>();
  return row?.revision ?? null;
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
  limit: number;
  offset: number;
  /** Only jobs before this `seq` (a previous page's `next_cursor`). */
  cursor?: string | undefined;
};

/**
 * A page of jobs, newest first; one round trip. Counts come from the counters table, except
 * within a retry chain, which is counted through its own index (its size, not the table's).
 */
export async function listJobs(db: Db, query: ListQuery): Promise<JobPage> {
  const params: unknown[] = [query.limit + 1, query.offset];
  const where: string[] = [];
  let index = query.status ? "INDEXED BY jobs_status_seq" : "";
  if (query.root_job_id !== undefined) {
    params.push(query.root_job_id);
    where.push(`root_job_id = ?${params.length}`);
    index = "INDEXED BY jobs_root_seq";
  }
  if (query.retry_of !== undefined) {
    params.push(query.retry_of);
    where.push(`retry_of = ?${params.length}`);
    index = "INDEXED BY jobs_retry_of_seq";
  }
  if (query.status) {
    params.push(query.status);
    where.push(`status = ?${params.length}`);
  }
  const clause = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
  const lineage = query.retry_of !== undefined || query.root_job_id !== undefined;
  const filterParams = [...params];
  const page = [...where];
  if (query.cursor !== undefined) {
    params.push(Number(query.cursor));
    page.push(`seq < ?${params.length}`);
  }
  const pageClause = page.length > 0 ? `WHERE ${page.join(" AND ")}` : "";
  const results = await db.batch([
    db.prepare("SELECT status, n FROM job_counts"),
    db
      .prepare(
        `SELECT seq, ${JOB_COLUMNS} FROM jobs ${index} ${pageClause} ORDER BY seq DESC LIMIT ?1 OFFSET ?2`,
      )
      .bind(...params),
    ...(lineage
      ? [db.prepare(`SELECT COUNT(*) AS n FROM jobs ${index} ${clause}`).bind(...filterParams)]
      : []),
  ]);
  const status_counts = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as StatusCounts;
  for (const row of (results[0]?.results ?? []) as { status: JobStatus; n: number }[])
    status_counts[row.status] = row.n;
  const total_items = lineage
    ? ((results[2]?.results[0] as { n: number } | undefined)?.n ?? 0)
    : query.status
      ? status_counts[query.status]
      : Object.values(status_counts).reduce((sum, n) => sum + n, 0);
  const rows = (results[1]?.results ?? []) as (JobRow & { seq: number })[];
  const { items, next_cursor } = pageOf(rows, query.limit, (row) => String(row.seq));
  return { total_items, status_counts, items: items.map(toJobSummary), next_cursor };
}
