import { purgeIdempotencyKeys } from "../db/idempotency";
import { deleteJobsCreatedBefore } from "../db/jobs";

const DAY_MS = 86_400_000;
export const RETENTION_BATCH = 1000;
// Four statements per batch: 10 batches stay within the 50 queries of a free-plan invocation.
export const RETENTION_MAX_BATCHES = 10;
// One statement each: with the retention's 40, within the free plan's 50.
export const PURGE_MAX_BATCHES = 9;

export type RetentionRun = { cutoff: string | null; jobs: number; idempotency_keys: number };

/**
 * Deletes jobs created more than RETENTION_DAYS ago, oldest first, in bounded batches, and
 * expired Idempotency-Key records (up to 9,000 a run; each idempotent write also removes two). RETENTION_DAYS of 0 (or anything not a positive number) keeps
 * jobs forever.
 */
export async function applyRetention(env: Env, now: number): Promise<RetentionRun> {
  const days = Number(env.RETENTION_DAYS);
  const cutoff = days > 0 ? new Date(now - days * DAY_MS).toISOString() : null;
  let jobs = 0;
  if (cutoff) {
    for (let batch = 0; batch < RETENTION_MAX_BATCHES; batch++) {
      const deleted = await deleteJobsCreatedBefore(env.DB, cutoff, RETENTION_BATCH);
      jobs += deleted;
      if (deleted === 0) break;
    }
  }
  let idempotency_keys = 0;
  for (let batch = 0; batch < PURGE_MAX_BATCHES; batch++) {
    const purged = await purgeIdempotencyKeys(env.DB, new Date(now).toISOString(), RETENTION_BATCH);
    idempotency_keys += purged;
    if (purged < RETENTION_BATCH) break;
  }
  return { cutoff, jobs, idempotency_keys };
}

export const scheduled: ExportedHandlerScheduledHandler<Env> = async (controller, env) => {
  const run = await applyRetention(env, controller.scheduledTime);
  console.log(JSON.stringify({ level: "info", event: "retention", cron: controller.cron, ...run }));
};
