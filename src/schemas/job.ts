import { z } from "@hono/zod-openapi";
import { EVENT_NAMES, JOB_STATUSES } from "../domain/status";
import { HOSTNAME, TARGET } from "../domain/target";
import { TOO_LARGE } from "./error";
import { cursorParameter, limitParameter, NextCursorSchema, queryInteger } from "./paging";
import { Timestamp } from "./timestamp";

export const MAX_OPERATION_BYTES = 64 * 1024;
export const MAX_OPERATION_DEPTH = 64;

/** Without recursion: SQLite's JSON functions refuse documents nested over 1000 levels. */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [item, depth] = next;
    if (typeof item !== "object" || item === null) continue;
    if (depth > limit) return true;
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
  return false;
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export const JobIdParamsSchema = z.object({
  id: z
    .string()
    .regex(UUID, "must be a UUID")
    .transform((id) => id.toLowerCase())
    .openapi({
      param: { name: "id", in: "path" },
      description: "The job's UUID, in any letter case",
      example: "5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10",
    }),
});

export const TargetSchema = z
  .string()
  .regex(
    TARGET,
    "must be _any, _all, a hostname (letters, digits, '.', '_', '-'; up to 253) or a label selector key:value",
  )
  .openapi({
    description:
      "`_any` (one agent takes it), `_all` (every agent), a hostname (1–253 letters, digits, `.`, `_`, `-`, starting with a letter or digit), or a label selector `key:value` (a key of 1–63 letters, digits, `_`, `-`; a value of up to 253 characters in dot-separated segments of them)",
    example: "_any",
  });

export const OperationSchema = z
  .looseObject({
    type: z.string().min(1, "must be a non-empty string").openapi({ example: "node.hostname.get" }),
  })
  .refine((operation) => !nestsDeeperThan(operation, MAX_OPERATION_DEPTH), {
    message: `must nest at most ${MAX_OPERATION_DEPTH} levels`,
  })
  .refine(
    (operation) =>
      new TextEncoder().encode(JSON.stringify(operation)).byteLength <= MAX_OPERATION_BYTES,
    { message: `must serialise to at most ${MAX_OPERATION_BYTES} bytes`, params: TOO_LARGE },
  )
  .openapi("Operation", {
    description: "What the agent runs: a `type` and any other JSON, stored verbatim",
    example: { type: "node.hostname.get", data: {} },
  });

export const RETRY_DEFAULTS = {
  max_attempts: 3,
  backoff: "exponential",
  delay_seconds: 10,
  max_delay_seconds: 3600,
  jitter: "full",
  retry_on: ["failed"],
} as const;
export const MAX_RETRY_DELAY_SECONDS = 7 * 24 * 3600;
/** How far ahead a job may be scheduled. */
export const MAX_SCHEDULE_SECONDS = 30 * 24 * 3600;

const RetryOnSchema = z
  .array(z.enum(["failed", "partial_failure"]))
  .min(1)
  .max(2)
  .refine((on) => new Set(on).size === on.length, { message: "must not repeat a status" });

export const RetryPolicySchema = z
  .strictObject({
    max_attempts: z.number().int().min(1).max(20).default(RETRY_DEFAULTS.max_attempts).openapi({
      description: "Attempts in all, counting the first: 1–20",
    }),
    backoff: z.enum(["fixed", "exponential"]).default(RETRY_DEFAULTS.backoff).openapi({
      description:
        "`fixed`: every wait is `delay_seconds`; `exponential`: `delay_seconds` × 2^(attempt − 1)",
    }),
    delay_seconds: z
      .number()
      .int()
      .min(1)
      .max(MAX_RETRY_DELAY_SECONDS)
      .default(RETRY_DEFAULTS.delay_seconds)
      .openapi({ description: "The first wait, in seconds" }),
    max_delay_seconds: z
      .number()
      .int()
      .min(1)
      .max(MAX_RETRY_DELAY_SECONDS)
      .default(RETRY_DEFAULTS.max_delay_seconds)
      .openapi({ description: "No wait is longer than this" }),
    jitter: z.enum(["none", "full"]).default(RETRY_DEFAULTS.jitter).openapi({
      description: "`full`: the wait is drawn uniformly between 0 and the computed wait",
    }),
    retry_on: RetryOnSchema.default([...RETRY_DEFAULTS.retry_on]).openapi({
      description: "The final statuses that start the next attempt",
    }),
  })
  .refine((p) => p.max_delay_seconds >= p.delay_seconds, {
    message: "max_delay_seconds must be at least delay_seconds",
    path: ["max_delay_seconds"],
  })
  .openapi("RetryPolicyRequest", {
    description: `Retry automatically: when the job ends in a status of \`retry_on\` with attempts left, the same transaction creates the next attempt, due after the wait. Defaults: ${JSON.stringify(RETRY_DEFAULTS)}.`,
    example: { max_attempts: 3, backoff: "exponential", delay_seconds: 10 },
  });

export const RetryPolicyViewSchema = z
  .object({
    max_attempts: z.number().int(),
    backoff: z.enum(["fixed", "exponential"]),
    delay_seconds: z.number().int(),
    max_delay_seconds: z.number().int(),
    jitter: z.enum(["none", "full"]),
    retry_on: z.array(z.enum(["failed", "partial_failure"])),
  })
  .openapi("RetryPolicy", { description: "The job's retry policy, defaults filled in" });

export type RetryPolicy = z.infer<typeof RetryPolicyViewSchema>;

/** When a job may be handed out: a time, or a delay from now; not both. */
const ScheduleFields = {
  not_before: z.iso
    .datetime({ offset: true, message: "must be an RFC 3339 date-time, e.g. 2026-12-03T10:00:00Z" })
    .optional()
    .openapi({
      description: "No agent gets the job before this time (at most 30 days ahead)",
      example: "2026-12-03T10:00:00Z",
    }),
  delay_seconds: z
    .number()
    .int()
    .min(0)
    .max(MAX_SCHEDULE_SECONDS)
    .optional()
    .openapi({ description: "Or: no agent gets the job before this many seconds from now" }),
};

type Scheduled = { not_before?: string | undefined; delay_seconds?: number | undefined };

const oneSchedule = (body: Scheduled) =>
  body.not_before === undefined || body.delay_seconds === undefined;
const ONE_SCHEDULE = { message: "give not_before or delay_seconds, not both" };
const notTooFar = (body: Scheduled) => !scheduledTooFar(body, new Date());
const NOT_TOO_FAR = { message: "must be at most 30 days ahead", path: ["not_before"] };

/** The time a request schedules its job for, as stored (UTC, milliseconds); null: at once. */
export function scheduledTime(body: Scheduled, now: Date): string | null {
  if (body.delay_seconds !== undefined)
    return new Date(now.getTime() + body.delay_seconds * 1000).toISOString();
  if (body.not_before !== undefined) return new Date(body.not_before).toISOString();
  return null;
}

export function scheduledTooFar(body: Scheduled, now: Date): boolean {
  const at = body.not_before === undefined ? undefined : Date.parse(body.not_before);
  return at !== undefined && at > now.getTime() + MAX_SCHEDULE_SECONDS * 1000;
}

export const CreateJobBodySchema = z
  .strictObject({
    operation: OperationSchema,
    target_hostname: TargetSchema.optional(),
    retry_policy: RetryPolicySchema.optional(),
    ...ScheduleFields,
  })
  .refine(oneSchedule, ONE_SCHEDULE)
  .refine(notTooFar, NOT_TOO_FAR)
  .openapi("CreateJobRequest", {
    example: { operation: { type: "node.hostname.get", data: {} }, target_hostname: "_any" },
  });

/** RFC 7396: `null` removes a key, objects merge, anything else replaces. */
export const OperationPatchSchema = z
  .record(z.string(), z.unknown())
  .refine((patch) => !nestsDeeperThan(patch, MAX_OPERATION_DEPTH), {
    message: `must nest at most ${MAX_OPERATION_DEPTH} levels`,
  })
  .openapi("OperationPatch", {
    description:
      "A JSON merge patch (RFC 7396) of the original's operation: `null` removes a key, objects merge, arrays and scalars replace. The result must be a valid operation.",
    example: { data: { timeout: 30 } },
  });

export const RetryJobBodySchema = z
  .strictObject({
    target_hostname: TargetSchema.nullable().optional(),
    operation: OperationSchema.optional().openapi({
      description: "Run this operation instead of the original's (validated as on create)",
    }),
    operation_patch: OperationPatchSchema.optional(),
    retry_policy: RetryPolicySchema.nullable().optional().openapi({
      description: "The new job's policy; absent: the original's; null: none",
    }),
    reset_attempts: z.boolean().optional().openapi({
      description: "Count attempts from 1 again (the policy's attempts start over)",
    }),
    ...ScheduleFields,
  })
  .refine((body) => body.operation === undefined || body.operation_patch === undefined, {
    message: "give operation or operation_patch, not both",
  })
  .refine(oneSchedule, ONE_SCHEDULE)
  .refine(notTooFar, NOT_TOO_FAR)
  .openapi("RetryJobRequest", { example: { target_hostname: "_any" } });

export const JobStatusSchema = z.enum(JOB_STATUSES).openapi("JobStatus");

const LineageIdSchema = z
  .string()
  .regex(UUID, "must be a UUID")
  .transform((id) => id.toLowerCase());

const BooleanQuery = z
  .enum(["true", "false"], { message: "must be true or false" })
  .transform((value) => value === "true");

export const ListJobsQuerySchema = z
  .strictObject({
    status: z
      .enum([...JOB_STATUSES, "submitted"])
      .optional()
      .transform((status) => (status === "submitted" ? "unprocessed" : status))
      .openapi({
        description: "Only jobs in this status (`submitted` is an alias of `unprocessed`)",
      }),
    limit: limitParameter(10),
    offset: queryInteger(0, 1_000_000_000).default(0).openapi({
      description:
        "Jobs to skip (each skipped job is read: deep pages cost their offset). Not with `cursor`.",
    }),
    cursor: cursorParameter(/^[1-9][0-9]{0,15}$/, "1042"),
    retry_of: LineageIdSchema.optional().openapi({
      description: "Only jobs retried from this job",
    }),
    root_job_id: LineageIdSchema.optional().openapi({
      description: "Only jobs of the retry chain that started with this job",
    }),
    due: BooleanQuery.optional().openapi({
      description:
        "`false`: only jobs waiting for their `not_before`; `true`: only jobs not waiting",
    }),
    retries_exhausted: BooleanQuery.optional().openapi({
      description: "`true`: only dead letters (their policy's attempts ran out)",
    }),
    target: TargetSchema.optional().openapi({
      description:
        "Only jobs submitted for exactly this target (`_any`, `_all`, a hostname or a `key:value` label selector, as stored: no label matching)",
      example: "web-01",
    }),
    held_by: z.string().regex(HOSTNAME, "must be a hostname").optional().openapi({
      description:
        "Only jobs this agent holds: its delivery is acknowledged or started (a lease that ran out counts until the job is handed out again or swept)",
      example: "web-01",
    }),
  })
  .refine((query) => query.cursor === undefined || query.offset === 0, {
    message: "use cursor or offset, not both",
    path: ["cursor"],
  });

export const JobAcceptedSchema = z
  .object({
    job_id: z.uuid(),
    status: z.literal("unprocessed"),
    revision: z.number().int(),
    timestamp: Timestamp,
  })
  .openapi("JobAccepted");

const StatusCountsSchema = z
  .object(
    Object.fromEntries(JOB_STATUSES.map((s) => [s, z.number().int()])) as Record<
      (typeof JOB_STATUSES)[number],
      z.ZodNumber
    >,
  )
  .openapi("StatusCounts");

export const JobSummarySchema = z
  .object({
    id: z.uuid(),
    status: JobStatusSchema,
    created: Timestamp,
    updated_at: Timestamp,
    operation: OperationSchema,
    target_hostname: z.string(),
    revision: z
      .number()
      .int()
      .openapi({ description: "Revision of the last batch that changed this job" }),
    retry_of: z.uuid().optional().openapi({ description: "The job this one was retried from" }),
    root_job_id: z.uuid().openapi({ description: "The first job of the retry chain" }),
    attempt: z.number().int().min(1).openapi({ description: "1 for an original, +1 per retry" }),
    result: z
      .unknown()
      .optional()
      .openapi({ description: "The result, when exactly one agent answered" }),
    changed: z.boolean().nullable(),
    error: z.string().optional(),
    hostname: z.string().optional().openapi({ description: "The agent that finished it last" }),
    retry_policy: RetryPolicyViewSchema.nullable(),
    not_before: Timestamp.nullable().openapi({
      description: "No agent gets the job before this time; null: at once",
    }),
    retried_by: z.enum(["manual", "automatic"]).nullable().openapi({
      description: "How this job came to be a retry; null for an original",
    }),
    operation_changed: z.boolean().openapi({
      description: "Its operation differs from the job it was retried from",
    }),
    cancel_requested: z.boolean().openapi({
      description: "A cancel was asked; the job ends `cancelled` once no agent holds it",
    }),
    retries_exhausted: z.boolean().openapi({
      description: "It ended in a status its policy retries, with no attempts left",
    }),
  })
  .openapi("JobSummary");

export const AgentResponseSchema = z
  .object({
    status: z.enum(["completed", "failed", "skipped"]),
    data: z.unknown().optional(),
    changed: z.boolean().nullable(),
    error: z.string().optional(),
    hostname: z.string(),
  })
  .openapi("AgentResponse");

export const AgentStateSchema = z
  .object({
    status: z.enum(["acknowledged", "started", "completed", "failed", "skipped"]),
    error: z.string().optional(),
    duration: z.string().optional().openapi({ example: "812ms" }),
  })
  .openapi("AgentState");

export const TimelineEntrySchema = z
  .object({
    timestamp: Timestamp,
    event: z.enum(EVENT_NAMES),
    hostname: z.string(),
    message: z.string(),
    error: z.string().optional(),
  })
  .openapi("TimelineEntry");

const SUMMARY_EXAMPLE = {
  id: "5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10",
  status: "completed",
  created: "2026-11-28T10:00:00.123Z",
  updated_at: "2026-11-28T10:00:01.935Z",
  operation: { type: "node.hostname.get", data: {} },
  target_hostname: "_any",
  revision: 42,
  root_job_id: "5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10",
  attempt: 1,
  result: { hostname: "web-01" },
  changed: false,
  hostname: "web-01",
  retry_policy: null,
  not_before: null,
  retried_by: null,
  operation_changed: false,
  cancel_requested: false,
  retries_exhausted: false,
} as const;

export const JobSchema = JobSummarySchema.extend({
  retried_as: z
    .array(z.uuid())
    .openapi({ description: "Jobs retried from this one, oldest first" }),
  responses: z.record(z.string(), AgentResponseSchema),
  agent_states: z.record(z.string(), AgentStateSchema),
  timeline: z.array(TimelineEntrySchema),
}).openapi("Job", {
  example: {
    ...SUMMARY_EXAMPLE,
    retried_as: [],
    responses: {
      "web-01": {
        status: "completed",
        data: { hostname: "web-01" },
        changed: false,
        hostname: "web-01",
      },
    },
    agent_states: { "web-01": { status: "completed", duration: "812ms" } },
    timeline: [
      {
        timestamp: "2026-11-28T10:00:00.123Z",
        event: "submitted",
        hostname: "_api",
        message: "Job submitted",
      },
      {
        timestamp: "2026-11-28T10:00:01.123Z",
        event: "acknowledged",
        hostname: "web-01",
        message: "Job acknowledged by web-01",
      },
      {
        timestamp: "2026-11-28T10:00:01.935Z",
        event: "completed",
        hostname: "web-01",
        message: "Job completed by web-01",
      },
    ],
  },
});

export const JobListSchema = z
  .object({
    total_items: z.number().int().openapi({ description: "Jobs matching the filter" }),
    status_counts: StatusCountsSchema,
    items: z.array(JobSummarySchema),
    next_cursor: NextCursorSchema,
  })
  .openapi("JobList", {
    example: {
      total_items: 1,
      status_counts: {
        unprocessed: 0,
        processing: 0,
        completed: 1,
        failed: 0,
        partial_failure: 0,
        skipped: 0,
        cancelled: 0,
      },
      items: [SUMMARY_EXAMPLE],
      next_cursor: null,
    },
  });

/** Which jobs a bulk request names: 1–100 distinct ids. */
const BulkJobIdsSchema = z
  .array(
    z
      .string()
      .regex(UUID, "must be a UUID")
      .transform((id) => id.toLowerCase()),
  )
  .min(1)
  .max(100)
  .refine((ids) => new Set(ids).size === ids.length, { message: "must not repeat an id" });

/** Or: the oldest jobs in a status, at most `limit`. */
const BulkLimitSchema = z
  .number()
  .int()
  .min(1)
  .max(100)
  .optional()
  .openapi({ description: "How many, 1–100 (default 100)" });

const DryRunSchema = z
  .boolean()
  .optional()
  .openapi({ description: "Say what would happen and write nothing (needs `job:read` too)" });

const BulkRetryOptions = {
  target_hostname: TargetSchema.nullable().optional(),
  dry_run: DryRunSchema,
};

const BulkRetryByIdsSchema = z
  .strictObject({
    job_ids: BulkJobIdsSchema.openapi({ description: "1–100 jobs to retry" }),
    ...BulkRetryOptions,
  })
  .openapi("BulkRetryByIds");

const BulkRetryByStatusSchema = z
  .strictObject({
    status: JobStatusSchema.openapi({ description: "Retry the oldest jobs in this status" }),
    limit: BulkLimitSchema,
    ...BulkRetryOptions,
  })
  .openapi("BulkRetryByStatus");

export const BulkRetryBodySchema = z.union([BulkRetryByIdsSchema, BulkRetryByStatusSchema]).openapi(
  "BulkRetryRequest",
  {
    description: "Either `job_ids`, or `status` with an optional `limit`; never both",
    example: { status: "failed", limit: 20, target_hostname: "_any", dry_run: true },
  },
  { unionPreferredType: "oneOf" },
);

const BulkCancelByIdsSchema = z
  .strictObject({
    job_ids: BulkJobIdsSchema.openapi({ description: "1–100 jobs to cancel" }),
    dry_run: DryRunSchema,
  })
  .openapi("BulkCancelByIds");

const BulkCancelByStatusSchema = z
  .strictObject({
    status: JobStatusSchema.openapi({ description: "Cancel the oldest jobs in this status" }),
    limit: BulkLimitSchema,
    dry_run: DryRunSchema,
  })
  .openapi("BulkCancelByStatus");

export const BulkCancelBodySchema = z
  .union([BulkCancelByIdsSchema, BulkCancelByStatusSchema])
  .openapi(
    "BulkCancelRequest",
    {
      description: "Either `job_ids`, or `status` with an optional `limit`; never both",
      example: { status: "unprocessed", limit: 20, dry_run: true },
    },
    { unionPreferredType: "oneOf" },
  );

export const CancelOutcomeSchema = z.enum(["cancelled", "cancel_requested"]);

export const CancelResultSchema = z
  .object({
    job_id: z.uuid(),
    status: JobStatusSchema.openapi({
      description: "`cancelled`, or `processing` while an agent holds the job",
    }),
    outcome: CancelOutcomeSchema.openapi({
      description:
        "`cancelled`: done; `cancel_requested`: an agent holds it, and its next report or lease extension ends it",
    }),
    revision: z.number().int(),
  })
  .openapi("CancelResult");

export const BulkCancelResultSchema = z
  .object({
    revision: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "The revision the batch took; null if it wrote nothing" }),
    dry_run: z.boolean(),
    results: z.array(
      z.object({
        job_id: z.uuid(),
        outcome: z.enum([
          "cancelled",
          "cancel_requested",
          "would_cancel",
          "would_request_cancel",
          "finished",
          "not_found",
        ]),
        error: z.string().nullable(),
      }),
    ),
  })
  .openapi("BulkCancelResult");

export const BulkRetryResultSchema = z
  .object({
    revision: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "The revision the batch took; null if it wrote nothing" }),
    dry_run: z.boolean(),
    results: z.array(
      z.object({
        source_job_id: z.uuid(),
        job_id: z.uuid().nullable().openapi({ description: "The new job, when one was made" }),
        outcome: z.enum(["retried", "would_retry", "not_found"]),
        error: z.string().nullable(),
      }),
    ),
  })
  .openapi("BulkRetryResult");

export type Job = z.infer<typeof JobSchema>;
export type JobSummary = z.infer<typeof JobSummarySchema>;
export type JobAccepted = z.infer<typeof JobAcceptedSchema>;
export type Operation = z.infer<typeof OperationSchema>;

export const JobEventsQuerySchema = z.strictObject({
  follow: z.enum(["retries"]).optional().openapi({
    description:
      "`retries`: when the job ends, go on into the job retried from it (automatic retries included), to the end of the chain",
  }),
  after: z
    .string()
    .regex(/^[0-9]{1,15}$/, "must be an event id this service returned")
    .optional()
    .openapi({
      description:
        "Only events after this one (an event `id`, or a page's `next_cursor`); for a stream, the `Last-Event-ID` header does the same",
    }),
  limit: queryInteger(1, 1000).default(100).openapi({ description: "JSON page size, 1–1000" }),
});

export const JobEventSchema = z
  .object({
    id: z.string().openapi({
      description:
        "The event's position: send it as `after` (or `Last-Event-ID`) to resume after it",
      example: "4711",
    }),
    job_id: z.uuid(),
    event: z.enum(EVENT_NAMES),
    hostname: z.string(),
    timestamp: Timestamp,
    message: z.string(),
    error: z.string().optional(),
    data: z
      .record(z.string(), z.unknown())
      .nullable()
      .openapi({ description: "What the event carries: a result, an error, the retry it made…" }),
  })
  .openapi("JobEvent");

export const JobEventPageSchema = z
  .object({
    items: z.array(JobEventSchema),
    next_cursor: z.string().nullable().openapi({
      description:
        "Send as `after` for what comes next; null once the job (with `follow=retries`, the chain) has ended and every event was given",
    }),
    job_id: z
      .uuid()
      .openapi({ description: "The job the page ends in (with `follow`, the chain's latest)" }),
    status: JobStatusSchema,
    ended: z.boolean().openapi({ description: "The job (or chain) reached its final status" }),
  })
  .openapi("JobEventPage");

export type JobEvent = z.infer<typeof JobEventSchema>;
