import { z } from "@hono/zod-openapi";
import { HOSTNAME, LABEL_KEY, LABEL_VALUE } from "../domain/target";
import { TOO_LARGE } from "./error";
import {
  JobIdParamsSchema,
  JobStatusSchema,
  MAX_OPERATION_DEPTH,
  nestsDeeperThan,
  OperationSchema,
} from "./job";
import { cursorParameter, limitParameter, NextCursorSchema } from "./paging";
import { Timestamp } from "./timestamp";

export const MAX_LABELS = 64;
export const MAX_LABELS_BYTES = 4096;
export const MAX_RESULT_BYTES = 64 * 1024;
export const DEFAULT_CLAIM_LIMIT = 1;
export const DEFAULT_LEASE_SECONDS = 300;
export const MAX_WAIT_SECONDS = 60;

const HostnameSchema = z
  .string()
  .regex(
    HOSTNAME,
    "must be 1–253 letters, digits, '.', '_' or '-', starting with a letter or digit",
  )
  .openapi({
    param: { name: "hostname", in: "path" },
    description: "The agent's hostname",
    example: "web-01",
  });

export const HostnameParamsSchema = z.object({ hostname: HostnameSchema });

export const AgentJobParamsSchema = z.object({
  hostname: HostnameSchema,
  id: JobIdParamsSchema.shape.id,
});

export const LabelsSchema = z
  .record(
    z.string().regex(LABEL_KEY, "label keys are 1–63 letters, digits, '_' and '-'"),
    z
      .string()
      .regex(
        LABEL_VALUE,
        "label values are up to 253 characters of dot-separated segments of letters, digits, '_' and '-'",
      ),
  )
  .refine((labels) => Object.keys(labels).length <= MAX_LABELS, {
    message: `at most ${MAX_LABELS} labels`,
  })
  .refine(
    (labels) => new TextEncoder().encode(JSON.stringify(labels)).byteLength <= MAX_LABELS_BYTES,
    {
      message: `must serialise to at most ${MAX_LABELS_BYTES} bytes`,
      params: TOO_LARGE,
    },
  )
  .openapi("Labels", {
    maxProperties: MAX_LABELS,
    // The metadata type knows OpenAPI 3.0's schema object only, without `propertyNames`.
    ...{ propertyNames: { pattern: LABEL_KEY.source } },
    description:
      "Key → value. A job targeted at `key:value` goes to agents whose label `key` equals `value` or starts with `value.`",
    example: { group: "web.dev.us-east", os: "debian" },
  });

export type Labels = z.infer<typeof LabelsSchema>;

export const RegisterAgentBodySchema = z
  .strictObject({
    labels: LabelsSchema.optional().openapi({
      description: "Replaces the agent's labels; leave it out to keep them",
    }),
  })
  .openapi("RegisterAgentRequest", { example: { labels: { group: "web.dev.us-east" } } });

export const AgentSchema = z
  .object({
    hostname: z.string(),
    labels: LabelsSchema,
    registered_at: Timestamp,
    last_seen: Timestamp.openapi({
      description: "The last registration, claim or report by this agent",
    }),
    state: z.enum(["ready", "stale"]).openapi({
      description: "`ready` when seen within the agent TTL (`AGENT_TTL_SECONDS`), else `stale`",
    }),
    owner_key_prefix: z.string().nullable().openapi({
      description:
        "The prefix of the key that owns the hostname (the newest of its rotations); only that key may act as the agent. Null for an agent registered before ownership existed: the first key to act as it becomes its owner.",
      example: "jobs_k3v9x0m2p7qa",
    }),
    held_jobs: z.number().int().min(0).openapi({
      description:
        "How many jobs the agent holds (acknowledged or started, not yet ended): `GET /job?held_by=` lists them",
    }),
  })
  .openapi("Agent", {
    example: {
      hostname: "web-01",
      labels: { group: "web.dev.us-east" },
      registered_at: "2026-11-28T10:00:00.123Z",
      last_seen: "2026-11-28T10:05:00.456Z",
      state: "ready",
      owner_key_prefix: "jobs_k3v9x0m2p7qa",
      held_jobs: 2,
    },
  });

export const ListAgentsQuerySchema = z.strictObject({
  limit: limitParameter(100),
  cursor: cursorParameter(HOSTNAME, "web-01"),
});

export const AgentListSchema = z
  .object({ items: z.array(AgentSchema), next_cursor: NextCursorSchema })
  .openapi("AgentList");

const LeaseSecondsSchema = z
  .number()
  .int()
  .min(5)
  .max(3600)
  .openapi({
    description: `How long the agent holds each job before it can be handed out again, 5–3600 (default ${DEFAULT_LEASE_SECONDS})`,
  });

const LeaseTokenSchema = z.string().min(1, "must not be empty").max(256).openapi({
  description:
    "The `lease_token` the claim handed out with this delivery of the job; each delivery has its own",
  example: "q2H8v0XkR4m9ZtLw1bYc7sNf3dPa6uEo",
});

export const ClaimBodySchema = z
  .strictObject({
    limit: z
      .number()
      .int()
      .min(1)
      .max(100)
      .optional()
      .openapi({ description: `How many jobs at most, 1–100 (default ${DEFAULT_CLAIM_LIMIT})` }),
    lease_seconds: LeaseSecondsSchema.optional(),
    wait_seconds: z
      .number()
      .int()
      .min(0)
      .max(MAX_WAIT_SECONDS)
      .optional()
      .openapi({
        description: `When nothing is due, how long to wait for work, 0–${MAX_WAIT_SECONDS} (default 0: answer at once). The claim answers as soon as a job becomes due for the agent, or with an empty list when the time runs out.`,
      }),
  })
  .openapi("ClaimRequest", { example: { limit: 10, lease_seconds: 60, wait_seconds: 30 } });

export const ClaimedJobSchema = z
  .object({
    id: z.uuid(),
    operation: OperationSchema,
    target_hostname: z.string(),
    attempt: z
      .number()
      .int()
      .min(1)
      .openapi({ description: "The job's attempt in its retry chain: 1 for an original" }),
    delivery: z
      .number()
      .int()
      .min(1)
      .openapi({ description: "1 for the first hand-out, +1 for each redelivery" }),
    lease_expires_at: Timestamp.openapi({
      description:
        "Report before this, or extend the lease (`POST /agent/{hostname}/job/{id}/lease`); after it the job can be handed out again and this delivery's reports are refused",
    }),
    lease_token: z.string().openapi({
      description:
        "This delivery's proof (192 random bits): every report and lease extension for it must carry it. Only its hash is stored; a redelivery gets a new one.",
    }),
  })
  .openapi("ClaimedJob");

export const ClaimResultSchema = z
  .object({ jobs: z.array(ClaimedJobSchema) })
  .openapi("ClaimResult", {
    example: {
      jobs: [
        {
          id: "5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10",
          operation: { type: "echo", data: { hello: "world" } },
          target_hostname: "_any",
          attempt: 1,
          delivery: 1,
          lease_expires_at: "2026-11-28T10:06:00.123Z",
          lease_token: "q2H8v0XkR4m9ZtLw1bYc7sNf3dPa6uEo",
        },
      ],
    },
  });

export const AGENT_EVENTS = ["started", "completed", "failed", "skipped"] as const;
export type AgentReportEvent = (typeof AGENT_EVENTS)[number];

const Outcome = {
  lease_token: LeaseTokenSchema,
  result: z.unknown().optional().openapi({ description: "Any JSON: what the operation returned" }),
  changed: z
    .boolean()
    .optional()
    .openapi({ description: "Whether the operation changed the host" }),
};

const EventError = z
  .string()
  .min(1)
  .max(4096)
  .openapi({ description: "Why it failed or was skipped" });

const eventName = (event: AgentReportEvent, description: string) =>
  z.literal(event).openapi({ description });

export const AgentEventBodySchema = z
  .discriminatedUnion("event", [
    z
      .strictObject({
        event: eventName("started", "At most once per delivery, before the final event"),
        lease_token: LeaseTokenSchema,
      })
      .openapi("AgentStartedEvent"),
    z
      .strictObject({
        event: eventName("completed", "The operation ran"),
        ...Outcome,
        error: EventError.optional(),
      })
      .openapi("AgentCompletedEvent"),
    z
      .strictObject({
        event: eventName("failed", "The operation failed: `error` says why"),
        ...Outcome,
        error: EventError,
      })
      .openapi("AgentFailedEvent"),
    z
      .strictObject({
        event: eventName("skipped", "The agent did not run it"),
        ...Outcome,
        error: EventError.optional(),
      })
      .openapi("AgentSkippedEvent"),
  ])
  .refine((body) => !("result" in body) || !nestsDeeperThan(body.result, MAX_OPERATION_DEPTH), {
    message: `must nest at most ${MAX_OPERATION_DEPTH} levels`,
    path: ["result"],
  })
  .refine(
    (body) =>
      !("result" in body) ||
      body.result === undefined ||
      new TextEncoder().encode(JSON.stringify(body.result)).byteLength <= MAX_RESULT_BYTES,
    {
      message: `must serialise to at most ${MAX_RESULT_BYTES} bytes`,
      path: ["result"],
      params: TOO_LARGE,
    },
  )
  .openapi("AgentEventRequest", {
    description:
      "`started` (with nothing but the token), then one final event: `completed`, `failed` (with `error`) or `skipped`",
    example: {
      event: "completed",
      lease_token: "q2H8v0XkR4m9ZtLw1bYc7sNf3dPa6uEo",
      result: { hostname: "web-01" },
      changed: false,
    },
  });

/** A report as the database takes it: the event and, when final, its outcome. */
export type AgentReportBody = {
  event: AgentReportEvent;
  result?: unknown;
  changed?: boolean | undefined;
  error?: string | undefined;
};

export const AgentEventResultSchema = z
  .object({
    job_id: z.uuid(),
    status: JobStatusSchema.openapi({ description: "The job's overall status after the event" }),
    revision: z.number().int(),
  })
  .openapi("AgentEventResult", {
    example: { job_id: "5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10", status: "completed", revision: 42 },
  });

export const LeaseBodySchema = z
  .strictObject({
    lease_token: LeaseTokenSchema,
    lease_seconds: LeaseSecondsSchema.openapi({
      description: "The lease now runs until this many seconds from now, 5–3600",
    }),
  })
  .openapi("LeaseRequest", {
    example: { lease_token: "q2H8v0XkR4m9ZtLw1bYc7sNf3dPa6uEo", lease_seconds: 300 },
  });

export const LeaseResultSchema = z
  .object({
    job_id: z.uuid(),
    lease_expires_at: Timestamp,
    delivery: z.number().int().min(1),
  })
  .openapi("Lease", {
    example: {
      job_id: "5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10",
      lease_expires_at: "2026-11-28T10:11:00.123Z",
      delivery: 1,
    },
  });
