import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { JobEventPageSchema, JobEventSchema } from "../src/schemas/job";
import { claim, getJob, host, register, reportOk } from "./agents-helpers";
import { countingD1, createCounter } from "./counting-d1";
import { buildRequest, call, createKey, expectError, makeDue, parse } from "./helpers";

type Message = { id?: string; event?: string; data?: string; comment?: string };

/** Reads a Server-Sent Events body message by message. */
function sse(response: Response) {
  expect(response.status).toBe(200);
  expect(response.headers.get("Content-Type")).toContain("text/event-stream");
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const queue: Message[] = [];
  let done = false;
  const parseBlock = (block: string): Message => {
    const message: Message = {};
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) message.comment = line.slice(1).trim();
      const [field, ...rest] = line.split(":");
      const value = rest.join(":").replace(/^ /, "");
      if (field === "id") message.id = value;
      if (field === "event") message.event = value;
      if (field === "data")
        message.data = message.data === undefined ? value : `${message.data}\n${value}`;
    }
    return message;
  };
  return {
    /** The next message (comments included), or null when the stream closed. */
    async next(timeoutMs = 10_000): Promise<Message | null> {
      const deadline = Date.now() + timeoutMs;
      while (queue.length === 0 && !done) {
        const chunk = await Promise.race([
          reader.read(),
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error("no message in time")), deadline - Date.now()),
          ),
        ]);
        if (chunk.done) done = true;
        else buffer += decoder.decode(chunk.value, { stream: true });
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          queue.push(parseBlock(buffer.slice(0, end)));
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf("\n\n");
        }
      }
      return queue.shift() ?? null;
    },
    /** The next event message (skipping heartbeats). */
    async event(timeoutMs?: number) {
      for (;;) {
        const message = await this.next(timeoutMs);
        if (message === null || message.comment === undefined) return message;
      }
    },
    cancel: () => reader.cancel(),
  };
}

function watch(id: string, query = "", headers: Record<string, string> = {}) {
  return call("GET", `/job/${id}/events${query}`, {
    headers: { Accept: "text/event-stream", ...headers },
  });
}

async function jobFor(agent: string, extra: Record<string, unknown> = {}) {
  const response = await call("POST", "/job", {
    body: { operation: { type: "watch.me" }, target_hostname: agent, ...extra },
  });
  expect(response.status).toBe(201);
  return ((await response.json()) as { job_id: string }).job_id;
}

async function newAgent() {
  const agent = host("watch");
  await register(agent);
  return agent;
}

describe("GET /job/{id}/events as a stream", () => {
  it("sends the timeline so far, each new event as it is written, then end, and closes", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    const stream = sse(await watch(id));
    const first = await stream.event();
    expect(first?.event).toBe("submitted");
    const submitted = JobEventSchema.parse(JSON.parse(first?.data ?? ""));
    expect(submitted).toMatchObject({
      job_id: id,
      event: "submitted",
      hostname: "_api",
      id: first?.id,
    });

    await claim(agent);
    expect((await stream.event())?.event).toBe("acknowledged");
    await reportOk(agent, id, { event: "started" });
    expect((await stream.event())?.event).toBe("started");
    await reportOk(agent, id, { event: "completed", result: { ok: 1 } });
    const completed = await stream.event();
    expect(completed?.event).toBe("completed");
    expect(JSON.parse(completed?.data ?? "").data).toEqual({ result: { ok: 1 } });
    const end = await stream.event();
    expect(end?.event).toBe("end");
    expect(JSON.parse(end?.data ?? "")).toEqual({ job_id: id, status: "completed" });
    expect(await stream.next()).toBeNull();
  });

  it("resumes after Last-Event-ID without gaps or repeats, and ends a finished job at once", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    await claim(agent);
    await reportOk(agent, id, { event: "started" });
    await reportOk(agent, id, { event: "failed", error: "no" });
    const all = sse(await watch(id));
    const seen: Message[] = [];
    for (let m = await all.event(); m && m.event !== "end"; m = await all.event()) seen.push(m);
    expect(seen.map((m) => m.event)).toEqual(["submitted", "acknowledged", "started", "failed"]);
    const ids = seen.map((m) => Number(m.id));
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    const resumed = sse(await watch(id, "", { "Last-Event-ID": seen[1]?.id as string }));
    expect((await resumed.event())?.id).toBe(seen[2]?.id);
    expect((await resumed.event())?.id).toBe(seen[3]?.id);
    expect((await resumed.event())?.event).toBe("end");
  });

  it("serves many watchers of one job the same events", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    const streams = await Promise.all(Array.from({ length: 6 }, async () => sse(await watch(id))));
    for (const s of streams) expect((await s.event())?.event).toBe("submitted");
    await claim(agent);
    await reportOk(agent, id, { event: "completed" });
    for (const s of streams) {
      expect((await s.event())?.event).toBe("acknowledged");
      expect((await s.event())?.event).toBe("completed");
      expect((await s.event())?.event).toBe("end");
    }
  });

  it("follows a retry chain into its automatic retries to the end", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent, {
      retry_policy: { max_attempts: 2, backoff: "fixed", delay_seconds: 1, jitter: "none" },
    });
    const stream = sse(await watch(id, "?follow=retries"));
    expect((await stream.event())?.event).toBe("submitted");
    await claim(agent);
    await reportOk(agent, id, { event: "failed", error: "first" });
    const names: string[] = [];
    let next = await stream.event();
    while (next && next.event !== "end" && names.length < 4) {
      names.push(`${JSON.parse(next.data ?? "").job_id === id ? "1" : "2"}:${next.event}`);
      if (names.length === 4) break;
      next = await stream.event();
    }
    expect(names).toEqual(["1:acknowledged", "1:failed", "1:retried", "2:submitted"]);
    const second = (await getJob(id)).retried_as[0] as string;
    await makeDue(second);
    await claim(agent);
    await reportOk(agent, second, { event: "completed" });
    expect((await stream.event())?.event).toBe("acknowledged");
    expect((await stream.event())?.event).toBe("completed");
    const end = await stream.event();
    expect(JSON.parse(end?.data ?? "")).toEqual({ job_id: second, status: "completed" });
  });

  it("resumes a followed chain in the job it had reached, even once the first is deleted", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    await claim(agent);
    await reportOk(agent, id, { event: "failed", error: "x" });
    const retry = await call("POST", `/job/${id}/retry`, { body: { target_hostname: agent } });
    const second = ((await retry.json()) as { job_id: string }).job_id;
    const page = await parse(
      await call("GET", `/job/${id}/events?follow=retries`),
      JobEventPageSchema,
    );
    const last = page.items.at(-1);
    expect(last).toMatchObject({ job_id: second, event: "submitted" });
    expect((await call("DELETE", `/job/${id}`)).status).toBe(204);
    const resumed = sse(
      await watch(id, "?follow=retries", { "Last-Event-ID": last?.id as string }),
    );
    await claim(agent);
    const next = await resumed.event();
    expect(JSON.parse(next?.data ?? "")).toMatchObject({ job_id: second, event: "acknowledged" });
    await resumed.cancel();
  });

  it("hears at once of what a claim's lease sweep did to its job", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    const stream = sse(await watch(id));
    expect((await stream.event())?.event).toBe("submitted");
    await claim(agent);
    expect((await stream.event())?.event).toBe("acknowledged");
    await env.DB.prepare(
      "UPDATE job_agents SET delivery = 1000, lease_expires_at = '2000-01-01T00:00:00.000Z' WHERE job_id = ?1",
    )
      .bind(id)
      .run();
    // Quiet long enough for the stream to be in a 4 s wait: only an announcement wakes it sooner.
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    const swept = Date.now();
    await claim(agent);
    const failed = await stream.event();
    expect(JSON.parse(failed?.data ?? "")).toMatchObject({
      event: "failed",
      error: "max deliveries exceeded",
    });
    expect(Date.now() - swept).toBeLessThan(1_500);
    await stream.cancel();
  }, 20_000);

  it("hears at once that its job's agent was deregistered", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    const stream = sse(await watch(id));
    expect((await stream.event())?.event).toBe("submitted");
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    const gone = Date.now();
    expect((await call("DELETE", `/agent/${agent}`)).status).toBe(204);
    expect(JSON.parse((await stream.event())?.data ?? "")).toMatchObject({
      event: "skipped",
      error: "agent deregistered",
    });
    expect(Date.now() - gone).toBeLessThan(1_500);
    expect(JSON.parse((await stream.event())?.data ?? "")).toEqual({
      job_id: id,
      status: "skipped",
    });
  }, 20_000);

  it("ends when its job is cancelled or deleted", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    const stream = sse(await watch(id));
    await stream.event();
    expect((await call("POST", `/job/${id}/cancel`)).status).toBe(200);
    expect((await stream.event())?.event).toBe("cancelled");
    expect(JSON.parse((await stream.event())?.data ?? "")).toEqual({
      job_id: id,
      status: "cancelled",
    });

    const other = await jobFor(agent);
    const deleted = sse(await watch(other));
    await deleted.event();
    expect((await call("DELETE", `/job/${other}`)).status).toBe(204);
    expect(JSON.parse((await deleted.event())?.data ?? "")).toEqual({
      job_id: other,
      status: null,
    });
  });

  it("waits without reading D1 every second, and a watcher that leaves stops reading", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    const counter = createCounter();
    const response = await worker.fetch(
      await buildRequest("GET", `/job/${id}/events`, { headers: { Accept: "text/event-stream" } }),
      // The route reads through this binding; the waiting object keeps its own.
      { ...env, DB: countingD1(env.DB, counter) },
      createExecutionContext(),
    );
    const stream = sse(response);
    await stream.event();
    const before = counter.count;
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    // 1 s, then 2 s: at most two reads in 3.5 s however long it waits (then 4, 8, 16, 20 s apart).
    expect(counter.count - before).toBeLessThanOrEqual(3);
    await stream.cancel();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const left = counter.count;
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    expect(counter.count, "reads after the watcher left").toBe(left);
  }, 20_000);
});

describe("a quiet stream", () => {
  it("sends a heartbeat comment within 25 s of its last message", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    const stream = sse(await watch(id));
    await stream.event();
    const after = Date.now();
    const beat = await stream.next(26_000);
    expect(beat?.comment).toBe("heartbeat");
    expect(Date.now() - after).toBeLessThan(25_000);
    await stream.cancel();
  }, 40_000);
});

describe("GET /job/{id}/events as JSON", () => {
  it("pages the events with after and next_cursor, null once the job has ended", async () => {
    const agent = await newAgent();
    const id = await jobFor(agent);
    const open = await parse(await call("GET", `/job/${id}/events`), JobEventPageSchema);
    expect(open.items.map((e) => e.event)).toEqual(["submitted"]);
    expect(open).toMatchObject({ ended: false, status: "unprocessed", job_id: id });
    expect(open.next_cursor).toBe(open.items[0]?.id);
    await claim(agent);
    await reportOk(agent, id, { event: "completed" });
    const rest = await parse(
      await call("GET", `/job/${id}/events?after=${open.next_cursor}&limit=1`),
      JobEventPageSchema,
    );
    expect(rest.items.map((e) => e.event)).toEqual(["acknowledged"]);
    expect(rest.ended).toBe(false);
    const last = await parse(
      await call("GET", `/job/${id}/events?after=${rest.next_cursor}`),
      JobEventPageSchema,
    );
    expect(last.items.map((e) => e.event)).toEqual(["completed"]);
    expect(last).toMatchObject({ ended: true, next_cursor: null, status: "completed" });
  });

  it("refuses what it cannot answer", async () => {
    await expectError(await call("GET", `/job/${crypto.randomUUID()}/events`), 404);
    await expectError(await watch(crypto.randomUUID()), 404);
    const agent = await newAgent();
    const id = await jobFor(agent);
    await expectError(await call("GET", `/job/${id}/events?after=x`), 400);
    await expectError(await watch(id, "", { "Last-Event-ID": "-1" }), 400);
    await expectError(await call("GET", `/job/${id}/events?follow=all`), 400);
    await expectError(await call("GET", `/job/${id}/events?limit=1e1`), 400);
    const writer = await createKey(["job:write"]);
    await expectError(await call("GET", `/job/${id}/events`, { key: writer }), 403);
  });
});
