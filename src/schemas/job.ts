import { z } from "@hono/zod-openapi";
import { EVENT_NAMES, JOB_STATUSES } from "../domain/status";
import { TARGET } from "../domain/target";
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

export const CreateJobBodySchema = z
  .strictObject({
    operation: OperationSchema,
    target_hostname: TargetSchema.optional(),
  })
  .openapi("CreateJobRequest", {
    example: { operation: { type: "node.hostname.get", data: {} }, target_hostname: "_any" },
  });

export const RetryJobBodySchema = z
  .strictObject({
    target_hostname: TargetSchema.nullable().optional(),
  })
  .openapi("RetryJobRequest", { example: { target_hostname: "_any" } });

export const JobStatusSchema = z.enum(JOB_STATUSES).openapi("JobStatus");

const LineageIdSchema = z
  .string()
  .regex(UUID, "must be a UUID")
  .transform((id) => id.toLowerCase());

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
      },
      items: [SUMMARY_EXAMPLE],
      next_cursor: null,
    },
  });

const BulkRetryOptions = {
  target_hostname: TargetSchema.nullable().optional(),
  dry_run: z
    .boolean()
    .optional()
    .openapi({ description: "Say what would happen and write nothing (needs `job:read` too)" }),
};

const BulkRetryByIdsSchema = z
  .strictObject({
    job_ids: z
      .array(
        z
          .string()
          .regex(UUID, "must be a UUID")
          .transform((id) => id.toLowerCase()),
      )
      .min(1)
      .max(100)
      .refine((ids) => new Set(ids).size === ids.length, { message: "must not repeat an id" })
      .openapi({ description: "1–100 jobs to retry" }),
    ...BulkRetryOptions,
  })
  .openapi("BulkRetryByIds");

const BulkRetryByStatusSchema = z
  .strictObject({
    status: JobStatusSchema.openapi({ description: "Retry the oldest jobs in this status" }),
    limit: z
      .number()
      .int()
      .min(1)
      .max(100)
      .optional()
      .openapi({ description: "How many, 1–100 (default 100)" }),
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
