import type { JobStatus } from "../domain/status";
import { parseTarget } from "../domain/target";
import type { AgentEventBody, Labels } from "../schemas/agent";
import type { Operation } from "../schemas/job";
import { beginWrite, type Condition, CURRENT_REVISION } from "./revision";
import type { Db } from "./session";

export type AgentRow = {
  hostname: string;
  labels: string;
  registered_at: string;
  last_seen: string;
};

export type ClaimedJob = {
  id: string;
  operation: Operation;
  target_hostname: string;
  delivery: number;
  lease_expires_at: string;
};

const OPEN = "('acknowledged', 'started')";
const FINAL = "('completed', 'failed', 'skipped')";
const MAX_DEADLINE_SWEEP = 100;

/** Labels as stored: keys sorted, so equal label sets are equal strings. */
export function canonicalLabels(labels: Labels): string {
  return JSON.stringify(
    Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1))),
  );
}

/**
 * The target names a registered agent: any agent for `_any` and `_all`, that hostname, or an agent
 * with the label `key` equal to `value` or below it (`value.` + more segments).
 */
export function targetFound(target: string): Condition {
  const parsed = parseTarget(target);
  if (parsed?.kind === "hostname")
    return { sql: "EXISTS (SELECT 1 FROM agents WHERE hostname = ?)", params: [target] };
  if (parsed?.kind === "label")
    return {
      sql: "EXISTS (SELECT 1 FROM agent_labels WHERE key = ? AND (value = ? OR (value > ? AND value < ?)))",
      params: [parsed.key, parsed.value, `${parsed.value}.`, `${parsed.value}/`],
    };
  return { sql: "1", params: [] };
}

/** The error path's question: does the target name a registered agent now? */
export async function isTargetFound(db: Db, target: string): Promise<boolean> {
  const { sql, params } = targetFound(target);
  const row = await db
    .prepare(`SELECT ${sql} AS found`)
    .bind(...params)
    .first<{ found: number }>();
  return row?.found === 1;
}

/** One statement: register the agent or refresh it (labels replaced only when given). */
export async function upsertAgent(
  db: Db,
  agent: { hostname: string; labels: Labels | undefined; now: string },
): Promise<AgentRow> {
  const labels = agent.labels === undefined ? null : canonicalLabels(agent.labels);
  const write = beginWrite(db, {
    sql: "NOT EXISTS (SELECT 1 FROM agents WHERE hostname = ? AND (? IS NULL OR labels = ?))",
    params: [agent.hostname, labels, labels],
  });
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `INSERT INTO agents (hostname, labels, registered_at, last_seen, cursor_seq)
         VALUES (?1, COALESCE(?2, '{}'), ?3, ?3, (SELECT COALESCE(MAX(seq), 0) FROM jobs))
         ON CONFLICT (hostname) DO UPDATE SET labels = COALESCE(?2, labels), last_seen = ?3
         RETURNING hostname, labels, registered_at, last_seen`,
      )
      .bind(agent.hostname, labels, agent.now),
    db
      .prepare(
        `DELETE FROM agent_labels WHERE hostname = ?1 AND ?2 IS NOT NULL AND ${write.applies}`,
      )
      .bind(agent.hostname, labels),
    db
      .prepare(
        `INSERT INTO agent_labels (hostname, key, value)
         SELECT ?1, key, value FROM json_each(?2) WHERE ?2 IS NOT NULL AND ${write.applies}`,
      )
      .bind(agent.hostname, labels),
  ]);
  const row = results[1]?.results[0] as AgentRow | undefined;
  if (!row) throw new Error("upsertAgent: the upsert returned no row");
  return row;
}

export async function listAgents(db: Db): Promise<AgentRow[]> {
  const { results } = await db
    .prepare("SELECT hostname, labels, registered_at, last_seen FROM agents ORDER BY hostname")
    .all<AgentRow>();
  return results;
}

/** One batch; false when there was no such agent. Its job rows stay: they are the jobs' history. */
export async function deleteAgent(db: Db, hostname: string): Promise<boolean> {
  const write = beginWrite(db, {
    sql: "EXISTS (SELECT 1 FROM agents WHERE hostname = ?)",
    params: [hostname],
  });
  const results = await db.batch([
    write.begin,
    db.prepare(`DELETE FROM agent_labels WHERE hostname = ?1 AND ${write.applies}`).bind(hostname),
    db.prepare(`DELETE FROM agents WHERE hostname = ?1 AND ${write.applies}`).bind(hostname),
  ]);
  return (results[0]?.meta.changes ?? 0) > 0;
}

/**
 * The job's status and the list's summary of the answers, recomputed from the agent rows with the
 * rules of `statusOf` and `summarizeEvents`; the counters follow by trigger.
 */
function refreshJobs(now: string, where: string): string {
  const answers = `FROM job_agents WHERE job_id = jobs.id AND state IN ${FINAL}`;
  return `UPDATE jobs SET
    status = (SELECT CASE
        WHEN COUNT(*) = 0 THEN 'unprocessed'
        WHEN SUM(state IN ${OPEN}) > 0 THEN 'processing'
        WHEN SUM(state = 'failed') > 0 AND SUM(state = 'completed') > 0 THEN 'partial_failure'
        WHEN SUM(state = 'failed') > 0 THEN 'failed'
        WHEN SUM(state = 'skipped') = COUNT(*) THEN 'skipped'
        ELSE 'completed' END
      FROM job_agents WHERE job_id = jobs.id AND state <> 'pending'),
    result = (SELECT CASE WHEN COUNT(*) = 1 THEN MAX(result) END ${answers}),
    changed = (SELECT CASE
        WHEN COUNT(*) = 1 THEN MAX(changed)
        WHEN MAX(changed) = 1 THEN 1
        WHEN COUNT(*) > 0 AND COUNT(changed) = COUNT(*) THEN 0 END ${answers}),
    error = (SELECT CASE
        WHEN SUM(state IN ${OPEN}) = 0 AND SUM(state = 'failed') > 0 AND SUM(state = 'completed') = 0
        THEN (SELECT f.error FROM job_agents f WHERE f.job_id = jobs.id AND f.state = 'failed' AND f.error IS NOT NULL
              ORDER BY f.finished_at DESC, f.revision DESC, f.hostname DESC LIMIT 1) END
      FROM job_agents WHERE job_id = jobs.id AND state <> 'pending'),
    hostname = (SELECT hostname FROM job_agents WHERE job_id = jobs.id AND state IN ('completed', 'failed')
      ORDER BY finished_at DESC, revision DESC, hostname DESC LIMIT 1),
    revision = ${CURRENT_REVISION},
    updated_at = ${now}
  WHERE ${where}`;
}

// Claim parameters: ?1 hostname, ?2 now, ?3 lease expiry, ?4 limit, ?5 max deliveries.

/** The agent's own due rows (pending, or its lease ran out with deliveries left), oldest first. */
const OWN_DUE = `SELECT job_id, job_seq AS seq FROM job_agents INDEXED BY job_agents_open
  WHERE hostname = ?1 AND state IN ('pending', 'acknowledged', 'started')
    AND (state = 'pending' OR (lease_expires_at <= ?2 AND delivery < ?5))
  ORDER BY job_seq LIMIT ?4`;

/** `_any` jobs that nobody holds, nobody finished, and this agent has not lost before. */
const ANY_DUE = `SELECT id AS job_id, seq FROM jobs j INDEXED BY jobs_any_open
  WHERE target_hostname = '_any' AND status IN ('unprocessed', 'processing')
    AND NOT EXISTS (SELECT 1 FROM job_agents h WHERE h.job_id = j.id
      AND (h.hostname = ?1 OR (h.state IN ${OPEN} AND (h.lease_expires_at > ?2 OR h.delivery >= ?5))))
  ORDER BY seq LIMIT ?4`;

/** Jobs created since the agent's cursor that are meant for it: its hostname, `_all`, its labels. */
const NEW_FOR_AGENT = `FROM agents a JOIN jobs j ON j.seq > a.cursor_seq
  WHERE a.hostname = ?1 AND j.target_hostname <> '_any'
    AND (j.target_hostname IN ('_all', a.hostname) OR EXISTS (
      SELECT 1 FROM agent_labels l WHERE l.hostname = a.hostname
        AND l.key = substr(j.target_hostname, 1, instr(j.target_hostname, ':') - 1)
        AND (l.value = substr(j.target_hostname, instr(j.target_hostname, ':') + 1)
          OR substr(l.value, 1, length(j.target_hostname) - instr(j.target_hostname, ':') + 1)
             = substr(j.target_hostname, instr(j.target_hostname, ':') + 1) || '.')))`;

/** Leases that ran out on the last allowed delivery: those rows are failed, not handed out. */
const EXHAUSTED = `SELECT rowid FROM job_agents INDEXED BY job_agents_lease
  WHERE state IN ${OPEN} AND lease_expires_at <= ?2 AND delivery >= ?5
  ORDER BY lease_expires_at, rowid LIMIT ${MAX_DEADLINE_SWEEP}`;

const TAKEN_OVER = `job_id IN (SELECT job_id FROM (${OWN_DUE})) AND hostname <> ?1 AND state IN ${OPEN}
  AND EXISTS (SELECT 1 FROM jobs WHERE id = job_agents.job_id AND target_hostname = '_any')`;

export type ClaimRequest = {
  hostname: string;
  now: string;
  leaseExpiresAt: string;
  limit: number;
  maxDeliveries: number;
};

/**
 * One batch, conditions in SQL, so two agents claiming at once never both get an `_any` job:
 * D1 runs batches one at a time, and each hands out only what is still due when it runs.
 * Also fails, for their agents, leases that ran out on the last allowed delivery.
 * Returns null when the agent is not registered.
 */
export async function claimJobs(db: Db, claim: ClaimRequest): Promise<ClaimedJob[] | null> {
  const params = [
    claim.hostname,
    claim.now,
    claim.leaseExpiresAt,
    claim.limit,
    claim.maxDeliveries,
  ] as const;
  const [h, now, lease, limit, max] = params;
  // One condition, so its numbered parameters are the begin statement's own.
  const write = beginWrite(db, {
    sql: `EXISTS (SELECT 1 FROM agents WHERE hostname = ?1) AND (EXISTS (${OWN_DUE}) OR EXISTS (${ANY_DUE})
      OR EXISTS (SELECT 1 ${NEW_FOR_AGENT}) OR EXISTS (${EXHAUSTED}))`,
    params: [...params],
  });
  const applies = write.applies;
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `INSERT OR IGNORE INTO job_agents (job_id, job_seq, hostname, state)
         SELECT j.id, j.seq, ?1, 'pending' ${NEW_FOR_AGENT} AND ${applies}`,
      )
      .bind(h),
    db
      .prepare(
        `UPDATE agents SET last_seen = ?2, cursor_seq = MAX(cursor_seq, (SELECT COALESCE(MAX(seq), 0) FROM jobs))
         WHERE hostname = ?1`,
      )
      .bind(h, now),
    db
      .prepare(
        `INSERT INTO job_agents (job_id, job_seq, hostname, state, delivery)
         SELECT c.job_id, c.seq, ?1, 'pending', (SELECT COALESCE(MAX(delivery), 0) FROM job_agents WHERE job_id = c.job_id)
         FROM (SELECT job_id, seq, 0 AS kind FROM (${OWN_DUE})
               UNION ALL SELECT job_id, seq, 1 AS kind FROM (${ANY_DUE})
               ORDER BY seq LIMIT ?4) c
         WHERE c.kind = 1 AND ${applies}`,
      )
      .bind(h, now, lease, limit, max),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT job_id, 'skipped', hostname, ?2, ${CURRENT_REVISION}, json_object('error', 'lease expired; redelivered to ' || ?1)
         FROM job_agents WHERE ${TAKEN_OVER} AND ${applies} ORDER BY job_id`,
      )
      .bind(h, now, lease, limit, max),
    db
      .prepare(
        `UPDATE job_agents SET state = 'skipped', error = 'lease expired; redelivered to ' || ?1,
           finished_at = ?2, revision = ${CURRENT_REVISION}
         WHERE ${TAKEN_OVER} AND ${applies}`,
      )
      .bind(h, now, lease, limit, max),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT job_id, 'acknowledged', ?1, ?2, ${CURRENT_REVISION}, json_object('delivery', delivery + 1, 'lease_expires_at', ?3)
         FROM job_agents WHERE hostname = ?1 AND job_id IN (SELECT job_id FROM (${OWN_DUE})) AND ${applies}
         ORDER BY job_seq`,
      )
      .bind(h, now, lease, limit, max),
    db
      .prepare(
        `UPDATE job_agents SET state = CASE state WHEN 'pending' THEN 'acknowledged' ELSE state END,
           delivery = delivery + 1, lease_expires_at = ?3, revision = ${CURRENT_REVISION}
         WHERE hostname = ?1 AND job_id IN (SELECT job_id FROM (${OWN_DUE})) AND ${applies}`,
      )
      .bind(h, now, lease, limit, max),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT job_id, 'failed', hostname, ?2, ${CURRENT_REVISION}, json_object('error', 'max deliveries exceeded')
         FROM job_agents WHERE rowid IN (${EXHAUSTED}) AND ${applies} ORDER BY job_id, hostname`,
      )
      .bind(h, now, lease, limit, max),
    db
      .prepare(
        `UPDATE job_agents SET state = 'failed', error = 'max deliveries exceeded', finished_at = ?2,
           revision = ${CURRENT_REVISION}
         WHERE rowid IN (${EXHAUSTED}) AND ${applies}`,
      )
      .bind(h, now, lease, limit, max),
    db
      .prepare(
        refreshJobs(
          "?1",
          `id IN (SELECT job_id FROM job_agents WHERE revision = ${CURRENT_REVISION}) AND ${applies}`,
        ),
      )
      .bind(now),
    db
      .prepare(
        `SELECT j.id, j.operation, j.target_hostname, ja.delivery, ja.lease_expires_at
         FROM job_agents ja JOIN jobs j ON j.id = ja.job_id
         WHERE ja.hostname = ?1 AND ja.revision = ${CURRENT_REVISION} AND ja.state IN ${OPEN} AND ${applies}
         ORDER BY ja.job_seq`,
      )
      .bind(h),
  ]);
  if ((results[2]?.meta.changes ?? 0) === 0) return null;
  type Row = Omit<ClaimedJob, "operation"> & { operation: string };
  return ((results[11]?.results ?? []) as Row[]).map((row) => ({
    ...row,
    operation: JSON.parse(row.operation) as Operation,
  }));
}

export type AgentReport = {
  jobId: string;
  hostname: string;
  body: AgentEventBody;
  now: string;
};

export type ReportOutcome = { job_id: string; status: JobStatus; revision: number };

function eventData(body: AgentEventBody): string | null {
  const data: Record<string, unknown> = {};
  if (body.result !== undefined) data.result = body.result;
  if (body.changed !== undefined) data.changed = body.changed;
  if (body.error !== undefined) data.error = body.error;
  return Object.keys(data).length > 0 ? JSON.stringify(data) : null;
}

/**
 * One batch: the event, the agent's row, the job's status and summary, the counters and the
 * revision. Only the agent that holds the job (claimed, not finished, not taken over) may report;
 * null when it does not.
 */
export async function reportEvent(db: Db, report: AgentReport): Promise<ReportOutcome | null> {
  const { body } = report;
  const write = beginWrite(db, {
    sql: `EXISTS (SELECT 1 FROM job_agents WHERE job_id = ? AND hostname = ? AND state IN ${OPEN})`,
    params: [report.jobId, report.hostname],
  });
  const results = await db.batch([
    write.begin,
    db
      .prepare("UPDATE agents SET last_seen = ?2 WHERE hostname = ?1")
      .bind(report.hostname, report.now),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT ?1, ?2, ?3, ?4, ${CURRENT_REVISION}, ?5 WHERE ${write.applies}`,
      )
      .bind(report.jobId, body.event, report.hostname, report.now, eventData(body)),
    db
      .prepare(
        `UPDATE job_agents SET
           state = ?3,
           started_at = CASE WHEN ?3 = 'started' THEN COALESCE(started_at, ?4) ELSE started_at END,
           finished_at = CASE WHEN ?3 = 'started' THEN NULL ELSE ?4 END,
           result = ?5, changed = ?6, error = ?7, revision = ${CURRENT_REVISION}
         WHERE job_id = ?1 AND hostname = ?2 AND state IN ${OPEN} AND ${write.applies}`,
      )
      .bind(
        report.jobId,
        report.hostname,
        body.event,
        report.now,
        body.result === undefined ? null : JSON.stringify(body.result),
        body.changed === undefined ? null : Number(body.changed),
        body.error ?? null,
      ),
    db
      .prepare(
        `${refreshJobs("?2", `id = ?1 AND ${write.applies}`)} RETURNING id AS job_id, status, revision`,
      )
      .bind(report.jobId, report.now),
  ]);
  return (results[4]?.results[0] as ReportOutcome | undefined) ?? null;
}

export type ReportRefusal = {
  jobExists: boolean;
  state: string | null;
  holder: string | null;
};

/** Why a report was refused: the job, this agent's state on it, and who holds it now. */
export async function findReportRefusal(
  db: Db,
  jobId: string,
  hostname: string,
): Promise<ReportRefusal> {
  const row = await db
    .prepare(
      `SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1) AS job_exists,
         (SELECT state FROM job_agents WHERE job_id = ?1 AND hostname = ?2) AS state,
         (SELECT hostname FROM job_agents WHERE job_id = ?1 AND hostname <> ?2 AND state IN ${OPEN}
            AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND target_hostname = '_any') LIMIT 1) AS holder`,
    )
    .bind(jobId, hostname)
    .first<{ job_exists: number; state: string | null; holder: string | null }>();
  return {
    jobExists: row?.job_exists === 1,
    state: row?.state ?? null,
    holder: row?.holder ?? null,
  };
}
