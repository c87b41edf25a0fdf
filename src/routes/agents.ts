import { createRoute } from "@hono/zod-openapi";
import type { Context } from "hono";
import { type AppEnv, createRouter } from "../app";
import { hasScope } from "../auth/api-key";
import { hashLeaseToken } from "../auth/lease-token";
import { announce, claimWaiters, forgetAgent, jobsChanged } from "../background/wakeups";
import {
  type Actor,
  type AgentRow,
  claimJobs,
  type Delivery,
  deleteAgent,
  endCancelledDelivery,
  extendLease,
  findAgentOwner,
  findDeliveryRefusal,
  listAgents,
  reportEvent,
  upsertAgent,
} from "../db/agents";
import type { Db } from "../db/session";
import { agentTtlSeconds, maxDeliveries } from "../domain/agent-settings";
import { hostnameAllowed } from "../domain/target";
import { ApiError } from "../middleware/errors";
import { noteWrite } from "../middleware/logging";
import { sentBody } from "../middleware/utf8-body";
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
  LeaseBodySchema,
  LeaseResultSchema,
  ListAgentsQuerySchema,
  RegisterAgentBodySchema,
} from "../schemas/agent";
import { errorResponses } from "../schemas/error";
import { requires } from "./security";

/** An agent's acts at `now` refresh `last_seen` only once it is half a TTL old: idle claims write nothing. */
function seen(env: Env, now: number) {
  const ttl = agentTtlSeconds(env);
  return { now: new Date(now).toISOString(), seenBefore: new Date(now - ttl * 500).toISOString() };
}

function toAgent(row: AgentRow, now: number, ttlSeconds: number) {
  return {
    hostname: row.hostname,
    labels: JSON.parse(row.labels) as Labels,
    registered_at: row.registered_at,
    last_seen: row.last_seen,
    state:
      Date.parse(row.last_seen) > now - ttlSeconds * 1000 ? ("ready" as const) : ("stale" as const),
    owner_key_prefix: row.owner_key_prefix,
    held_jobs: row.held_jobs,
  };
}

function agentNotFound(hostname: string) {
  return new ApiError("agent_not_found", `agent not found: ${hostname}`);
}

function ownedByAnother(hostname: string) {
  return new ApiError(
    403,
    `agent ${hostname} belongs to another key`,
    "only the key that registered it, or the key it was rotated to, may act as it; an admin key can deregister it",
  );
}

/**
 * The calling key as an agent: refused at once (403, no D1) when the key is restricted to hostname
 * patterns that do not match; ownership is checked by the write itself, in SQL.
 */
function actingAs(c: Context<AppEnv>, hostname: string): Actor {
  const key = c.get("apiKey");
  if (!hostnameAllowed(key.agentHostnames, hostname)) {
    throw new ApiError(
      403,
      `this key may not act as agent ${hostname}`,
      `it is restricted to hostnames matching ${key.agentHostnames?.join(", ")}`,
    );
  }
  return { lineage: key.lineage, admin: hasScope(key, "admin") };
}

/** The delivery a report or lease extension names, as the calling key acts for it. */
async function deliveryOf(
  c: Context<AppEnv>,
  hostname: string,
  jobId: string,
  leaseToken: string,
): Promise<Delivery> {
  const owner = actingAs(c, hostname);
  return { jobId, hostname, owner, tokenHash: await hashLeaseToken(leaseToken) };
}

/** Why an agent write by this lineage changed nothing: no such agent, or another key owns it. */
async function agentRefusal(db: Db, hostname: string, actor: Actor): Promise<ApiError> {
  const agent = await findAgentOwner(db, hostname);
  if (!agent) return agentNotFound(hostname);
  if (agent.owner !== null && agent.owner !== actor.lineage) return ownedByAnother(hostname);
  return new ApiError(409, `agent ${hostname} changed while this request ran`, "send it again");
}

/** Why a report or lease extension of this delivery was refused, from one read. */
async function deliveryRefusal(
  c: Context<AppEnv>,
  delivery: Delivery,
  request: { now: string; event?: string },
): Promise<ApiError> {
  const db = c.var.db;
  const { jobId: id, hostname } = delivery;
  const r = await findDeliveryRefusal(db, delivery);
  if (r.agentOwner === undefined) return agentNotFound(hostname);
  if (r.agentOwner !== null && r.agentOwner !== delivery.owner.lineage)
    return ownedByAnother(hostname);
  if (!r.jobExists) return new ApiError("job_not_found", `job not found: ${id}`);
  if (r.cancelRequested && (r.tokenCurrent || r.tokenDelivery !== null)) {
    const revision = r.tokenCurrent ? await endCancelledDelivery(db, delivery, request.now) : null;
    if (revision !== null) jobsChanged(c.executionCtx, c.env, [{ job: id, revision }]);
    return new ApiError("cancelled", "cancelled", `job ${id} was cancelled: stop working on it`);
  }
  if (r.tokenCurrent) {
    if (r.leaseExpiresAt !== null && r.leaseExpiresAt <= request.now)
      return new ApiError(
        "lease_expired",
        "lease expired",
        `delivery ${r.delivery} of job ${id} to ${hostname} ran out at ${r.leaseExpiresAt}; the job will be handed out again`,
      );
    if (request.event === "started" && r.startedDelivery === r.delivery)
      return new ApiError(
        "already_started",
        "already started",
        `delivery ${r.delivery} of job ${id} reported started already`,
      );
    return new ApiError(409, `job ${id} changed while this request ran`, "send it again");
  }
  if (r.tokenDelivery !== null) {
    const finished = r.state === "completed" || r.state === "failed" || r.state === "skipped";
    if (finished && r.tokenDelivery === r.delivery && r.latestDelivery === r.delivery)
      return new ApiError(
        "already_finished",
        `agent ${hostname} already finished job ${id}`,
        `its state is ${r.state}`,
      );
    return new ApiError(
      "lease_superseded",
      `superseded by delivery ${r.latestDelivery}`,
      r.holder === null
        ? `the token is delivery ${r.tokenDelivery}'s; its lease ran out and the job was handed out again`
        : `the token is delivery ${r.tokenDelivery}'s; the job is held by agent ${r.holder}`,
    );
  }
  return new ApiError(
    "unknown_lease_token",
    "unknown lease token",
    r.state === null || r.state === "pending"
      ? `agent ${hostname} does not hold job ${id}: claim it first`
      : `send the lease_token the claim handed out with job ${id}`,
  );
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
    "Creates the agent or refreshes its `last_seen`; `labels`, when given, replace its labels. The key that registers a hostname owns it: any other key gets 403 on every agent route for it (the owner's rotation successor is the owner). A key restricted by `agent_hostnames` may register only matching hostnames. An agent receives the `_all` and label jobs created after it registered, and jobs targeted at its hostname. A new agent or new labels take the next store revision.",
  ...requires("agent:write"),
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
    "A page of registered agents, by hostname, with `state` `ready` when it was seen within the agent TTL and `stale` otherwise, and the prefix of the key that owns it.",
  ...requires("agent:read"),
  request: { query: ListAgentsQuerySchema },
  responses: {
    200: {
      description: "The agents",
      content: { "application/json": { schema: AgentListSchema } },
    },
    ...errorResponses(400, 401, 403, 429, 500, 503),
  },
});

export const deregisterAgent = createRoute({
  method: "delete",
  path: "/agent/{hostname}",
  operationId: "deregisterAgent",
  tags: ["agents"],
  summary: "Deregister an agent",
  description:
    "By the owning key, or any admin key (which frees the hostname). Removes the agent and its labels in one transaction, and ends what it held: its share of jobs meant for it (its hostname, `_all`, its labels) ends `skipped` with `agent deregistered` in the timeline, and the leases of `_any` jobs it held run out at once, so any other agent's next claim takes them over. Jobs can no longer target it, and its reports get 404. What it did stays in the jobs' history.",
  ...requires("agent:write"),
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
    "Hands the agent the jobs due for it, oldest first, each under a lease with its own `lease_token`, which the delivery's reports and lease extensions must carry: `_any` jobs that no agent holds or has finished, jobs targeted at its hostname, and `_all` and label jobs it has not finished. Each claim writes an `acknowledged` event; the job becomes `processing`. A job whose lease ran out is handed out again (`delivery` + 1); after the maximum deliveries (`MAX_DELIVERIES`, default 5) it is failed for that agent with `max deliveries exceeded`. An empty list when nothing is due; such a claim writes nothing, except `last_seen`, which every agent route refreshes at most once per half `AGENT_TTL_SECONDS`.",
  ...requires("agent:write"),
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
    "`started` (once per delivery), then one of `completed` (with `result`, `changed`), `failed` (with `error`) or `skipped`, each with the delivery's `lease_token`. The event, the agent's answer, the job's status, the counters and the revision move in one transaction. Only the current delivery may report, before its lease runs out; otherwise the answer is 409 and nothing changes, with `error` saying why: `lease expired`, `superseded by delivery N` (a redelivery, to this agent or another, has the job now), `unknown lease token`, `already started`, or that the agent already finished the job.",
  ...requires("agent:write"),
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

export const extendLeaseRoute = createRoute({
  method: "post",
  path: "/agent/{hostname}/job/{id}/lease",
  operationId: "extendLease",
  tags: ["agents"],
  summary: "Extend a lease",
  description:
    "For jobs that run longer than their lease: the delivery's lease now runs until `lease_seconds` from now. Needs the delivery's `lease_token`, before the lease runs out, on the report's rules (403 for another key's agent; 409 `lease expired`, `superseded by delivery N`, `unknown lease token`). One round trip; takes no store revision, since the job does not change. Refreshes `last_seen`.",
  ...requires("agent:write"),
  request: {
    params: AgentJobParamsSchema,
    body: jsonBody(LeaseBodySchema, "The delivery's token and the new lease"),
  },
  responses: {
    200: {
      description: "The delivery's new lease",
      content: { "application/json": { schema: LeaseResultSchema } },
    },
    ...errorResponses(400, 401, 403, 404, 409, 413, 415, 429, 500, 503),
  },
});

export const agents = createRouter()
  .openapi(registerAgent, async (c) => {
    const { hostname } = c.req.valid("param");
    const { labels: valid } = c.req.valid("json");
    const labels = valid && ((await sentBody(c)).labels as typeof valid);
    const owner = actingAs(c, hostname);
    const row = await upsertAgent(c.var.db, {
      hostname,
      labels,
      now: new Date().toISOString(),
      owner,
    });
    if (!row) throw ownedByAnother(hostname);
    forgetAgent(c.executionCtx, c.env, hostname);
    return c.json(toAgent(row, Date.now(), agentTtlSeconds(c.env)), 200);
  })
  .openapi(listAgentsRoute, async (c) => {
    const ttl = agentTtlSeconds(c.env);
    const now = Date.now();
    const { items, next_cursor } = await listAgents(c.var.db, c.req.valid("query"));
    return c.json({ items: items.map((row) => toAgent(row, now, ttl)), next_cursor }, 200);
  })
  .openapi(deregisterAgent, async (c) => {
    const { hostname } = c.req.valid("param");
    const actor = actingAs(c, hostname);
    const now = new Date().toISOString();
    const deleted = await deleteAgent(c.var.db, { hostname, now, actor });
    if (!deleted) throw await agentRefusal(c.var.db, hostname, actor);
    forgetAgent(c.executionCtx, c.env, hostname);
    const { revision } = deleted;
    jobsChanged(
      c.executionCtx,
      c.env,
      deleted.changed.map((job) => ({ job, revision })),
    );
    if (deleted.freedAnyJobs > 0)
      announce(c.executionCtx, c.env, [
        { target: "_any", revision: deleted.revision, count: deleted.freedAnyJobs },
      ]);
    return c.body(null, 204);
  })
  .openapi(claimJobsRoute, async (c) => {
    const { hostname } = c.req.valid("param");
    const body = c.req.valid("json");
    const owner = actingAs(c, hostname);
    const leaseSeconds = body.lease_seconds ?? DEFAULT_LEASE_SECONDS;
    const claim = async () => {
      const now = Date.now();
      const outcome = await claimJobs(c.var.db, {
        hostname,
        owner,
        ...seen(c.env, now),
        leaseExpiresAt: new Date(now + leaseSeconds * 1000).toISOString(),
        limit: body.limit ?? DEFAULT_CLAIM_LIMIT,
        maxDeliveries: maxDeliveries(c.env),
      });
      if ("refused" in outcome) throw await agentRefusal(c.var.db, hostname, owner);
      const { revision } = outcome;
      jobsChanged(
        c.executionCtx,
        c.env,
        outcome.changed.map((job) => ({ job, revision })),
      );
      return outcome;
    };
    const wait = (body.wait_seconds ?? 0) * 1000;
    if (wait === 0) return c.json({ jobs: (await claim()).jobs }, 200);
    const deadline = Date.now() + wait;
    const waiters = claimWaiters(c.env);
    // A long claim whose agent the object knows to be idle waits at once, without a D1 claim.
    const vouched = await waiters
      .resume({ hostname, lineage: owner.lineage, timeoutMs: wait })
      .catch(() => null);
    // An agent that stopped while its claim waited must not be handed a job it will never run.
    const gone = () => c.req.raw.signal.aborted;
    if (vouched === false || gone()) return c.json({ jobs: [] }, 200);
    let outcome = await claim();
    // Nothing due: wait in the Durable Object (no D1 query meanwhile) until work for this agent
    // is announced or seen in the feed, then claim again. A wait that ends with the object gone
    // (restarted, say) may have missed a wake-up: one more claim then. A wait that ran out in the
    // object missed nothing: the object reads the feed while claims wait.
    while (outcome.jobs.length === 0 && Date.now() < deadline) {
      const woken = await waiters
        .wait({
          hostname,
          lineage: owner.lineage,
          labels: outcome.labels,
          since: outcome.revision,
          timeoutMs: deadline - Date.now(),
        })
        .catch(() => undefined);
      if (woken === false || gone()) break;
      outcome = await claim();
      if (woken === undefined) break;
    }
    return c.json({ jobs: outcome.jobs }, 200);
  })
  .openapi(reportJobEvent, async (c) => {
    const { hostname, id } = c.req.valid("param");
    const { lease_token, ...body } = c.req.valid("json");
    const at = seen(c.env, Date.now());
    const delivery = await deliveryOf(c, hostname, id, lease_token);
    const outcome = await reportEvent(c.var.db, { ...delivery, ...at, body });
    if (!outcome) throw await deliveryRefusal(c, delivery, { now: at.now, event: body.event });
    noteWrite(c, outcome);
    jobsChanged(c.executionCtx, c.env, [{ job: id, revision: outcome.revision }]);
    return c.json(outcome, 200);
  })
  .openapi(extendLeaseRoute, async (c) => {
    const { hostname, id } = c.req.valid("param");
    const { lease_token, lease_seconds } = c.req.valid("json");
    const now = Date.now();
    const delivery = await deliveryOf(c, hostname, id, lease_token);
    const at = seen(c.env, now);
    const lease = await extendLease(c.var.db, {
      ...delivery,
      ...at,
      leaseExpiresAt: new Date(now + lease_seconds * 1000).toISOString(),
    });
    if (!lease) throw await deliveryRefusal(c, delivery, at);
    return c.json(lease, 200);
  });
