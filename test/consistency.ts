/**
 * The store's invariants as SQL, run in tests (on the Worker's D1, one batch) and by
 * scripts/load.mjs (through `wrangler d1 execute`). Every row a check returns is a violation.
 *
 * Deletes leave no tombstone, so a `retried` event naming a job that no longer exists, or a job
 * whose `retry_of` no longer exists, is only allowed when the caller says it deleted that job:
 * pass the ids of every job deleted (204) since the database was created.
 */

const SUBMITTED = `(SELECT job_id, COUNT(*) AS n, MIN(revision) AS revision
  FROM job_events WHERE event = 'submitted' GROUP BY job_id)`;
const RETRIED = `(SELECT seq, job_id, revision, json_extract(data, '$.new_job_id') AS new_job_id
  FROM job_events WHERE event = 'retried')`;
const ACTUAL_COUNTS = "(SELECT status, COUNT(*) AS n FROM jobs GROUP BY status)";
const ACTUAL_TARGET_COUNTS = `(SELECT target_hostname, status, COUNT(*) AS n FROM jobs
  GROUP BY target_hostname, status)`;
const STORE = "(SELECT revision FROM store_revision WHERE id = 1)";

/** Each query selects `subject` (what is wrong) and `ref` (what it points at, or a figure). */
export const CHECKS: Record<string, string> = {
  job_without_one_submitted_event: `SELECT j.id AS subject, CAST(COALESCE(s.n, 0) AS TEXT) AS ref
    FROM jobs j LEFT JOIN ${SUBMITTED} s ON s.job_id = j.id WHERE COALESCE(s.n, 0) <> 1`,
  submitted_event_not_in_creating_batch: `SELECT j.id AS subject, CAST(s.revision AS TEXT) AS ref
    FROM jobs j JOIN ${SUBMITTED} s ON s.job_id = j.id WHERE s.revision <> j.created_revision`,
  event_without_job: `SELECT CAST(e.seq AS TEXT) AS subject, e.job_id AS ref
    FROM job_events e WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id)`,
  retried_event_without_new_job: `SELECT r.job_id AS subject, r.new_job_id AS ref
    FROM ${RETRIED} r
    WHERE r.new_job_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = r.new_job_id)`,
  retried_event_not_in_retry_batch: `SELECT r.job_id AS subject, r.new_job_id AS ref
    FROM ${RETRIED} r JOIN jobs c ON c.id = r.new_job_id
    WHERE c.retry_of IS NOT r.job_id OR c.created_revision <> r.revision`,
  retry_without_one_retried_event: `SELECT c.id AS subject, c.retry_of AS ref
    FROM jobs c JOIN jobs o ON o.id = c.retry_of
    WHERE (SELECT COUNT(*) FROM ${RETRIED} r WHERE r.job_id = o.id AND r.new_job_id = c.id) <> 1`,
  retry_of_missing_job: `SELECT c.id AS subject, c.retry_of AS ref
    FROM jobs c
    WHERE c.retry_of IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.id = c.retry_of)`,
  retry_lineage_wrong: `SELECT c.id AS subject, c.retry_of AS ref
    FROM jobs c JOIN jobs o ON o.id = c.retry_of
    WHERE (c.attempt <> o.attempt + 1 AND c.attempt <> 1) OR c.root_job_id <> o.root_job_id
       OR (c.operation <> o.operation) <> c.operation_changed OR c.retried_by IS NULL
       OR (c.retried_by = 'automatic' AND (c.operation_changed = 1 OR c.attempt <> o.attempt + 1
         OR c.retry_policy IS NOT o.retry_policy OR c.target_hostname <> o.target_hostname))`,
  original_lineage_wrong: `SELECT j.id AS subject, j.root_job_id AS ref
    FROM jobs j WHERE j.retry_of IS NULL
      AND (j.root_job_id <> j.id OR j.attempt <> 1 OR j.retried_by IS NOT NULL OR j.operation_changed = 1)`,
  automatic_retry_not_one: `SELECT retry_of AS subject, CAST(COUNT(*) AS TEXT) AS ref
    FROM jobs WHERE retried_by = 'automatic' GROUP BY retry_of HAVING COUNT(*) > 1`,
  automatic_retry_without_reason: `SELECT c.id AS subject, c.retry_of AS ref
    FROM jobs c JOIN jobs o ON o.id = c.retry_of
    WHERE c.retried_by = 'automatic' AND (o.retry_policy IS NULL OR o.cancel_requested = 1
      OR o.attempt >= json_extract(o.retry_policy, '$.max_attempts')
      OR o.status NOT IN (SELECT value FROM json_each(o.retry_policy, '$.retry_on')))`,
  exhausted_without_reason: `SELECT id AS subject, status AS ref FROM jobs
    WHERE retries_exhausted = 1 AND (retry_policy IS NULL
      OR attempt < json_extract(retry_policy, '$.max_attempts')
      OR status NOT IN (SELECT value FROM json_each(retry_policy, '$.retry_on')))`,
  agent_row_time_wrong: `SELECT a.job_id AS subject, a.hostname || ' ' || a.due_at AS ref
    FROM job_agents a JOIN jobs j ON j.id = a.job_id
    WHERE (a.state = 'pending' AND a.due_at <> COALESCE(j.not_before, ''))
      OR (a.state <> 'pending' AND a.due_at <> '')`,
  cancelled_job_still_open: `SELECT j.id AS subject, a.hostname || ' ' || a.state AS ref
    FROM jobs j JOIN job_agents a ON a.job_id = j.id
    WHERE j.cancel_requested = 1 AND a.state = 'pending'
       OR j.status = 'cancelled' AND a.state IN ('pending', 'acknowledged', 'started')`,
  cancelled_without_request: `SELECT id AS subject, status AS ref FROM jobs
    WHERE status = 'cancelled' AND cancel_requested = 0`,
  counter_differs_from_count: `SELECT c.status AS subject, c.n || ' counted, ' || COALESCE(a.n, 0) || ' stored' AS ref
    FROM job_counts c LEFT JOIN ${ACTUAL_COUNTS} a ON a.status = c.status
    WHERE c.n <> COALESCE(a.n, 0)`,
  status_without_counter: `SELECT a.status AS subject, CAST(a.n AS TEXT) AS ref
    FROM ${ACTUAL_COUNTS} a WHERE NOT EXISTS (SELECT 1 FROM job_counts c WHERE c.status = a.status)`,
  target_counter_differs_from_count: `SELECT c.target_hostname || ' ' || c.status AS subject,
      c.n || ' counted, ' || COALESCE(a.n, 0) || ' stored' AS ref
    FROM job_target_counts c LEFT JOIN ${ACTUAL_TARGET_COUNTS} a
      ON a.target_hostname = c.target_hostname AND a.status = c.status
    WHERE c.n <> COALESCE(a.n, 0)
    UNION ALL
    SELECT a.target_hostname || ' ' || a.status, CAST(a.n AS TEXT) FROM ${ACTUAL_TARGET_COUNTS} a
    WHERE NOT EXISTS (SELECT 1 FROM job_target_counts c
      WHERE c.target_hostname = a.target_hostname AND c.status = a.status)`,
  revision_ahead_of_store: `SELECT j.id AS subject, CAST(MAX(j.revision, j.created_revision) AS TEXT) AS ref
    FROM jobs j WHERE MAX(j.revision, j.created_revision) > ${STORE}
    UNION ALL
    SELECT CAST(e.seq AS TEXT), CAST(e.revision AS TEXT) FROM job_events e WHERE e.revision > ${STORE}`,
  job_revision_behind_its_changes: `SELECT j.id AS subject, CAST(j.revision AS TEXT) AS ref
    FROM jobs j
    WHERE j.revision < j.created_revision
       OR j.revision < (SELECT COALESCE(MAX(e.revision), 0) FROM job_events e WHERE e.job_id = j.id)
       OR j.revision < (SELECT COALESCE(MAX(a.revision), 0) FROM job_agents a WHERE a.job_id = j.id)`,
  job_revisions_decreasing_in_commit_order: `SELECT id AS subject, CAST(created_revision AS TEXT) AS ref
    FROM (SELECT id, created_revision, LAG(created_revision) OVER (ORDER BY seq) AS previous FROM jobs)
    WHERE created_revision < previous`,
  event_revisions_decreasing_in_commit_order: `SELECT CAST(seq AS TEXT) AS subject, CAST(revision AS TEXT) AS ref
    FROM (SELECT seq, revision, LAG(revision) OVER (ORDER BY seq) AS previous FROM job_events)
    WHERE revision < previous`,
  status_differs_from_events: `WITH agent AS (
      SELECT job_id, hostname, SUM(event = 'failed') AS failed,
        MAX(CASE event WHEN 'acknowledged' THEN 1 WHEN 'started' THEN 2 WHEN 'completed' THEN 4 ELSE 3 END) AS p
      FROM job_events WHERE event NOT IN ('submitted', 'retried', 'cancel_requested', 'cancelled')
      GROUP BY job_id, hostname),
    derived AS (
      SELECT job_id, CASE
        WHEN SUM(p <= 2) > 0 THEN 'processing'
        WHEN SUM(p = 3 AND failed > 0) > 0 AND SUM(p = 4) > 0 THEN 'partial_failure'
        WHEN SUM(p = 3 AND failed > 0) > 0 THEN 'failed'
        WHEN SUM(p = 3) = COUNT(*) THEN 'skipped'
        ELSE 'completed' END AS status
      FROM agent GROUP BY job_id)
    SELECT id AS subject, status || ' stored, ' || from_events || ' from its events' AS ref
    FROM (SELECT j.id, j.status, CASE
        WHEN EXISTS (SELECT 1 FROM job_events c WHERE c.job_id = j.id AND c.event = 'cancelled') THEN 'cancelled'
        ELSE COALESCE(d.status, 'unprocessed') END AS from_events
      FROM jobs j LEFT JOIN derived d ON d.job_id = j.id)
    WHERE status <> from_events`,
  any_job_held_by_two_agents: `SELECT a.job_id AS subject, GROUP_CONCAT(a.hostname) AS ref
    FROM job_agents a JOIN jobs j ON j.id = a.job_id
    WHERE j.target_hostname = '_any' AND a.state IN ('acknowledged', 'started', 'completed', 'failed')
    GROUP BY a.job_id HAVING COUNT(*) > 1`,
  agent_state_without_its_event: `SELECT a.job_id AS subject, a.hostname || ' ' || a.state AS ref
    FROM job_agents a
    WHERE a.state <> 'pending' AND NOT EXISTS (SELECT 1 FROM job_events e
      WHERE e.job_id = a.job_id AND e.hostname = a.hostname AND e.event = a.state)`,
  agent_row_without_job: `SELECT a.job_id AS subject, a.hostname AS ref
    FROM job_agents a WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = a.job_id)`,
  agent_revision_ahead_of_store: `SELECT a.job_id AS subject, CAST(a.revision AS TEXT) AS ref
    FROM job_agents a WHERE a.revision > ${STORE}`,
  lease_token_on_closed_delivery: `SELECT a.job_id AS subject, a.hostname || ' ' || a.state AS ref
    FROM job_agents a
    WHERE a.lease_token_hash IS NOT NULL AND a.state NOT IN ('acknowledged', 'started')`,
  open_delivery_not_the_latest: `SELECT a.job_id AS subject, a.hostname || ' delivery ' || a.delivery AS ref
    FROM job_agents a
    WHERE a.lease_token_hash IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM (SELECT lease_token_hash, json_extract(data, '$.delivery') AS delivery
        FROM job_events WHERE job_id = a.job_id AND hostname = a.hostname AND event = 'acknowledged'
        ORDER BY seq DESC LIMIT 1) e
      WHERE e.lease_token_hash = a.lease_token_hash AND e.delivery = a.delivery)`,
  lease_token_reused: `SELECT lease_token_hash AS subject, CAST(COUNT(*) AS TEXT) AS ref
    FROM job_events WHERE lease_token_hash IS NOT NULL GROUP BY lease_token_hash HAVING COUNT(*) > 1`,
  agent_without_owner: `SELECT a.hostname AS subject, a.owner_lineage_id AS ref
    FROM agents a
    WHERE a.owner_lineage_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.lineage_id = a.owner_lineage_id)`,
};

export type Violation = { check: string; subject: string; ref: string | null };
type Row = { subject: string; ref: string | null };

const EXPLAINED_BY_DELETE = new Set(["retried_event_without_new_job", "retry_of_missing_job"]);

/**
 * Runs every check with `query` (given the SQL of each check, it returns each one's rows, in
 * order) and returns the violations that no known delete explains.
 */
export async function checkConsistency(
  query: (sql: string[]) => Promise<Row[][]>,
  deleted: ReadonlySet<string> = new Set(),
): Promise<Violation[]> {
  const names = Object.keys(CHECKS);
  const results = await query(Object.values(CHECKS));
  return names
    .flatMap((check, i) => (results[i] ?? []).map((row) => ({ check, ...row })))
    .filter((v) => !(EXPLAINED_BY_DELETE.has(v.check) && v.ref !== null && deleted.has(v.ref)));
}

/** The `query` for checkConsistency on a D1 binding: every check in one batch. */
export function onD1(db: D1Database) {
  return async (sql: string[]) =>
    (await db.batch<Row>(sql.map((s) => db.prepare(s)))).map((result) => result.results);
}
