/** The agent settings in `wrangler.toml` [vars], read one way wherever they are needed. */

const DEFAULT_TTL_SECONDS = 60;
const DEFAULT_MAX_DELIVERIES = 5;

function positiveInt(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

/** Seen within this many seconds, an agent is `ready` (`AGENT_TTL_SECONDS`, default 60). */
export function agentTtlSeconds(env: Pick<Env, "AGENT_TTL_SECONDS">): number {
  return positiveInt(env.AGENT_TTL_SECONDS, DEFAULT_TTL_SECONDS);
}

/** Deliveries of a job to one agent before it is failed for it (`MAX_DELIVERIES`, default 5). */
export function maxDeliveries(env: Pick<Env, "MAX_DELIVERIES">): number {
  return positiveInt(env.MAX_DELIVERIES, DEFAULT_MAX_DELIVERIES);
}
