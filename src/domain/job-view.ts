import {
  type AgentEventName,
  agentStates,
  deriveStatus,
  type EventName,
  isAgentEvent,
  type JobStatus,
} from "./status";

export type EventData = Record<string, unknown>;

export type StoredEvent = {
  event: EventName;
  hostname: string;
  created_at: string;
  data: EventData | null;
};

export type TimelineEntry = {
  timestamp: string;
  event: EventName;
  hostname: string;
  message: string;
  error?: string;
};

export type AgentState = { status: AgentEventName; error?: string; duration?: string };

export type AgentResponse = {
  status: "completed" | "failed" | "skipped";
  data?: unknown;
  changed: boolean | null;
  error?: string;
  hostname: string;
};

export type EventSummary = {
  status: JobStatus;
  updated_at: string | undefined;
  result?: unknown;
  changed: boolean | null;
  error?: string;
  hostname?: string;
  responses: Record<string, AgentResponse>;
  agent_states: Record<string, AgentState>;
  timeline: TimelineEntry[];
  retried_as: string[];
};

const FINAL_EVENTS: ReadonlySet<EventName> = new Set(["completed", "failed", "skipped"]);

function text(data: EventData | null, key: string): string | undefined {
  const value = data?.[key];
  return typeof value === "string" ? value : undefined;
}

export function timelineMessage(
  event: EventName,
  hostname: string,
  data: EventData | null,
): string {
  switch (event) {
    case "submitted":
      return "Job submitted to queue";
    case "acknowledged":
      return `Job acknowledged by agent ${hostname}`;
    case "started":
      return `Job processing started on ${hostname}`;
    case "completed":
      return `Job completed successfully on ${hostname}`;
    case "failed":
      return `Job failed on ${hostname}`;
    case "skipped":
      return `Job skipped on ${hostname}`;
    case "retried": {
      const newJob = text(data, "new_job_id");
      const how = data?.automatic === true ? "Job retried automatically" : "Job retried";
      const delay = typeof data?.delay_seconds === "number" ? ` after ${data.delay_seconds}s` : "";
      return newJob ? `${how} as ${newJob}${delay}` : how;
    }
    case "cancel_requested":
      return "Cancel requested; waiting for the agents holding the job";
    case "cancelled":
      return "Job cancelled";
  }
}

/** A duration as Go prints one (`45ms`, `1.5s`, `1m0s`, `2h3m4s`), as the reference reports it. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${Number(seconds.toFixed(3))}s`;
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = Number((seconds % 60).toFixed(3));
  return hours > 0 ? `${hours}h${minutes}m${rest}s` : `${minutes}m${rest}s`;
}

function byTime(a: StoredEvent, b: StoredEvent): number {
  return a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0;
}

/** Everything a job's detail derives from its events, whatever order they were stored in. */
export function summarizeEvents(stored: readonly StoredEvent[]): EventSummary {
  const events = [...stored].sort(byTime);
  const states = agentStates(events);
  const status = deriveStatus(events);

  const firstStart = new Map<string, number>();
  const lastEnd = new Map<string, number>();
  const lastError = new Map<string, string>();
  const finals = new Map<string, StoredEvent>();
  let hostname: string | undefined;
  let latestError: string | undefined;

  for (const e of events) {
    if (!isAgentEvent(e.event)) continue;
    const at = Date.parse(e.created_at);
    if (e.event === "started" && !firstStart.has(e.hostname)) firstStart.set(e.hostname, at);
    if (e.event === "completed" || e.event === "failed") {
      lastEnd.set(e.hostname, at);
      hostname = e.hostname;
    }
    const error = text(e.data, "error");
    if ((e.event === "failed" || e.event === "skipped") && error !== undefined) {
      lastError.set(e.hostname, error);
      if (e.event === "failed") latestError = error;
    }
    if (FINAL_EVENTS.has(e.event) && e.event === states.get(e.hostname)) finals.set(e.hostname, e);
  }

  const agent_states: Record<string, AgentState> = {};
  for (const [host, state] of states) {
    const entry: AgentState = { status: state };
    const error = lastError.get(host);
    if (error !== undefined && state !== "completed") entry.error = error;
    const start = firstStart.get(host);
    const end = lastEnd.get(host);
    if (start !== undefined && end !== undefined && end >= start)
      entry.duration = formatDuration(end - start);
    agent_states[host] = entry;
  }

  const responses: Record<string, AgentResponse> = {};
  for (const [host, e] of finals) {
    const response: AgentResponse = {
      status: e.event as AgentResponse["status"],
      changed: typeof e.data?.changed === "boolean" ? e.data.changed : null,
      hostname: host,
    };
    if (e.data && "result" in e.data) response.data = e.data.result;
    const error = text(e.data, "error");
    if (error !== undefined) response.error = error;
    responses[host] = response;
  }

  const answers = Object.values(responses);
  const only = answers.length === 1 ? answers[0] : undefined;
  const changed = only
    ? only.changed
    : answers.some((r) => r.changed === true)
      ? true
      : answers.length > 0 && answers.every((r) => r.changed === false)
        ? false
        : null;

  const summary: EventSummary = {
    retried_as: events.flatMap((e) => {
      const newJob = e.event === "retried" ? text(e.data, "new_job_id") : undefined;
      return newJob ? [newJob] : [];
    }),
    status,
    updated_at: events.at(-1)?.created_at,
    changed,
    responses,
    agent_states,
    timeline: events.map((e) => {
      const entry: TimelineEntry = {
        timestamp: e.created_at,
        event: e.event,
        hostname: e.hostname,
        message: timelineMessage(e.event, e.hostname, e.data),
      };
      const error = text(e.data, "error");
      if ((e.event === "failed" || e.event === "skipped") && error !== undefined)
        entry.error = error;
      return entry;
    }),
  };
  if (only && "data" in only) summary.result = only.data;
  if (status === "failed" && latestError !== undefined) summary.error = latestError;
  if (hostname !== undefined) summary.hostname = hostname;
  return summary;
}

/** One event as a watcher sees it: its position, what happened, and what it carries. */
export function eventView(jobId: string, seq: number, e: StoredEvent) {
  const view: {
    id: string;
    job_id: string;
    event: EventName;
    hostname: string;
    timestamp: string;
    message: string;
    error?: string;
    data: EventData | null;
  } = {
    id: String(seq),
    job_id: jobId,
    event: e.event,
    hostname: e.hostname,
    timestamp: e.created_at,
    message: timelineMessage(e.event, e.hostname, e.data),
    data: e.data,
  };
  const error = text(e.data, "error");
  if ((e.event === "failed" || e.event === "skipped") && error !== undefined) view.error = error;
  return view;
}
