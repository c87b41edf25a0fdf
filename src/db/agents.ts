import { hashLeaseToken, newLeaseToken } from "../auth/lease-token";
import type { JobStatus } from "../domain/status";
import { parseTarget } from "../domain/target";
import type { AgentReportBody, Labels } from "../schemas/agent";
import type { Operation } from "../schemas/job";
import { pageOf } from "../schemas/paging";
import { automaticRetries } from "./jobs";
import { beginWrite, type Condition, CURRENT_REVISION } from "./revision";
import type { Db } from "./session";

export type AgentRow = {
  hostname: string;
  labels: string;
  registered_at: string;
  last_seen: string;
  owner_key_prefix: string | null;
  held_jobs: number;
};

export type ClaimedJob = {
  id: string;
  operation: Operation;
  target_hostname: string;
  attempt: number;
  delivery: number;
  lease_expires_at: string;
  lease_token: string;
};

/** The key acting as an agent: its rotation lineage, and whether it may deregister any agent. */
export type Actor = { lineage: string; admin?: boolean };

/** The agent ?N may be acted as by the lineage ?M: it owns it, or nobody does yet (see 0006). */
function ownedBy(hostname: string, lineage: string): string {
  return `EXISTS (SELECT 1 FROM agents WHERE hostname = ${hostname}
    AND (owner_lineage_id IS NULL OR owner_lineage_id = ${lineage}))`;
}

/** A delivery is open (an agent holds the job, or held it until its lease ran out). */
export const OPEN_STATES = "'acknowledged', 'started'";
const OPEN = `(${OPEN_STATES})`;
const FINAL = "('completed', 'failed', 'skipped')";

/**
 * The seqs of the jobs an agent (`hostname`, an SQL expression) holds: its open rows (a lease
 * that ran out still counts until the job is handed out again or swept), through their partial
 * index, whose condition the query repeats so SQLite may use it; pending rows due now are stepped
 * over, those waiting for their time are not read.
 */
export const heldJobSeqs = (hostname: string) => `SELECT job_seq FROM job_agents
  INDEXED BY job_agents_open WHERE hostname = ${hostname} AND due_at = ''
    AND state IN ('pending', ${OPEN_STATES}) AND state IN ${OPEN}`;

/** The agent as shown: its owner is the newest key of the owning lineage. */
const AGENT_COLUMNS = `a.hostname, a.labels, a.registered_at, a.last_seen,
  (SELECT k.prefix FROM api_keys k WHERE k.lineage_id = a.owner_lineage_id AND k.replaced_by IS NULL
   LIMIT 1) AS owner_key_prefix,
  (SELECT COUNT(*) FROM (${heldJobSeqs("a.hostname")})) AS held_jobs`;

const MAX_DEADLINE_SWEEP = 100;
/**
 * An idle claim moves the agent's cursor (a write) once this many jobs were created past it, so
 * the jobs an idle claim looks through stay bounded however busy the service is.
 */
const CURSOR_SLACK = 500;

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

/**
 * One batch: register the agent for the caller's lineage, or refresh it (labels replaced only when
 * given) when that lineage owns it. Null when another lineage owns the hostname.
 */
export async function upsertAgent(
  db: Db,
  agent: { hostname: string; labels: Labels | undefined; now: string; owner: Actor },
): Promise<AgentRow | null> {
  const labels = agent.labels === undefined ? null : canonicalLabels(agent.labels);
  const write = beginWrite(db, {
    sql: `NOT EXISTS (SELECT 1 FROM agents WHERE hostname = ?1 AND (?2 IS NULL OR labels = ?2))
      AND NOT EXISTS (SELECT 1 FROM agents WHERE hostname = ?1 AND owner_lineage_id <> ?3)`,
    params: [agent.hostname, labels, agent.owner.lineage],
  });
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `INSERT INTO agents (hostname, labels, registered_at, last_seen, cursor_seq, owner_lineage_id)
         VALUES (?1, COALESCE(?2, '{}'), ?3, ?3, (SELECT COALESCE(MAX(seq), 0) FROM jobs), ?4)
         ON CONFLICT (hostname) DO UPDATE SET labels = COALESCE(?2, labels), last_seen = ?3,
           owner_lineage_id = ?4
         WHERE agents.owner_lineage_id IS NULL OR agents.owner_lineage_id = ?4`,
      )
      .bind(agent.hostname, labels, agent.now, agent.owner.lineage),
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
    db
      .prepare(
        `SELECT ${AGENT_COLUMNS} FROM agents a WHERE hostname = ?1 AND owner_lineage_id = ?2`,
      )
      .bind(agent.hostname, agent.owner.lineage),
  ]);
  return (results[4]?.results[0] as AgentRow | undefined) ?? null;
}

/** A page of agents by hostname, after the hostname `cursor`; one row past the page. */
export async function listAgents(
  db: Db,
  page: { limit: number; cursor?: string | undefined },
): Promise<{ items: AgentRow[]; next_cursor: string | null }> {
  const { results } = await db
    .prepare(`SELECT ${AGENT_COLUMNS} FROM agents a WHERE hostname > ?2 ORDER BY hostname LIMIT ?1`)
    .bind(page.limit + 1, page.cursor ?? "")
    .all<AgentRow>();
  return pageOf(results, page.limit, (row) => row.hostname);
}

/** Whether the hostname is registered, and the lineage that owns it: why an agent write was refused. */
export async function findAgentOwner(
  db: Db,
  hostname: string,
): Promise<{ owner: string | null } | null> {
  return db
    .prepare("SELECT owner_lineage_id AS owner FROM agents WHERE hostname = ?1")
    .bind(hostname)
    .first<{ owner: string | null }>();
}

const DEREGISTERED = "agent deregistered";
const CANCELLED = "cancelled";

/**
 * One batch, by the owner or an admin; null when nothing was deleted (no such agent, or another
 * lineage owns it). What the agent held ends with it: its rows of jobs meant for it (its hostname,
 * `_all`, its labels; created since its last claim too) are skipped with the reason in their
 * timelines, and the leases of `_any` jobs it held run out now, so the next claim of any agent
 * takes them over. Its finished rows stay: they are the jobs' history.
 */
export async function deleteAgent(
  db: Db,
  agent: { hostname: string; now: string; actor: Actor },
): Promise<{ revision: number; freedAnyJobs: number; changed: string[] } | null> {
  const write = beginWrite(db, {
    sql: `EXISTS (SELECT 1 FROM agents WHERE hostname = ?1
      AND (?3 = 1 OR owner_lineage_id IS NULL OR owner_lineage_id = ?2))`,
    params: [agent.hostname, agent.actor.lineage, agent.actor.admin ? 1 : 0],
  });
  const held = `hostname = ?1 AND state IN ('pending', ${OPEN.slice(1, -1)})
    AND EXISTS (SELECT 1 FROM jobs WHERE id = job_agents.job_id AND target_hostname <> '_any')`;
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `INSERT OR IGNORE INTO job_agents (job_id, job_seq, hostname, state, due_at)
         SELECT j.id, j.seq, ?1, 'pending', COALESCE(j.not_before, '') ${NEW_FOR_AGENT} AND ${write.applies}`,
      )
      .bind(agent.hostname),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT job_id, 'skipped', ?1, ?2, ${CURRENT_REVISION}, json_object('error', '${DEREGISTERED}')
         FROM job_agents WHERE ${held} AND ${write.applies} ORDER BY job_seq`,
      )
      .bind(agent.hostname, agent.now),
    db
      .prepare(
        `UPDATE job_agents SET state = 'skipped', error = '${DEREGISTERED}', finished_at = ?2,
           lease_token_hash = NULL, revision = ${CURRENT_REVISION}
         WHERE ${held} AND ${write.applies}`,
      )
      .bind(agent.hostname, agent.now),
    db
      .prepare(
        `UPDATE job_agents SET lease_expires_at = ?2, lease_token_hash = NULL
         WHERE hostname = ?1 AND state IN ${OPEN} AND lease_expires_at > ?2
           AND EXISTS (SELECT 1 FROM jobs WHERE id = job_agents.job_id AND target_hostname = '_any')
           AND ${write.applies}`,
      )
      .bind(agent.hostname, agent.now),
    db.prepare(cancelledEventsSql("?1", `${TOUCHED} AND ${write.applies}`)).bind(agent.now),
    db.prepare(refreshJobs("?1", `${TOUCHED} AND ${write.applies}`)).bind(agent.now),
    ...automaticRetries(db, { sql: `o.${TOUCHED}`, params: [] }, agent.now, write.applies),
    db
      .prepare(`DELETE FROM agent_labels WHERE hostname = ?1 AND ${write.applies}`)
      .bind(agent.hostname),
    db.prepare(`DELETE FROM agents WHERE hostname = ?1 AND ${write.applies}`).bind(agent.hostname),
    db.prepare(
      `SELECT ${CURRENT_REVISION} AS revision,
         (SELECT json_group_array(DISTINCT job_id) FROM job_agents INDEXED BY job_agents_revision
          WHERE revision = ${CURRENT_REVISION} AND ${write.applies}) AS changed`,
    ),
  ]);
  if ((results[0]?.meta.changes ?? 0) === 0) return null;
  const last = results.at(-1)?.results[0] as { revision: number; changed: string } | undefined;
  return {
    revision: last?.revision ?? 0,
    freedAnyJobs: results[4]?.meta.changes ?? 0,
    changed: JSON.parse(last?.changed ?? "[]") as string[],
  };
}

/**
 * The job's status and the list's summary of the answers, recomputed from the agent rows with the
 * rules of `statusOf` and `summarizeEvents`; the counters follow by trigger.
 */
export function refreshJobs(now: string, where: string): string {
  const answers = `FROM job_agents WHERE job_id = jobs.id AND state IN ${FINAL}`;
  return `UPDATE jobs SET
    status = (SELECT CASE
        WHEN jobs.cancel_requested = 1 AND COALESCE(SUM(state IN ${OPEN}), 0) = 0 THEN 'cancelled'
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

/**
 * The `cancelled` event of each job `where` selects that was asked to stop, that no agent holds
 * any more, and that has none yet: the moment it ends `cancelled`.
 */
export function cancelledEventsSql(now: string, where: string): string {
  return `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
    SELECT id, 'cancelled', '_api', ${now}, ${CURRENT_REVISION}, NULL FROM jobs
    WHERE ${where} AND cancel_requested = 1
      AND NOT EXISTS (SELECT 1 FROM job_agents WHERE job_id = jobs.id AND state IN ${OPEN})
      AND NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = jobs.id AND e.event = 'cancelled')
    ORDER BY seq`;
}

// Claim parameters: ?1 hostname, ?2 now, ?3 lease expiry, ?4 limit, ?5 max deliveries.

/** An agent's open rows, through the index by (hostname, due_at, job_seq). */
const OPEN_ROWS = `FROM job_agents INDEXED BY job_agents_open
  WHERE hostname = ?1 AND state IN ('pending', 'acknowledged', 'started')`;
const ROW_NOT_CANCELLED = `NOT EXISTS (SELECT 1 FROM jobs WHERE id = job_agents.job_id AND cancel_requested = 1)`;

/**
 * The agent's own due rows, oldest first: pending, or its lease ran out with deliveries left
 * (`due_at` ''), in seq order; and pending rows whose job's time came (`due_at` up to now), by
 * that time. Rows whose time is still to come are never read.
 */
const OWN_DUE = `SELECT job_id, seq FROM (
    SELECT * FROM (SELECT job_id, job_seq AS seq ${OPEN_ROWS} AND due_at = ''
      AND (state = 'pending' OR (lease_expires_at <= ?2 AND delivery < ?5)) AND ${ROW_NOT_CANCELLED}
      ORDER BY job_seq LIMIT ?4)
    UNION ALL SELECT * FROM (SELECT job_id, job_seq AS seq ${OPEN_ROWS} AND due_at > '' AND due_at <= ?2
      AND state = 'pending' AND ${ROW_NOT_CANCELLED}
      ORDER BY due_at LIMIT ?4))
  ORDER BY seq LIMIT ?4`;

/**
 * Open `_any` jobs through their two indexes: those without a time in seq order, and those with
 * one (not_before) by that time, read only up to now, so jobs still waiting cost a claim nothing.
 * `where` is the rest of the condition (on `j`); ?2 is now.
 */
function openAnyJobs(columns: string, where: string, limit: string): string {
  const open = "j.target_hostname = '_any' AND j.status IN ('unprocessed', 'processing')";
  return `SELECT * FROM (SELECT ${columns} FROM jobs j INDEXED BY jobs_any_open
      WHERE ${open} AND j.not_before IS NULL AND ${where} ORDER BY j.seq ${limit})
    UNION ALL SELECT * FROM (SELECT ${columns} FROM jobs j INDEXED BY jobs_any_timed
      WHERE ${open} AND j.not_before IS NOT NULL AND j.not_before <= ?2 AND ${where}
      ORDER BY j.not_before ${limit})`;
}

/** `_any` jobs that nobody holds, nobody finished, and this agent has not lost before. */
const ANY_DUE = `SELECT job_id, seq FROM (${openAnyJobs(
  "j.id AS job_id, j.seq",
  `j.cancel_requested = 0 AND NOT EXISTS (SELECT 1 FROM job_agents h WHERE h.job_id = j.id
      AND (h.hostname = ?1 OR (h.state IN ${OPEN} AND (h.lease_expires_at > ?2 OR h.delivery >= ?5))))`,
  "LIMIT ?4",
)}) ORDER BY seq LIMIT ?4`;

/** Jobs created since the agent's cursor that are meant for it: its hostname, `_all`, its labels. */
const NEW_FOR_AGENT = `FROM agents a JOIN jobs j ON j.seq > a.cursor_seq
  WHERE a.hostname = ?1 AND j.target_hostname <> '_any' AND j.cancel_requested = 0
    AND (j.target_hostname IN ('_all', a.hostname) OR EXISTS (
      SELECT 1 FROM agent_labels l WHERE l.hostname = a.hostname
        AND l.key = substr(j.target_hostname, 1, instr(j.target_hostname, ':') - 1)
        AND (l.value = substr(j.target_hostname, instr(j.target_hostname, ':') + 1)
          OR substr(l.value, 1, length(j.target_hostname) - instr(j.target_hostname, ':') + 1)
             = substr(j.target_hostname, instr(j.target_hostname, ':') + 1) || '.')))`;

/** The jobs whose agent rows this batch changed. */
const TOUCHED = `id IN (SELECT job_id FROM job_agents WHERE revision = ${CURRENT_REVISION})`;

const CANCEL_ASKED =
  "EXISTS (SELECT 1 FROM jobs WHERE id = job_agents.job_id AND cancel_requested = 1)";

/**
 * Leases that ran out on the last allowed delivery, or of a job asked to stop: those rows end
 * (failed, or skipped as cancelled) instead of being handed out again.
 */
const EXHAUSTED = `SELECT rowid FROM job_agents INDEXED BY job_agents_lease
  WHERE state IN ${OPEN} AND lease_expires_at <= ?2 AND (delivery >= ?5 OR ${CANCEL_ASKED})
  ORDER BY lease_expires_at, rowid LIMIT ${MAX_DEADLINE_SWEEP}`;
const SWEPT_STATE = `CASE WHEN ${CANCEL_ASKED} THEN 'skipped' ELSE 'failed' END`;
const SWEPT_ERROR = `CASE WHEN ${CANCEL_ASKED} THEN '${CANCELLED}' ELSE 'max deliveries exceeded' END`;

const TAKEN_OVER = `job_id IN (SELECT job_id FROM (${OWN_DUE})) AND hostname <> ?1 AND state IN ${OPEN}
  AND EXISTS (SELECT 1 FROM jobs WHERE id = job_agents.job_id AND target_hostname = '_any')`;

/** Why the previous holder of a taken-over `_any` job lost it. */
const TAKEN_OVER_REASON = `CASE WHEN EXISTS (SELECT 1 FROM agents WHERE hostname = job_agents.hostname)
  THEN 'lease expired' ELSE '${DEREGISTERED}' END || '; redelivered to ' || ?1`;

export type ClaimRequest = {
  hostname: string;
  owner: Actor;
  now: string;
  /** `last_seen` is written only when older than this (or when the claim hands something out). */
  seenBefore: string;
  leaseExpiresAt: string;
  limit: number;
  maxDeliveries: number;
};

/** The jobs handed out, and what a long claim waits with: the revision seen and the labels. */
export type ClaimOutcome =
  | {
      jobs: ClaimedJob[];
      revision: number;
      labels: Labels;
      /** Every job whose agent rows this claim changed: handed out, taken over, or swept. */
      changed: string[];
    }
  | { refused: true };

/**
 * One batch, conditions in SQL, so two agents claiming at once never both get an `_any` job:
 * D1 runs batches one at a time, and each hands out only what is still due when it runs.
 * Every delivery gets a new lease token: `limit` are made here, the batch gives the n-th job it
 * hands out (oldest first) the n-th token's hash, and only the hash is stored.
 * Also fails, for their agents, leases that ran out on the last allowed delivery.
 * A claim that finds nothing due writes no row, except the agent's (`last_seen`, and its cursor
 * past the jobs not meant for it) once `last_seen` is older than `seenBefore` or the cursor is
 * CURSOR_SLACK jobs behind.
 * Refused when the agent is not registered or another lineage owns it.
 */
export async function claimJobs(db: Db, claim: ClaimRequest): Promise<ClaimOutcome> {
  const tokens = Array.from({ length: claim.limit }, newLeaseToken);
  const hashes = await Promise.all(tokens.map(hashLeaseToken));
  const tokenOf = new Map(hashes.map((hash, i) => [hash, tokens[i] as string]));
  const params = [
    claim.hostname,
    claim.now,
    claim.leaseExpiresAt,
    claim.limit,
    claim.maxDeliveries,
    claim.owner.lineage,
    JSON.stringify(hashes),
  ] as const;
  const [h, now, , , , lineage] = params;
  const due = params.slice(0, 5);
  // One condition, so its numbered parameters are the begin statement's own.
  const write = beginWrite(db, {
    sql: `${ownedBy("?1", "?6")} AND (EXISTS (${OWN_DUE}) OR EXISTS (${ANY_DUE})
      OR EXISTS (SELECT 1 ${NEW_FOR_AGENT}) OR EXISTS (${EXHAUSTED}))`,
    params: params.slice(0, 6),
  });
  const applies = write.applies;
  const touched = TOUCHED;
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `INSERT OR IGNORE INTO job_agents (job_id, job_seq, hostname, state, due_at)
         SELECT j.id, j.seq, ?1, 'pending', COALESCE(j.not_before, '') ${NEW_FOR_AGENT} AND ${applies}`,
      )
      .bind(h),
    db
      .prepare(
        `UPDATE agents SET last_seen = ?2, owner_lineage_id = ?3,
           cursor_seq = MAX(cursor_seq, (SELECT COALESCE(MAX(seq), 0) FROM jobs))
         WHERE hostname = ?1 AND (owner_lineage_id IS NULL OR owner_lineage_id = ?3)
           AND (${applies} OR owner_lineage_id IS NULL OR last_seen <= ?4
             OR cursor_seq < (SELECT COALESCE(MAX(seq), 0) FROM jobs) - ${CURSOR_SLACK})`,
      )
      .bind(h, now, lineage, claim.seenBefore),
    db
      .prepare(
        `INSERT INTO job_agents (job_id, job_seq, hostname, state, delivery)
         SELECT c.job_id, c.seq, ?1, 'pending', (SELECT COALESCE(MAX(delivery), 0) FROM job_agents WHERE job_id = c.job_id)
         FROM (SELECT job_id, seq, 0 AS kind FROM (${OWN_DUE})
               UNION ALL SELECT job_id, seq, 1 AS kind FROM (${ANY_DUE})
               ORDER BY seq LIMIT ?4) c
         WHERE c.kind = 1 AND ${applies}`,
      )
      .bind(...due),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT job_id, 'skipped', hostname, ?2, ${CURRENT_REVISION}, json_object('error', ${TAKEN_OVER_REASON})
         FROM job_agents WHERE ${TAKEN_OVER} AND ${applies} ORDER BY job_id`,
      )
      .bind(...due),
    db
      .prepare(
        `UPDATE job_agents SET state = 'skipped', error = ${TAKEN_OVER_REASON},
           finished_at = ?2, lease_token_hash = NULL, revision = ${CURRENT_REVISION}
         WHERE ${TAKEN_OVER} AND ${applies}`,
      )
      .bind(...due),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data, lease_token_hash)
         SELECT job_id, 'acknowledged', ?1, ?2, ${CURRENT_REVISION}, json_object('delivery', delivery + 1, 'lease_expires_at', ?3),
           json_extract(?7, '$[' || (row_number() OVER (ORDER BY job_seq) - 1) || ']')
         FROM job_agents WHERE hostname = ?1 AND job_id IN (SELECT job_id FROM (${OWN_DUE})) AND ${applies}
         ORDER BY job_seq`,
      )
      .bind(...params),
    db
      .prepare(
        `UPDATE job_agents SET state = CASE state WHEN 'pending' THEN 'acknowledged' ELSE state END,
           due_at = '', delivery = delivery + 1, lease_expires_at = ?3, revision = ${CURRENT_REVISION},
           lease_token_hash = (SELECT e.lease_token_hash FROM job_events e
             WHERE e.job_id = job_agents.job_id AND e.hostname = ?1 AND e.event = 'acknowledged'
               AND e.revision = ${CURRENT_REVISION})
         WHERE hostname = ?1 AND job_id IN (SELECT job_id FROM (${OWN_DUE})) AND ${applies}`,
      )
      .bind(...due),
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT job_id, ${SWEPT_STATE}, hostname, ?2, ${CURRENT_REVISION}, json_object('error', ${SWEPT_ERROR})
         FROM job_agents WHERE rowid IN (${EXHAUSTED}) AND ${applies} ORDER BY job_id, hostname`,
      )
      .bind(...due),
    db
      .prepare(
        `UPDATE job_agents SET state = ${SWEPT_STATE}, error = ${SWEPT_ERROR}, finished_at = ?2,
           lease_token_hash = NULL, revision = ${CURRENT_REVISION}
         WHERE rowid IN (${EXHAUSTED}) AND ${applies}`,
      )
      .bind(...due),
    db.prepare(cancelledEventsSql("?1", `${touched} AND ${applies}`)).bind(now),
    db.prepare(refreshJobs("?1", `${touched} AND ${applies}`)).bind(now),
    ...automaticRetries(db, { sql: `o.${touched}`, params: [] }, now, applies),
    db
      .prepare(
        `SELECT j.id, j.operation, j.target_hostname, j.attempt, ja.delivery, ja.lease_expires_at, ja.lease_token_hash
         FROM job_agents ja JOIN jobs j ON j.id = ja.job_id
         WHERE ja.hostname = ?1 AND ja.revision = ${CURRENT_REVISION} AND ja.state IN ${OPEN} AND ${applies}
         ORDER BY ja.job_seq`,
      )
      .bind(h),
    db
      .prepare(
        `SELECT ${ownedBy("?1", "?2")} AS owned, ${CURRENT_REVISION} AS revision,
           (SELECT labels FROM agents WHERE hostname = ?1) AS labels,
           (SELECT json_group_array(DISTINCT job_id) FROM job_agents INDEXED BY job_agents_revision
            WHERE revision = ${CURRENT_REVISION} AND ${applies}) AS changed`,
      )
      .bind(h, lineage),
  ]);
  const agent = results.at(-1)?.results[0] as
    | { owned: number; revision: number; labels: string | null; changed: string }
    | undefined;
  if (agent?.owned !== 1) return { refused: true };
  type Row = Omit<ClaimedJob, "operation" | "lease_token"> & {
    operation: string;
    lease_token_hash: string;
  };
  return {
    jobs: ((results.at(-2)?.results ?? []) as Row[]).map(({ lease_token_hash, ...row }) => ({
      ...row,
      operation: JSON.parse(row.operation) as Operation,
      lease_token: tokenOf.get(lease_token_hash) ?? "",
    })),
    revision: agent.revision,
    labels: JSON.parse(agent.labels ?? "{}") as Labels,
    changed: JSON.parse(agent.changed) as string[],
  };
}

/** A delivery as its agent names it: the job, the hostname, the key acting, the token shown. */
export type Delivery = { jobId: string; hostname: string; owner: Actor; tokenHash: string };

/** When the agent acted, and the `last_seen` older than which that is written down. */
export type Seen = { now: string; seenBefore: string };

/** The job ?1 was not asked to stop. */
const NOT_CANCELLED = "NOT EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND cancel_requested = 1)";

/** The delivery is open, its token is the one shown and its lease has not run out (at ?5). */
const DELIVERY_VALID = `EXISTS (SELECT 1 FROM job_agents WHERE job_id = ?1 AND hostname = ?2
  AND state IN ${OPEN} AND lease_token_hash = ?4 AND lease_expires_at > ?5)`;

export type AgentReport = Delivery & Seen & { body: AgentReportBody };

export type ReportOutcome = { job_id: string; status: JobStatus; revision: number };

function eventData(body: AgentReport["body"]): string | null {
  const data: Record<string, unknown> = {};
  if (body.result !== undefined) data.result = body.result;
  if (body.changed !== undefined) data.changed = body.changed;
  if (body.error !== undefined) data.error = body.error;
  return Object.keys(data).length > 0 ? JSON.stringify(data) : null;
}

/**
 * One batch: the event, the agent's row, the job's status and summary, the counters and the
 * revision. Only the current delivery may report: its agent is owned by the caller's lineage, the
 * token is that delivery's, its lease has not run out, and `started` comes once per delivery.
 * A final report ends the delivery and forgets its token. Null when refused.
 */
export async function reportEvent(db: Db, report: AgentReport): Promise<ReportOutcome | null> {
  const { body } = report;
  const write = beginWrite(db, {
    sql: `${ownedBy("?2", "?3")} AND ${DELIVERY_VALID} AND ${NOT_CANCELLED} AND (?6 <> 'started' OR NOT EXISTS (
      SELECT 1 FROM job_agents WHERE job_id = ?1 AND hostname = ?2 AND started_delivery = delivery))`,
    params: [
      report.jobId,
      report.hostname,
      report.owner.lineage,
      report.tokenHash,
      report.now,
      body.event,
    ],
  });
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `UPDATE agents SET last_seen = ?2, owner_lineage_id = ?3
         WHERE hostname = ?1 AND ${write.applies} AND (owner_lineage_id IS NULL OR last_seen <= ?4)`,
      )
      .bind(report.hostname, report.now, report.owner.lineage, report.seenBefore),
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
           started_delivery = CASE WHEN ?3 = 'started' THEN delivery ELSE started_delivery END,
           finished_at = CASE WHEN ?3 = 'started' THEN NULL ELSE ?4 END,
           lease_token_hash = CASE WHEN ?3 = 'started' THEN lease_token_hash END,
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
    ...automaticRetries(db, { sql: "o.id = ?", params: [report.jobId] }, report.now, write.applies),
  ]);
  return (results[4]?.results[0] as ReportOutcome | undefined) ?? null;
}

/**
 * One batch, for a delivery of a job asked to stop (its report or lease extension was refused for
 * that): the delivery ends skipped as cancelled, and the job ends `cancelled` when nobody else
 * holds it. Null when there was nothing to end (another request ended it first).
 */
export async function endCancelledDelivery(
  db: Db,
  delivery: Delivery,
  now: string,
): Promise<number | null> {
  const write = beginWrite(db, {
    sql: `${ownedBy("?2", "?3")} AND NOT ${NOT_CANCELLED} AND EXISTS (SELECT 1 FROM job_agents
      WHERE job_id = ?1 AND hostname = ?2 AND state IN ${OPEN} AND lease_token_hash = ?4)`,
    params: [delivery.jobId, delivery.hostname, delivery.owner.lineage, delivery.tokenHash],
  });
  const results = await db.batch([
    write.begin,
    db
      .prepare(
        `INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
         SELECT ?1, 'skipped', ?2, ?3, ${CURRENT_REVISION}, json_object('error', '${CANCELLED}') WHERE ${write.applies}`,
      )
      .bind(delivery.jobId, delivery.hostname, now),
    db
      .prepare(
        `UPDATE job_agents SET state = 'skipped', error = '${CANCELLED}', finished_at = ?3,
           lease_token_hash = NULL, revision = ${CURRENT_REVISION}
         WHERE job_id = ?1 AND hostname = ?2 AND ${write.applies}`,
      )
      .bind(delivery.jobId, delivery.hostname, now),
    db.prepare(cancelledEventsSql("?2", `id = ?1 AND ${write.applies}`)).bind(delivery.jobId, now),
    db
      .prepare(`${refreshJobs("?2", `id = ?1 AND ${write.applies}`)} RETURNING revision`)
      .bind(delivery.jobId, now),
  ]);
  return (results[4]?.results[0] as { revision: number } | undefined)?.revision ?? null;
}

export type LeaseExtension = Delivery & Seen & { leaseExpiresAt: string };

export type ExtendedLease = { job_id: string; lease_expires_at: string; delivery: number };

/**
 * One batch that takes no revision (the job's data does not change): the open delivery's lease
 * runs until `leaseExpiresAt`, and the agent is seen. Null when refused, on the report's rules.
 */
export async function extendLease(db: Db, lease: LeaseExtension): Promise<ExtendedLease | null> {
  const params = [
    lease.jobId,
    lease.hostname,
    lease.owner.lineage,
    lease.tokenHash,
    lease.now,
    lease.leaseExpiresAt,
  ];
  const valid = `${ownedBy("?2", "?3")} AND ${DELIVERY_VALID} AND ${NOT_CANCELLED}`;
  const [, extended] = await db.batch([
    db
      .prepare(
        `UPDATE agents SET last_seen = ?5 WHERE hostname = ?2 AND ${valid} AND last_seen <= ?6`,
      )
      .bind(...params.slice(0, 5), lease.seenBefore),
    db
      .prepare(
        `UPDATE job_agents SET lease_expires_at = ?6
         WHERE job_id = ?1 AND hostname = ?2 AND ${valid}
         RETURNING job_id, lease_expires_at, delivery`,
      )
      .bind(...params),
  ]);
  return (extended?.results[0] as ExtendedLease | undefined) ?? null;
}

export type DeliveryRefusal = {
  /** The lineage owning the agent; undefined when no such agent is registered. */
  agentOwner: string | null | undefined;
  jobExists: boolean;
  /** The job was asked to stop (it may have ended `cancelled` already). */
  cancelRequested: boolean;
  /** This agent's row: its state, delivery and lease; null when it never had the job. */
  state: string | null;
  delivery: number | null;
  leaseExpiresAt: string | null;
  startedDelivery: number | null;
  /** The token shown is this agent's open delivery's. */
  tokenCurrent: boolean;
  /** The delivery whose token was shown, when it was one of this job's. */
  tokenDelivery: number | null;
  /** The job's latest delivery, to any agent, and the agent that holds an `_any` job now. */
  latestDelivery: number | null;
  holder: string | null;
};

/** Why a report or lease extension was refused: everything the answer names, in one read. */
export async function findDeliveryRefusal(db: Db, delivery: Delivery): Promise<DeliveryRefusal> {
  const row = await db
    .prepare(
      `SELECT
         (SELECT json_object('owner', owner_lineage_id) FROM agents WHERE hostname = ?2) AS agent,
         EXISTS (SELECT 1 FROM jobs WHERE id = ?1) AS job_exists,
         EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND cancel_requested = 1) AS cancel_requested,
         ja.state, ja.delivery, ja.lease_expires_at, ja.started_delivery,
         COALESCE(ja.lease_token_hash = ?3, 0) AS token_current,
         (SELECT json_extract(e.data, '$.delivery') FROM job_events e INDEXED BY job_events_job
          WHERE e.job_id = ?1 AND e.event = 'acknowledged' AND e.lease_token_hash = ?3 LIMIT 1) AS token_delivery,
         (SELECT MAX(delivery) FROM job_agents WHERE job_id = ?1) AS latest_delivery,
         (SELECT hostname FROM job_agents WHERE job_id = ?1 AND hostname <> ?2 AND state IN ${OPEN}
            AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND target_hostname = '_any') LIMIT 1) AS holder
       FROM (SELECT 1) LEFT JOIN job_agents ja ON ja.job_id = ?1 AND ja.hostname = ?2`,
    )
    .bind(delivery.jobId, delivery.hostname, delivery.tokenHash)
    .first<{
      agent: string | null;
      job_exists: number;
      cancel_requested: number;
      state: string | null;
      delivery: number | null;
      lease_expires_at: string | null;
      started_delivery: number | null;
      token_current: number;
      token_delivery: number | null;
      latest_delivery: number | null;
      holder: string | null;
    }>();
  return {
    agentOwner: row?.agent ? (JSON.parse(row.agent) as { owner: string | null }).owner : undefined,
    jobExists: row?.job_exists === 1,
    cancelRequested: row?.cancel_requested === 1,
    state: row?.state ?? null,
    delivery: row?.delivery ?? null,
    leaseExpiresAt: row?.lease_expires_at ?? null,
    startedDelivery: row?.started_delivery ?? null,
    tokenCurrent: row?.token_current === 1,
    tokenDelivery: row?.token_delivery ?? null,
    latestDelivery: row?.latest_delivery ?? null,
    holder: row?.holder ?? null,
  };
}

/** Where a reader of the change feed stands: the last job seen, the time of its last read. */
export type FeedPosition = { seq: number; at: string; initRevision: number };

export type Feed = {
  position: FeedPosition;
  /** The store revision at this read. */
  revision: number;
  /** Jobs created since the last read, with the revision that created each. */
  jobs: { target: string; revision: number }[];
  /** Who a lease that ran out since the last read is due to again: `_any`, or its holder. */
  leaseEnds: string[];
  /** `_any` jobs due (unheld) that were already there at the last read: nobody took them. */
  anyBacklog: number;
  /** The targets of jobs whose `not_before` came since the last read. */
  cameDue: string[];
};

const FEED_PAGE = 1000;

/**
 * One read-only batch for the whole fleet: what became due since `from` (undefined: just where the
 * feed stands now). The jobs come in seq order, a page at a time; leases by their expiry index.
 */
export async function readFeed(db: Db, from: FeedPosition | undefined, now: Date): Promise<Feed> {
  const at = now.toISOString();
  const head = db.prepare(
    `SELECT COALESCE(MAX(seq), 0) AS seq, ${CURRENT_REVISION} AS revision
     FROM jobs`,
  );
  if (from === undefined) {
    const row = await head.first<{ seq: number; revision: number }>();
    const seq = row?.seq ?? 0;
    const revision = row?.revision ?? 0;
    return {
      position: { seq, at, initRevision: revision },
      revision,
      jobs: [],
      leaseEnds: [],
      anyBacklog: 0,
      cameDue: [],
    };
  }
  const [top, jobs, leases, backlog, due] = await db.batch<Record<string, unknown>>([
    head,
    db
      .prepare(
        `SELECT seq, target_hostname AS target, created_revision AS revision FROM jobs
         WHERE seq > ?1 ORDER BY seq LIMIT ${FEED_PAGE}`,
      )
      .bind(from.seq),
    db
      .prepare(
        `SELECT CASE j.target_hostname WHEN '_any' THEN '_any' ELSE ja.hostname END AS target
         FROM job_agents ja INDEXED BY job_agents_lease JOIN jobs j ON j.id = ja.job_id
         WHERE ja.state IN ${OPEN} AND ja.lease_expires_at > ?1 AND ja.lease_expires_at <= ?2`,
      )
      .bind(from.at, at),
    db
      .prepare(
        `SELECT COUNT(*) AS n FROM (${openAnyJobs(
          "j.id",
          `j.seq <= ?1 AND j.cancel_requested = 0 AND NOT EXISTS (SELECT 1 FROM job_agents h
             WHERE h.job_id = j.id AND h.state IN ${OPEN} AND h.lease_expires_at > ?2)`,
          "",
        )})`,
      )
      .bind(from.seq, at),
    db
      .prepare(
        `SELECT target_hostname AS target FROM jobs INDEXED BY jobs_waiting
         WHERE not_before IS NOT NULL AND status = 'unprocessed' AND not_before > ?1 AND not_before <= ?2`,
      )
      .bind(from.at, at),
  ]);
  const head0 = top?.results[0] as { seq: number; revision: number } | undefined;
  const created = (jobs?.results ?? []) as { seq: number; target: string; revision: number }[];
  const full = created.length === FEED_PAGE;
  return {
    position: {
      seq: full ? (created.at(-1)?.seq ?? from.seq) : Math.max(from.seq, head0?.seq ?? 0),
      at,
      initRevision: from.initRevision,
    },
    revision: head0?.revision ?? 0,
    jobs: created.map(({ target, revision }) => ({ target, revision })),
    leaseEnds: ((leases?.results ?? []) as { target: string }[]).map((l) => l.target),
    anyBacklog: ((backlog?.results[0] as { n: number } | undefined)?.n ?? 0) as number,
    cameDue: ((due?.results ?? []) as { target: string }[]).map((d) => d.target),
  };
}

const TOUCH_PAGE = 500;

/**
 * `last_seen` for agents waiting in a long claim, in one batch for the fleet: written where it is
 * older than `staleAfterMs` and the agent is still owned by the lineage that waited.
 */
export async function touchAgents(
  db: Db,
  agents: { hostname: string; lineage: string }[],
  now: Date,
  staleAfterMs: number,
): Promise<void> {
  const statements = [];
  for (let i = 0; i < agents.length; i += TOUCH_PAGE) {
    statements.push(
      db
        .prepare(
          `UPDATE agents SET last_seen = ?1
           FROM (SELECT json_extract(value, '$.hostname') AS hostname, json_extract(value, '$.lineage') AS lineage
                 FROM json_each(?3)) AS waited
           WHERE agents.hostname = waited.hostname AND agents.owner_lineage_id = waited.lineage
             AND agents.last_seen < ?2`,
        )
        .bind(
          now.toISOString(),
          new Date(now.getTime() - staleAfterMs).toISOString(),
          JSON.stringify(agents.slice(i, i + TOUCH_PAGE)),
        ),
    );
  }
  if (statements.length > 0) await db.batch(statements);
}
