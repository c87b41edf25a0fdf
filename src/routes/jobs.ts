import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { type AppEnv, createRouter } from "../app";
import { announce, jobsChanged } from "../background/wakeups";
import { isTargetFound } from "../db/agents";
import {
  type BulkRetryBody,
  type BulkRetrySource,
  type CancelBody,
  cancelJobs,
  deleteJob,
  findJob,
  findJobState,
  insertJob,
  listJobs,
  type OperationChange,
  oldestJobIds,
  patchedOperation,
  previewCancelJobs,
  previewRetryJobs,
  retryJob,
  retryJobs,
  type WriteResult,
} from "../db/jobs";
import { currentRevision } from "../db/revision";
import type { Db } from "../db/session";
import { assertScope } from "../middleware/auth";
import { ApiError } from "../middleware/errors";
import { idempotencyOf, replayOf } from "../middleware/idempotency";
import { noteWrite } from "../middleware/logging";
import { etagOf, ifMatchRevisions, listEtagOf, noneMatchHits } from "../middleware/preconditions";
import { chargeWrites } from "../middleware/rate-limit";
import { sentBody } from "../middleware/utf8-body";
import { errorResponses } from "../schemas/error";
import {
  BulkCancelBodySchema,
  BulkCancelResultSchema,
  BulkRetryBodySchema,
  BulkRetryResultSchema,
  CancelResultSchema,
  CreateJobBodySchema,
  type JobAccepted,
  JobAcceptedSchema,
  JobIdParamsSchema,
  JobListSchema,
  JobSchema,
  ListJobsQuerySchema,
  type Operation,
  OperationSchema,
  RetryJobBodySchema,
  scheduledTime,
} from "../schemas/job";
import { requires } from "./security";

const jsonBody = <T>(schema: T, description: string, required = true) => ({
  required,
  description,
  content: { "application/json": { schema } },
});

const string = { type: "string" as const };

const IdempotencyHeaders = z.object({
  "idempotency-key": z.string().optional().openapi({
    minLength: 1,
    maxLength: 512,
    pattern: "^[\\x20-\\x7E]+$",
    description:
      "Makes the request safe to repeat: 1–255 printable ASCII characters, bare or as a quoted string, per API key (with its rotations) and route, kept at least 24 h (for example `retry-5b0e2a52-1`). A repeat gets the first response with `Idempotent-Replayed: true`; the same key with a different request gets 422.",
  }),
});

const PreconditionHeaders = {
  "if-match": z.string().optional().openapi({
    description:
      'Only act if the job is still at this ETag (`"r<revision>"`, for example `"r42"`); otherwise 412 and nothing is written',
  }),
  "if-none-match": z.string().optional().openapi({
    description:
      "Only act if the job is not at any of these ETags; `*` matches any job that exists. A match is 412 and nothing is written",
  }),
};

const accepted = {
  description:
    "The job was stored; its id, status, the store revision it took and its creation time",
  headers: {
    Location: { description: "The new job's URL", schema: string },
    "Idempotent-Replayed": {
      description: "`true` when this is the stored answer to an earlier request",
      schema: string,
    },
  },
  content: { "application/json": { schema: JobAcceptedSchema } },
};

function notFound(id: string) {
  return new ApiError("job_not_found", `job not found: ${id}`);
}

function targetNotFound(target: string) {
  return new ApiError("target_not_found", `target agent "${target}" not found`);
}

const targetsAnAgent = (target: string) => target !== "_any" && target !== "_all";

function preconditionFailed(id: string, revision: number) {
  return new ApiError(
    "precondition_failed",
    "precondition failed",
    `job ${id} is at ${etagOf(revision)}`,
    {
      ETag: etagOf(revision),
    },
  );
}

/** RFC 9110 §13.1.2: a write with If-None-Match matching the job (`*`: any job) is refused. */
async function checkNoneMatch(db: Db, id: string, header: string | undefined): Promise<void> {
  if (header === undefined) return;
  const state = await findJobState(db, id);
  if (state === null) throw notFound(id);
  if (noneMatchHits(header, etagOf(state.revision))) throw preconditionFailed(id, state.revision);
}

/**
 * 404, 412, 400 (a merge patch that leaves no valid operation) or 400 (target), for a write whose
 * guard refused it: one or two more reads to say which.
 */
async function refusal(
  db: Db,
  id: string,
  ifMatch?: number[],
  target?: string,
  change?: OperationChange,
): Promise<ApiError> {
  const state = await findJobState(db, id);
  if (state === null) return notFound(id);
  if (ifMatch && !ifMatch.includes(state.revision)) return preconditionFailed(id, state.revision);
  if (change && "patch" in change) {
    const parsed = OperationSchema.safeParse(await patchedOperation(db, id, change.patch));
    if (!parsed.success)
      return new ApiError(
        "invalid_operation_patch",
        "operation_patch leaves an invalid operation",
        parsed.error.issues
          .map((i) => `${i.path.join(".") || "operation"}: ${i.message}`)
          .join("; "),
      );
  }
  if (target !== undefined && targetsAnAgent(target)) return targetNotFound(target);
  return preconditionFailed(id, state.revision);
}

/** Announce a new job to waiting agents now, unless it is not due yet (the waiters' feed will). */
function dueNow(notBefore: string | null, now: Date): boolean {
  return notBefore === null || Date.parse(notBefore) <= now.getTime();
}

export const createJob = createRoute({
  method: "post",
  path: "/job",
  operationId: "createJob",
  tags: ["jobs"],
  summary: "Submit a job",
  description:
    "Stores a new job for agents to run, with its `submitted` event, in one transaction that takes the next store revision. `target_hostname` defaults to `_any`.",
  ...requires("job:write"),
  request: {
    headers: IdempotencyHeaders,
    body: jsonBody(CreateJobBodySchema, "The operation and, optionally, its target"),
  },
  responses: {
    201: accepted,
    ...errorResponses(400, 401, 403, 413, 415, 422, 429, 500, 503),
  },
});

export const listJobsRoute = createRoute({
  method: "get",
  path: "/job",
  operationId: "listJobs",
  tags: ["jobs"],
  summary: "List jobs",
  description:
    'Newest first. `total_items` counts the jobs matching the filter; `status_counts` counts every job by status, whatever the filter. `retry_of` and `root_job_id` select a retry chain, `target` the jobs of one target, `held_by` what an agent holds; filters combine. Sends a strong `ETag` (`"s<store revision>"`, the same for every page and filter: any write to jobs changes it); with a matching `If-None-Match` the answer is 304, having read the revision alone. A list with `due` depends on the clock: it has no ETag and is always sent.',
  ...requires("job:read"),
  request: {
    query: ListJobsQuerySchema,
    headers: z.object({
      "if-none-match": z
        .string()
        .optional()
        .openapi({ description: 'An ETag from an earlier list, for example `"s42"`' }),
    }),
  },
  responses: {
    200: {
      description: "A page of jobs",
      headers: {
        ETag: {
          description: "The store revision the page was read at, as a strong entity tag",
          schema: string,
        },
      },
      content: { "application/json": { schema: JobListSchema } },
    },
    304: {
      description: "Nothing changed since the ETag in If-None-Match",
      headers: { ETag: { description: "The current entity tag", schema: string } },
    },
    ...errorResponses(400, 401, 403, 429, 500, 503),
  },
});

export const getJob = createRoute({
  method: "get",
  path: "/job/{id}",
  operationId: "getJob",
  tags: ["jobs"],
  summary: "Get a job",
  description:
    'The job with its status, lineage, per-agent responses and states, and timeline. Sends a strong `ETag` (`"r<revision>"`); with a matching `If-None-Match` the answer is 304.',
  ...requires("job:read"),
  request: {
    params: JobIdParamsSchema,
    headers: z.object({
      "if-none-match": z
        .string()
        .optional()
        .openapi({ description: 'An ETag from an earlier answer, for example `"r42"`' }),
    }),
  },
  responses: {
    200: {
      description: "The job",
      headers: {
        ETag: { description: "The job's revision as a strong entity tag", schema: string },
      },
      content: { "application/json": { schema: JobSchema } },
    },
    304: {
      description: "Not modified since the ETag in If-None-Match",
      headers: { ETag: { description: "The job's current entity tag", schema: string } },
    },
    ...errorResponses(400, 401, 403, 404, 429, 500, 503),
  },
});

export const deleteJobRoute = createRoute({
  method: "delete",
  path: "/job/{id}",
  operationId: "deleteJob",
  tags: ["jobs"],
  summary: "Delete a job",
  description:
    "Removes the job with its events, in one transaction that takes the next store revision.",
  ...requires("job:write"),
  request: { params: JobIdParamsSchema, headers: z.object(PreconditionHeaders) },
  responses: {
    204: { description: "Deleted" },
    ...errorResponses(400, 401, 403, 404, 412, 429, 500, 503),
  },
});

export const retryJobRoute = createRoute({
  method: "post",
  path: "/job/{id}/retry",
  operationId: "retryJob",
  tags: ["jobs"],
  summary: "Retry a job",
  description:
    "Creates a new job with the original's operation (lineage: `retry_of`, `root_job_id`, `attempt`) and records a `retried` event on the original, in one transaction that takes the next store revision. Any status may be retried; the original is unchanged otherwise. Without a body, or with `target_hostname` null, the new job targets `_any`.",
  ...requires("job:write"),
  request: {
    params: JobIdParamsSchema,
    headers: IdempotencyHeaders.extend(PreconditionHeaders),
    body: jsonBody(RetryJobBodySchema, "Optional: a target for the new job", false),
  },
  responses: {
    201: accepted,
    ...errorResponses(400, 401, 403, 404, 412, 413, 415, 422, 429, 500, 503),
  },
});

export const retryJobsRoute = createRoute({
  method: "post",
  path: "/job/retry",
  operationId: "retryJobs",
  tags: ["jobs"],
  summary: "Retry many jobs",
  description:
    "Retries up to 100 jobs, named by `job_ids` or chosen as the oldest jobs in a `status`, in one transaction and one revision. Each source job gets a result: the new job's id, or why not. `dry_run` writes nothing and says what would happen; it lists job ids, so it also needs `job:read`. Against the key's write limit a bulk retry counts as many writes as the jobs it may make (the length of `job_ids`, or `limit`); a dry run counts one.",
  ...requires("job:write"),
  request: {
    headers: IdempotencyHeaders,
    body: jsonBody(
      BulkRetryBodySchema,
      "Which jobs to retry, and optionally a target for the new jobs",
    ),
  },
  responses: {
    200: {
      description: "A result per source job",
      headers: { "Idempotent-Replayed": { description: "`true` when replayed", schema: string } },
      content: { "application/json": { schema: BulkRetryResultSchema } },
    },
    ...errorResponses(400, 401, 403, 413, 415, 422, 429, 500, 503),
  },
});

export const cancelJobRoute = createRoute({
  method: "post",
  path: "/job/{id}/cancel",
  operationId: "cancelJob",
  tags: ["jobs"],
  summary: "Cancel a job",
  description:
    "A job no agent holds (not handed out yet, or not due yet) ends `cancelled` now: 200. A job an agent holds is marked `cancel_requested` and handed out no more: 202; the holder's next report or lease extension is answered 409 `cancelled` and the job ends `cancelled` (so does a lease that runs out). Cancelling an attempt stops its chain: a cancelled job is never retried automatically. A finished job is 409. One transaction, one revision.",
  ...requires("job:write"),
  request: { params: JobIdParamsSchema, headers: z.object(PreconditionHeaders) },
  responses: {
    200: {
      description: "Cancelled",
      content: { "application/json": { schema: CancelResultSchema } },
    },
    202: {
      description: "An agent holds the job: cancel requested",
      content: { "application/json": { schema: CancelResultSchema } },
    },
    ...errorResponses(400, 401, 403, 404, 409, 412, 429, 500, 503),
  },
});

export const cancelJobsRoute = createRoute({
  method: "post",
  path: "/job/cancel",
  operationId: "cancelJobs",
  tags: ["jobs"],
  summary: "Cancel many jobs",
  description:
    "Cancels up to 100 jobs, named by `job_ids` or chosen as the oldest jobs in a `status`, in one transaction and one revision, each as `POST /job/{id}/cancel` would. Each job gets a result. `dry_run` writes nothing and says what would happen.",
  ...requires("job:write"),
  request: {
    body: jsonBody(BulkCancelBodySchema, "Which jobs to cancel"),
  },
  responses: {
    200: {
      description: "A result per job",
      content: { "application/json": { schema: BulkCancelResultSchema } },
    },
    ...errorResponses(400, 401, 403, 413, 415, 429, 500, 503),
  },
});

export const jobs = createRouter()
  .openapi(createJob, async (c) => {
    const body = c.req.valid("json");
    const target = body.target_hostname ?? "_any";
    const idempotency = await idempotencyOf(c, "POST /job", "/job", {
      ...body,
      target_hostname: target,
    });
    const now = new Date();
    const notBefore = scheduledTime(body, now);
    const result = await insertJob(c.var.db, {
      id: crypto.randomUUID(),
      operation: (await sentBody(c)).operation as Operation,
      target,
      now: now.toISOString(),
      retryPolicy: body.retry_policy ?? null,
      notBefore,
      idempotency,
    });
    if (result.kind === "replayed" && idempotency) {
      const { body: stored, headers } = replayOf<JobAccepted>(idempotency, result.stored);
      noteWrite(c, stored);
      return c.json(stored, 201, headers);
    }
    if (result.kind === "refused") throw targetNotFound(target);
    const job = written(result);
    noteWrite(c, job);
    if (dueNow(notBefore, now))
      announce(c.executionCtx, c.env, [{ target, revision: job.revision }]);
    jobsChanged(c.executionCtx, c.env, [{ job: job.job_id, revision: job.revision }]);
    c.header("Location", `/job/${job.job_id}`);
    return c.json(job, 201);
  })
  .openapi(listJobsRoute, async (c) => {
    const query = c.req.valid("query");
    const now = new Date().toISOString();
    if (query.due !== undefined) return c.json((await listJobs(c.var.db, query, now)).page, 200);
    const ifNoneMatch = c.req.header("If-None-Match");
    if (ifNoneMatch !== undefined) {
      const etag = listEtagOf(await currentRevision(c.var.db));
      if (noneMatchHits(ifNoneMatch, etag)) {
        c.header("ETag", etag);
        return c.body(null, 304);
      }
    }
    const { page, revision } = await listJobs(c.var.db, query, now);
    c.header("ETag", listEtagOf(revision));
    return c.json(page, 200);
  })
  .openapi(retryJobsRoute, async (c) => {
    const body = c.req.valid("json");
    const source: BulkRetrySource =
      "job_ids" in body ? { ids: body.job_ids } : { status: body.status, limit: body.limit ?? 100 };
    if (body.dry_run) {
      assertScope(c.get("apiKey"), "job:read");
      return c.json(await previewRetryJobs(c.var.db, source), 200);
    }
    await chargeWrites(c, "ids" in source ? source.ids.length : source.limit);
    const target = body.target_hostname ?? "_any";
    const idempotency = await idempotencyOf(c, "POST /job/retry", "/job/retry", {
      ...body,
      target_hostname: target,
    });
    const result = await retryJobs(c.var.db, {
      source,
      target,
      now: new Date().toISOString(),
      idempotency,
    });
    if (result.kind === "replayed" && idempotency) {
      const { body: stored, headers } = replayOf<BulkRetryBody>(idempotency, result.stored);
      noteWrite(c, { revision: stored.revision });
      return c.json(stored, 200, headers);
    }
    const retried = written(result);
    if (
      retried.revision === null &&
      targetsAnAgent(target) &&
      !(await isTargetFound(c.var.db, target))
    )
      throw targetNotFound(target);
    noteWrite(c, { revision: retried.revision });
    const sources = retried.results.filter((r) => r.outcome === "retried");
    const revision = retried.revision;
    if (revision !== null && sources.length > 0) {
      announce(c.executionCtx, c.env, [{ target, revision, count: sources.length }]);
      jobsChanged(
        c.executionCtx,
        c.env,
        sources.map((r) => ({ job: r.source_job_id, revision })),
      );
    }
    return c.json(retried, 200);
  })
  .openapi(cancelJobsRoute, async (c) => {
    const body = c.req.valid("json");
    const now = new Date().toISOString();
    if (body.dry_run) assertScope(c.get("apiKey"), "job:read");
    else await chargeWrites(c, "job_ids" in body ? body.job_ids.length : (body.limit ?? 100));
    const ids =
      "job_ids" in body
        ? body.job_ids
        : await oldestJobIds(c.var.db, body.status, body.limit ?? 100);
    if (body.dry_run) return c.json(await previewCancelJobs(c.var.db, ids, now), 200);
    const cancelled =
      ids.length > 0
        ? await cancelJobs(c.var.db, { ids, now })
        : { revision: null, dry_run: false, results: [] };
    noteWrite(c, { revision: cancelled.revision });
    changedByCancel(c, cancelled);
    return c.json(cancelled, 200);
  })
  .openapi(cancelJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    await checkNoneMatch(c.var.db, id, c.req.header("If-None-Match"));
    const ifMatch = ifMatchRevisions(c.req.header("If-Match"));
    const done = await cancelJobs(c.var.db, { ids: [id], now: new Date().toISOString(), ifMatch });
    const result = done.results[0];
    if (
      done.revision !== null &&
      result &&
      (result.outcome === "cancelled" || result.outcome === "cancel_requested")
    ) {
      noteWrite(c, { job_id: id, revision: done.revision });
      changedByCancel(c, done);
      const cancelled = result.outcome === "cancelled";
      return cancelled
        ? c.json(
            {
              job_id: id,
              status: "cancelled" as const,
              outcome: "cancelled" as const,
              revision: done.revision,
            },
            200,
          )
        : c.json(
            {
              job_id: id,
              status: "processing" as const,
              outcome: "cancel_requested" as const,
              revision: done.revision,
            },
            202,
          );
    }
    const state = await findJobState(c.var.db, id);
    if (state === null) throw notFound(id);
    if (ifMatch && !ifMatch.includes(state.revision)) throw preconditionFailed(id, state.revision);
    if (state.cancel_requested === 1 && state.status === "processing")
      return c.json(
        {
          job_id: id,
          status: "processing" as const,
          outcome: "cancel_requested" as const,
          revision: state.revision,
        },
        202,
      );
    throw new ApiError(
      "job_finished",
      `job is already ${state.status}`,
      `job ${id} has finished; retry it instead`,
    );
  })
  .openapi(getJob, async (c) => {
    const { id } = c.req.valid("param");
    const job = await findJob(c.var.db, id);
    if (!job) throw notFound(id);
    c.header("ETag", etagOf(job.revision));
    if (noneMatchHits(c.req.header("If-None-Match"), etagOf(job.revision)))
      return c.body(null, 304);
    return c.json(job, 200);
  })
  .openapi(deleteJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    await checkNoneMatch(c.var.db, id, c.req.header("If-None-Match"));
    const ifMatch = ifMatchRevisions(c.req.header("If-Match"));
    if (!(await deleteJob(c.var.db, id, ifMatch)))
      throw ifMatch ? await refusal(c.var.db, id) : notFound(id);
    // A deleted job changes no more: its watchers, woken, find it gone and end.
    jobsChanged(c.executionCtx, c.env, [{ job: id, revision: Number.MAX_SAFE_INTEGER }]);
    return c.body(null, 204);
  })
  .openapi(retryJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    await checkNoneMatch(c.var.db, id, c.req.header("If-None-Match"));
    const target = body.target_hostname ?? "_any";
    const idempotency = await idempotencyOf(c, "POST /job/{id}/retry", id, {
      ...body,
      target_hostname: target,
    });
    const ifMatch = ifMatchRevisions(c.req.header("If-Match"));
    const now = new Date();
    const notBefore = scheduledTime(body, now);
    const raw = await sentBody(c);
    const change: OperationChange = body.operation
      ? { operation: raw.operation as Operation }
      : body.operation_patch
        ? { patch: raw.operation_patch as Record<string, unknown> }
        : null;
    const result = await retryJob(c.var.db, {
      originalId: id,
      newId: crypto.randomUUID(),
      target,
      now: now.toISOString(),
      change,
      retryPolicy: body.retry_policy,
      resetAttempts: body.reset_attempts ?? false,
      notBefore,
      ifMatch,
      idempotency,
    });
    if (result.kind === "replayed" && idempotency) {
      const { body: stored, headers } = replayOf<JobAccepted>(idempotency, result.stored);
      noteWrite(c, stored);
      return c.json(stored, 201, headers);
    }
    if (result.kind === "refused") throw await refusal(c.var.db, id, ifMatch, target, change);
    const job = written(result);
    noteWrite(c, job);
    if (dueNow(notBefore, now))
      announce(c.executionCtx, c.env, [{ target, revision: job.revision }]);
    jobsChanged(c.executionCtx, c.env, [{ job: id, revision: job.revision }]);
    c.header("Location", `/job/${job.job_id}`);
    return c.json(job, 201);
  });

/** Watchers of the jobs a cancel changed are told. */
function changedByCancel(c: Context<AppEnv>, done: CancelBody) {
  const revision = done.revision;
  if (revision === null) return;
  const changed = done.results.filter(
    (r) => r.outcome === "cancelled" || r.outcome === "cancel_requested",
  );
  jobsChanged(
    c.executionCtx,
    c.env,
    changed.map((r) => ({ job: r.job_id, revision })),
  );
}

function written<T>(result: WriteResult<T>): T {
  if (result.kind !== "written") throw new Error(`write ${result.kind} without a reason to`);
  return result.value;
}
