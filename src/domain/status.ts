export const JOB_STATUSES = [
  "unprocessed",
  "processing",
  "completed",
  "failed",
  "partial_failure",
  "skipped",
  "cancelled",
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const EVENT_NAMES = [
  "submitted",
  "acknowledged",
  "started",
  "completed",
  "failed",
  "skipped",
  "retried",
  "cancel_requested",
  "cancelled",
] as const;
export type EventName = (typeof EVENT_NAMES)[number];

export type AgentEventName = "acknowledged" | "started" | "completed" | "failed" | "skipped";

/** Events the API writes itself; they never move a job's status. */
const API_EVENTS: ReadonlySet<EventName> = new Set([
  "submitted",
  "retried",
  "cancel_requested",
  "cancelled",
]);

/** Statuses a job does not leave (a retry is a new job). */
export const FINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "completed",
  "failed",
  "partial_failure",
  "skipped",
  "cancelled",
]);

const PRIORITY: Record<AgentEventName, number> = {
  acknowledged: 1,
  started: 2,
  failed: 3,
  skipped: 3,
  completed: 4,
};

export function isAgentEvent(event: EventName): event is AgentEventName {
  return !API_EVENTS.has(event);
}

/** Per agent, the event of highest priority; storage order never matters. */
export function agentStates(events: Iterable<{ event: EventName; hostname: string }>) {
  const states = new Map<string, AgentEventName>();
  for (const { event, hostname } of events) {
    if (!isAgentEvent(event)) continue;
    const current = states.get(hostname);
    if (current === undefined || PRIORITY[event] > PRIORITY[current]) states.set(hostname, event);
  }
  return states;
}

/** A job's status from its agents' states (the contract's status rules). */
export function statusOf(states: Iterable<AgentEventName>): JobStatus {
  let agents = 0;
  let completed = 0;
  let failed = 0;
  let skipped = 0;
  for (const state of states) {
    agents++;
    if (state === "acknowledged" || state === "started") return "processing";
    if (state === "completed") completed++;
    else if (state === "failed") failed++;
    else skipped++;
  }
  if (agents === 0) return "unprocessed";
  if (failed > 0 && completed > 0) return "partial_failure";
  if (failed > 0) return "failed";
  if (skipped === agents) return "skipped";
  return "completed";
}

/** A `cancelled` event ends the job whatever its agents said; otherwise the status rules. */
export function deriveStatus(events: Iterable<{ event: EventName; hostname: string }>): JobStatus {
  const list = [...events];
  if (list.some((e) => e.event === "cancelled")) return "cancelled";
  return statusOf(agentStates(list).values());
}
