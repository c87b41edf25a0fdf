import { describe, expect, it } from "vitest";
import { formatDuration, type StoredEvent, summarizeEvents } from "../src/domain/job-view";
import { deriveStatus, type EventName } from "../src/domain/status";

const at = (seconds: number) =>
  new Date(Date.UTC(2026, 10, 28, 10, 0, 0) + seconds * 1000).toISOString();

function ev(
  event: EventName,
  hostname: string,
  seconds = 0,
  data: StoredEvent["data"] = null,
): StoredEvent {
  return { event, hostname, created_at: at(seconds), data };
}

describe("deriveStatus", () => {
  it("is unprocessed with no agent events, even after API events", () => {
    expect(deriveStatus([])).toBe("unprocessed");
    expect(deriveStatus([ev("submitted", "_api"), ev("retried", "_api", 1)])).toBe("unprocessed");
  });

  it("is processing while any agent has only acknowledged or started", () => {
    expect(deriveStatus([ev("acknowledged", "a")])).toBe("processing");
    expect(deriveStatus([ev("acknowledged", "a"), ev("started", "a", 1)])).toBe("processing");
    expect(deriveStatus([ev("completed", "a"), ev("started", "b", 1)])).toBe("processing");
  });

  it("lets the highest-priority event win whatever the storage order", () => {
    const events = [ev("completed", "a", 5), ev("started", "a", 1), ev("acknowledged", "a", 0)];
    expect(deriveStatus(events)).toBe("completed");
    expect(deriveStatus([...events].reverse())).toBe("completed");
  });

  it("prefers completed over failed for the same agent (a redelivery that succeeded)", () => {
    expect(deriveStatus([ev("failed", "a", 1), ev("completed", "a", 2)])).toBe("completed");
    expect(deriveStatus([ev("completed", "a", 2), ev("failed", "a", 3)])).toBe("completed");
  });

  it("is failed when every agent failed, partial_failure when failures and completions mix", () => {
    expect(deriveStatus([ev("failed", "a"), ev("failed", "b")])).toBe("failed");
    expect(deriveStatus([ev("completed", "a"), ev("failed", "b")])).toBe("partial_failure");
  });

  it("is skipped only when every agent skipped; skipped agents do not hide a failure", () => {
    expect(deriveStatus([ev("skipped", "a"), ev("skipped", "b")])).toBe("skipped");
    expect(deriveStatus([ev("skipped", "a"), ev("completed", "b")])).toBe("completed");
    expect(deriveStatus([ev("skipped", "a"), ev("failed", "b")])).toBe("failed");
  });
});

describe("summarizeEvents", () => {
  it("builds the timeline in time order with the reference's messages", () => {
    const summary = summarizeEvents([
      ev("retried", "_api", 3, { new_job_id: "7e1c0d9e-0000-4000-8000-000000000001" }),
      ev("submitted", "_api", 0),
      ev("failed", "agent-1", 2, { error: "timeout" }),
      ev("acknowledged", "agent-1", 1),
    ]);
    expect(summary.timeline.map((t) => [t.event, t.hostname, t.message, t.error])).toEqual([
      ["submitted", "_api", "Job submitted to queue", undefined],
      ["acknowledged", "agent-1", "Job acknowledged by agent agent-1", undefined],
      ["failed", "agent-1", "Job failed on agent-1", "timeout"],
      ["retried", "_api", "Job retried as 7e1c0d9e-0000-4000-8000-000000000001", undefined],
    ]);
    expect(summary.status).toBe("failed");
    expect(summary.error).toBe("timeout");
    expect(summary.updated_at).toBe(at(3));
  });

  it("says 'Job retried' when the event names no new job", () => {
    expect(summarizeEvents([ev("retried", "_api")]).timeline[0]?.message).toBe("Job retried");
  });

  it("reports one agent's result and changed, and its duration from first start to finish", () => {
    const summary = summarizeEvents([
      ev("submitted", "_api", 0),
      ev("started", "web-01", 1),
      ev("completed", "web-01", 1.045, { result: { hostname: "web-01" }, changed: false }),
    ]);
    expect(summary.result).toEqual({ hostname: "web-01" });
    expect(summary.changed).toBe(false);
    expect(summary.hostname).toBe("web-01");
    expect(summary.agent_states).toEqual({ "web-01": { status: "completed", duration: "45ms" } });
    expect(summary.responses["web-01"]).toEqual({
      status: "completed",
      data: { hostname: "web-01" },
      changed: false,
      hostname: "web-01",
    });
  });

  it("keeps the last error and the whole span across redeliveries", () => {
    const summary = summarizeEvents([
      ev("started", "a", 1),
      ev("failed", "a", 2, { error: "attempt 1" }),
      ev("started", "a", 60),
      ev("failed", "a", 61, { error: "attempt 2" }),
    ]);
    expect(summary.status).toBe("failed");
    expect(summary.error).toBe("attempt 2");
    expect(summary.agent_states.a).toEqual({
      status: "failed",
      error: "attempt 2",
      duration: "1m0s",
    });
  });

  it("puts a partial failure's errors in agent_states only, with no result for several agents", () => {
    const summary = summarizeEvents([
      ev("completed", "server1", 1, { result: 1, changed: true }),
      ev("failed", "server2", 2, { error: "disk full" }),
    ]);
    expect(summary.status).toBe("partial_failure");
    expect(summary.error).toBeUndefined();
    expect(summary.agent_states.server2?.error).toBe("disk full");
    expect("result" in summary).toBe(false);
    expect(summary.changed).toBe(true);
  });

  it("reports changed false only when every answering agent said false, null when nobody said", () => {
    const both = (a: unknown, b: unknown) =>
      summarizeEvents([
        ev("completed", "a", 1, { changed: a }),
        ev("completed", "b", 2, { changed: b }),
      ]).changed;
    expect(both(false, false)).toBe(false);
    expect(both(true, false)).toBe(true);
    expect(both(undefined, false)).toBe(null);
    expect(summarizeEvents([ev("submitted", "_api")]).changed).toBe(null);
  });
});

describe("formatDuration", () => {
  it("prints durations as the reference does", () => {
    expect(formatDuration(45)).toBe("45ms");
    expect(formatDuration(812)).toBe("812ms");
    expect(formatDuration(1500)).toBe("1.5s");
    expect(formatDuration(60_000)).toBe("1m0s");
    expect(formatDuration(3_723_000)).toBe("1h2m3s");
  });
});
