import { type EventData, type StoredEvent, summarizeEvents } from "../domain/job-view";
import { type EventName, JOB_STATUSES, type JobStatus } from "../domain/status";
import type { Job, JobAccepted, JobSummary, Operation } from "../schemas/job";
import { bumpRevision, CURRENT_REVISION } from "./revision";
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
};

type EventRow = { event: EventName; hostname: string; created_at: string; data: string | null };

const JOB_COLUMNS =
  "id, operation, target_hostname, status, created_at, updated_at, revision, retry_of, root_job_id, attempt";

const JOB_EXISTS = "EXISTS (SELECT 1 FROM jobs WHERE id = ?1)";

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
    changed: null,
  };
  if (row.retry_of !== null) job.retry_of = row.retry_of;
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

function accepted(row: { id: string; revision: number; created_at: string }): JobAccepted {
  return {
    job_id: row.id,
    status: "unprocessed",
    revision: row.revision,
    timestamp: row.created_at,
  };
}

export type NewJob = { id: string; operation: Operation; target: string; now: string };

/** One batch: the job, its `submitted` event, the counters (by trigger) and the next revision. */
export async function insertJob(db: Db, job: NewJob): Promise<JobAccepted> {
  const [, inserted] = await db.batch<{ id: string; revision: number; created_at: string }>([
    bumpRevision(db),
    db
      .prepare(
        `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision, root_job_id, attempt)
         VALUES (?1, ?2, ?3, ?4, ?4, ${CURRENT_REVISION}, ${CURRENT_REVISION}, ?1, 1)
         RETURNING id, revision, created_at`,
      )
      .bind(job.id, JSON.stringify(job.operation), job.target, job.now),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         VALUES (?1, 'submitted', '_api', ?2, ${CURRENT_REVISION}, json_object('target_hostname', ?3, 'operation_type', ?4))`,
      )
      .bind(job.id, job.now, job.target, job.operation.type),
  ]);
  const row = inserted?.results[0];
  if (!row) throw new Error("insertJob: the insert returned no row");
  return accepted(row);
}

export type RetryRequest = { originalId: string; newId: string; target: string; now: string };

/**
 * One batch: the new job copied from the original in SQL, its `submitted` event, the `retried`
 * event and revision on the original. Every statement is conditioned on the original existing
 * inside the same transaction, so a retry racing a delete writes everything or nothing.
 * Returns null when the original does not exist.
 */
export async function retryJob(db: Db, retry: RetryRequest): Promise<JobAccepted | null> {
  const [, inserted] = await db.batch<{ id: string; revision: number; created_at: string }>([
    bumpRevision(db, JOB_EXISTS, retry.originalId),
    db
      .prepare(
        `INSERT INTO jobs (id, operation, target_hostname, created_at, updated_at, created_revision, revision, retry_of, root_job_id, attempt)
         SELECT ?2, operation, ?3, ?4, ?4, ${CURRENT_REVISION}, ${CURRENT_REVISION}, id, root_job_id, attempt + 1
         FROM jobs WHERE id = ?1
         RETURNING id, revision, created_at`,
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
         SELECT ?1, 'retried', '_api', created_at, revision, json_object('new_job_id', id, 'target_hostname', target_hostname)
         FROM jobs WHERE id = ?2`,
      )
      .bind(retry.originalId, retry.newId),
    db
      .prepare(
        `UPDATE jobs SET revision = ${CURRENT_REVISION}, updated_at = ?2
         WHERE id = ?1 AND EXISTS (SELECT 1 FROM jobs WHERE id = ?3)`,
      )
      .bind(retry.originalId, retry.now, retry.newId),
  ]);
  const row = inserted?.results[0];
  return row ? accepted(row) : null;
}

/** One batch: the job and its events go, the counters follow; false when there was no such job. */
export async function deleteJob(db: Db, id: string): Promise<boolean> {
  const results = await db.batch([
    bumpRevision(db, JOB_EXISTS, id),
    db.prepare("DELETE FROM job_events WHERE job_id = ?1").bind(id),
    db.prepare("DELETE FROM jobs WHERE id = ?1").bind(id),
  ]);
  return (results[2]?.meta.changes ?? 0) > 0;
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
  };
  if ("result" in summary) job.result = summary.result;
  if (summary.error !== undefined) job.error = summary.error;
  if (summary.hostname !== undefined) job.hostname = summary.hostname;
  return job;
}

export type StatusCounts = Record<JobStatus, number>;
export type JobPage = { total_items: number; status_counts: StatusCounts; items: JobSummary[] };

const LIST_ALL = `SELECT ${JOB_COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?1 OFFSET ?2`;
const LIST_BY_STATUS = `SELECT ${JOB_COLUMNS} FROM jobs WHERE status = ?3 ORDER BY seq DESC LIMIT ?1 OFFSET ?2`;

/** A page of jobs, newest first, with counts from the counters table; one round trip. */
export async function listJobs(
  db: Db,
  query: { status?: JobStatus | undefined; limit: number; offset: number },
): Promise<JobPage> {
  const page = query.status
    ? db.prepare(LIST_BY_STATUS).bind(query.limit, query.offset, query.status)
    : db.prepare(LIST_ALL).bind(query.limit, query.offset);
  const [counts, jobs] = await db.batch([db.prepare("SELECT status, n FROM job_counts"), page]);
  const status_counts = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as StatusCounts;
  for (const row of (counts?.results ?? []) as { status: JobStatus; n: number }[])
    status_counts[row.status] = row.n;
  const total_items = query.status
    ? status_counts[query.status]
    : Object.values(status_counts).reduce((sum, n) => sum + n, 0);
  return {
    total_items,
    status_counts,
    items: ((jobs?.results ?? []) as JobRow[]).map(toJobSummary),
  };
}
