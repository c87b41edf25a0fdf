import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { type AppEnv, createRouter } from "../app";
import { claimWaiters } from "../background/wakeups";
import { findEventJob, readJobEvents } from "../db/jobs";
import type { Db } from "../db/session";
import { eventView } from "../domain/job-view";
import { ApiError } from "../middleware/errors";
import { errorResponses } from "../schemas/error";
import {
  type JobEvent,
  JobEventPageSchema,
  JobEventsQuerySchema,
  JobIdParamsSchema,
} from "../schemas/job";
import { requires } from "./security";

/** Events read from D1 at a time, in a stream. */
const STREAM_PAGE = 100;
/** A stream says something at least this often, so proxies keep it open. */
const HEARTBEAT_MS = 20_000;
/**
 * How long a stream waits in the Durable Object before it reads D1 anyway: short at first (a
 * writer that had just found nobody watching may stay quiet for a second), then up to the
 * heartbeat. A watched job that changes is read within milliseconds of the change.
 */
const WAITS_MS = [1_000, 2_000, 4_000, 8_000, 16_000, HEARTBEAT_MS];

export const jobEventsRoute = createRoute({
  method: "get",
  path: "/job/{id}/events",
  operationId: "jobEvents",
  tags: ["jobs"],
  summary: "Watch a job's events",
  description:
    "With `Accept: text/event-stream`, a Server-Sent Events stream: the job's events so far, then each new one as it is written, each with `id:` set to its position (reconnect with `Last-Event-ID` to resume without gaps or repeats), a heartbeat comment at least every 25 s, and a final `end` message (`{job_id, status}`) when the job reaches its final status; then the stream closes. `follow=retries` goes on into the job retried from it, to the end of the chain. Otherwise the same events as a JSON page. Waiting costs no D1 query per second: a stream reads D1 when its job changes.",
  ...requires("job:read"),
  request: {
    params: JobIdParamsSchema,
    query: JobEventsQuerySchema,
    headers: z.object({
      "last-event-id": z
        .string()
        .regex(/^[0-9]{1,15}$/, "must be an event id this service sent")
        .optional()
        .openapi({ description: "Resume after this event (as `after`)" }),
    }),
  },
  responses: {
    200: {
      description: "The events: a stream, or a page",
      content: {
        "text/event-stream": {
          schema: z.string().openapi({
            description:
              "`id: <position>`, `event: <event name>`, `data: <JobEvent as JSON>` per event; `event: end` last",
          }),
        },
        "application/json": { schema: JobEventPageSchema },
      },
    },
    ...errorResponses(400, 401, 403, 404, 429, 500, 503),
  },
});

/** Where a watcher starts: after an event it names (in that event's job, when following), or at the start. */
async function startOf(db: Db, id: string, after: string | undefined, follow: boolean) {
  if (after === undefined) return { jobId: id, after: 0 };
  const seq = Number(after);
  return { jobId: (follow && (await findEventJob(db, seq))) || id, after: seq };
}

function notFound(id: string) {
  return new ApiError("job_not_found", `job not found: ${id}`);
}

/** Waits until the job changes after `revision`, or `ms` pass; never throws. */
async function changed(env: Env, jobId: string, revision: number, ms: number): Promise<boolean> {
  try {
    return await claimWaiters(env).watch({ jobs: [jobId], since: revision, timeoutMs: ms });
  } catch {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return false;
  }
}

function stream(c: Context<AppEnv>, start: { jobId: string; after: number }, follow: boolean) {
  return streamSSE(c, async (sse) => {
    let { jobId, after } = start;
    let gone = false;
    let waits = 0;
    let spoke = Date.now();
    sse.onAbort(() => {
      gone = true;
    });
    while (!gone) {
      const read = await readJobEvents(c.var.db, jobId, after, STREAM_PAGE);
      if (read === null) {
        await sse.writeSSE({ event: "end", data: JSON.stringify({ job_id: jobId, status: null }) });
        return;
      }
      for (const e of read.events) {
        const view: JobEvent = eventView(jobId, e.seq, e);
        await sse.writeSSE({ id: view.id, event: e.event, data: JSON.stringify(view) });
        after = e.seq;
        spoke = Date.now();
        waits = 0;
      }
      if (read.events.length === STREAM_PAGE) continue;
      if (read.job.ended) {
        if (follow && read.job.retried_as) {
          jobId = read.job.retried_as;
          after = 0;
          continue;
        }
        await sse.writeSSE({
          event: "end",
          data: JSON.stringify({ job_id: jobId, status: read.job.status }),
        });
        return;
      }
      // Wait for a change, but never past the heartbeat that keeps proxies from closing the stream.
      const quietFor = Date.now() - spoke;
      if (quietFor >= HEARTBEAT_MS) {
        await sse.write(": heartbeat\n\n");
        spoke = Date.now();
      }
      const ms = Math.min(
        WAITS_MS[Math.min(waits++, WAITS_MS.length - 1)] as number,
        HEARTBEAT_MS - (Date.now() - spoke),
      );
      await changed(c.env, jobId, read.revision, ms);
    }
  });
}

export const jobEvents = createRouter().openapi(jobEventsRoute, async (c) => {
  const { id } = c.req.valid("param");
  const query = c.req.valid("query");
  const follow = query.follow === "retries";
  const start = await startOf(
    c.var.db,
    id,
    c.req.valid("header")["last-event-id"] ?? query.after,
    follow,
  );
  if (c.req.header("Accept")?.includes("text/event-stream")) {
    // Resuming a followed chain goes on in the job of the last event seen, whatever became of the first.
    if ((await readJobEvents(c.var.db, start.jobId, Number.MAX_SAFE_INTEGER, 1)) === null)
      throw notFound(start.jobId);
    c.header("Cache-Control", "no-store");
    return stream(c, start, follow) as never;
  }
  const items: JobEvent[] = [];
  let { jobId, after } = start;
  for (;;) {
    const read = await readJobEvents(c.var.db, jobId, after, query.limit - items.length);
    if (read === null) throw notFound(jobId);
    for (const e of read.events) items.push(eventView(jobId, e.seq, e));
    after = read.events.at(-1)?.seq ?? after;
    const more = items.length < query.limit;
    if (more && read.job.ended && follow && read.job.retried_as) {
      jobId = read.job.retried_as;
      after = 0;
      continue;
    }
    const ended = more && read.job.ended;
    return c.json(
      {
        items,
        next_cursor: ended ? null : String(after),
        job_id: jobId,
        status: read.job.status,
        ended,
      },
      200,
    );
  }
});
