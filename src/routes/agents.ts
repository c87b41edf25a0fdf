import { createRoute } from "@hono/zod-openapi";
import { createRouter } from "../app";
import { requireScope } from "../auth/middleware";
import {
  type AgentRow,
  claimJobs,
  deleteAgent,
  findReportRefusal,
  listAgents,
  reportEvent,
  upsertAgent,
} from "../db/agents";
import { ApiError } from "../errors";
import { noteWrite } from "../logging";
import {
  AgentEventBodySchema,
  AgentEventResultSchema,
  AgentJobParamsSchema,
  AgentListSchema,
  AgentSchema,
  ClaimBodySchema,
  ClaimResultSchema,
  DEFAULT_CLAIM_LIMIT,
  DEFAULT_LEASE_SECONDS,
  HostnameParamsSchema,
  type Labels,
  RegisterAgentBodySchema,
} from "../schemas/agent";
import { errorResponses } from "../schemas/error";
import { SECURITY } from "./security";

const DEFAULT_TTL_SECONDS = 60;
const DEFAULT_MAX_DELIVERIES = 5;

function positiveInt(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

function toAgent(row: AgentRow, now: number, ttlSeconds: number) {
  return {
    hostname: row.hostname,
    labels: JSON.parse(row.labels) as Labels,
    registered_at: row.registered_at,
    last_seen: row.last_seen,
    state:
      Date.parse(row.last_seen) > now - ttlSeconds * 1000 ? ("ready" as const) : ("stale" as const),
  };
}

function agentNotFound(hostname: string) {
  return new ApiError(404, `agent not found: ${hostname}`);
}

const jsonBody = <T>(schema: T, description: string, required = true) => ({
  required,
  description,
  content: { "application/json": { schema } },
});

export const registerAgent = createRoute({
  method: "put",
  path: "/agent/{hostname}",
  operationId: "registerAgent",
  tags: ["agents"],
  summary: "Register or refresh an agent",
  description:
    "Creates the agent or refreshes its `last_seen`; `labels`, when given, replace its labels. An agent receives the `_all` and label jobs created after it registered, and jobs targeted at its hostname. A new agent or new labels take the next store revision.",
  security: SECURITY,
  middleware: [requireScope("agent:write")] as const,
  request: {
    params: HostnameParamsSchema,
    body: jsonBody(RegisterAgentBodySchema, "Optional: the agent's labels", false),
  },
  responses: {
    200: { description: "The agent", content: { "application/json": { schema: AgentSchema } } },
    ...errorResponses(400, 401, 403, 413, 415, 429, 500, 503),
  },
});

export const listAgentsRoute = createRoute({
  method: "get",
  path: "/agent",
  operationId: "listAgents",
  tags: ["agents"],
  summary: "List agents",
  description:
    "Every registered agent, by hostname, with `state` `ready` when it was seen within the agent TTL and `stale` otherwise.",
  security: SECURITY,
  middleware: [requireScope("agent:read")] as const,
  responses: {
    200: {
      description: "The agents",
      content: { "application/json": { schema: AgentListSchema } },
    },
    ...errorResponses(401, 403, 429, 500, 503),
  },
});

export const deregisterAgent = createRoute({
  method: "delete",
  path: "/agent/{hostname}",
  operationId: "deregisterAgent",
  tags: ["agents"],
  summary: "Deregister an agent",
  description:
    "Removes the agent and its labels; jobs can no longer target it. What it did stays in the jobs' history.",
  security: SECURITY,
  middleware: [requireScope("agent:write")] as const,
  request: { params: HostnameParamsSchema },
  responses: {
    204: { description: "Deregistered" },
    ...errorResponses(400, 401, 403, 404, 429, 500, 503),
  },
});

export const claimJobsRoute = createRoute({
  method: "post",
  path: "/agent/{hostname}/claim",
  operationId: "claimJobs",
  tags: ["agents"],
  summary: "Claim jobs",
  description:
    "Hands the agent the jobs due for it, oldest first, each under a lease: `_any` jobs that no agent holds or has finished, jobs targeted at its hostname, and `_all` and label jobs it has not finished. Each claim writes an `acknowledged` event; the job becomes `processing`. A job whose lease ran out is handed out again (`delivery` + 1); after the maximum deliveries (`MAX_DELIVERIES`, default 5) it is failed for that agent with `max deliveries exceeded`. Refreshes `last_seen`. An empty list when nothing is due.",
  security: SECURITY,
  middleware: [requireScope("agent:write")] as const,
  request: {
    params: HostnameParamsSchema,
    body: jsonBody(ClaimBodySchema, "Optional: how many jobs, and the lease", false),
  },
  responses: {
    200: {
      description: "The jobs now leased to the agent",
      content: { "application/json": { schema: ClaimResultSchema } },
    },
    ...errorResponses(400, 401, 403, 404, 413, 415, 429, 500, 503),
  },
});

export const reportJobEvent = createRoute({
  method: "post",
  path: "/agent/{hostname}/job/{id}/event",
  operationId: "reportJobEvent",
  tags: ["agents"],
  summary: "Report on a claimed job",
  description:
    "`started`, then one of `completed` (with `result`, `changed`), `failed` (with `error`) or `skipped`. The event, the agent's answer, the job's status, the counters and the revision move in one transaction. Only the agent holding the job may report: after another agent took it over, or after a final report, the answer is 409 and nothing changes.",
  security: SECURITY,
  middleware: [requireScope("agent:write")] as const,
  request: {
    params: AgentJobParamsSchema,
    body: jsonBody(AgentEventBodySchema, "The event and, when final, the outcome"),
  },
  responses: {
    200: {
      description: "The job's status after the event, and the revision the event took",
      content: { "application/json": { schema: AgentEventResultSchema } },
    },
    ...errorResponses(400, 401, 403, 404, 409, 413, 415, 429, 500, 503),
  },
});

export const agents = createRouter()
  .openapi(registerAgent, async (c) => {
    const { hostname } = c.req.valid("param");
    const { labels } = c.req.valid("json");
    const row = await upsertAgent(c.var.db, { hostname, labels, now: new Date().toISOString() });
    return c.json(
      toAgent(row, Date.now(), positiveInt(c.env.AGENT_TTL_SECONDS, DEFAULT_TTL_SECONDS)),
      200,
    );
  })
  .openapi(listAgentsRoute, async (c) => {
    const ttl = positiveInt(c.env.AGENT_TTL_SECONDS, DEFAULT_TTL_SECONDS);
    const now = Date.now();
    const rows = await listAgents(c.var.db);
    return c.json({ items: rows.map((row) => toAgent(row, now, ttl)) }, 200);
  })
  .openapi(deregisterAgent, async (c) => {
    const { hostname } = c.req.valid("param");
    if (!(await deleteAgent(c.var.db, hostname))) throw agentNotFound(hostname);
    return c.body(null, 204);
  })
  .openapi(claimJobsRoute, async (c) => {
    const { hostname } = c.req.valid("param");
    const body = c.req.valid("json");
    const now = Date.now();
    const leaseSeconds = body.lease_seconds ?? DEFAULT_LEASE_SECONDS;
    const jobs = await claimJobs(c.var.db, {
      hostname,
      now: new Date(now).toISOString(),
      leaseExpiresAt: new Date(now + leaseSeconds * 1000).toISOString(),
      limit: body.limit ?? DEFAULT_CLAIM_LIMIT,
      maxDeliveries: positiveInt(c.env.MAX_DELIVERIES, DEFAULT_MAX_DELIVERIES),
    });
    if (!jobs) throw agentNotFound(hostname);
    return c.json({ jobs }, 200);
  })
  .openapi(reportJobEvent, async (c) => {
    const { hostname, id } = c.req.valid("param");
    const body = c.req.valid("json");
    const outcome = await reportEvent(c.var.db, {
      jobId: id,
      hostname,
      body,
      now: new Date().toISOString(),
    });
    if (outcome) {
      noteWrite(c, outcome);
      return c.json(outcome, 200);
    }
    const refusal = await findReportRefusal(c.var.db, id, hostname);
    if (!refusal.jobExists) throw new ApiError(404, `job not found: ${id}`);
    if (refusal.holder !== null)
      throw new ApiError(
        409,
        `job ${id} is held by agent ${refusal.holder}`,
        "its lease ran out and it was handed out again",
      );
    if (refusal.state !== null && refusal.state !== "pending")
      throw new ApiError(
        409,
        `agent ${hostname} already finished job ${id}`,
        `its state is ${refusal.state}`,
      );
    throw new ApiError(409, `agent ${hostname} does not hold job ${id}`, "claim it first");
  });
