import { createRoute } from "@hono/zod-openapi";
import { createRouter } from "../app";
import { requireScope } from "../auth/middleware";
import { deleteJob, findJob, insertJob, listJobs, retryJob } from "../db/jobs";
import { ApiError } from "../errors";
import { errorResponses } from "../schemas/error";
import {
  CreateJobBodySchema,
  JobAcceptedSchema,
  JobIdParamsSchema,
  JobListSchema,
  JobSchema,
  ListJobsQuerySchema,
  RetryJobBodySchema,
} from "../schemas/job";
import { SECURITY } from "./security";

const jsonBody = <T>(schema: T, description: string, required = true) => ({
  required,
  description,
  content: { "application/json": { schema } },
});

const accepted = {
  description:
    "The job was stored; its id, status, the store revision it took and its creation time",
  headers: { Location: { description: "The new job's URL", schema: { type: "string" as const } } },
  content: { "application/json": { schema: JobAcceptedSchema } },
};

function notFound(id: string) {
  return new ApiError(404, `job not found: ${id}`);
}

export const createJob = createRoute({
  method: "post",
  path: "/job",
  operationId: "createJob",
  tags: ["jobs"],
  summary: "Submit a job",
  description:
    "Stores a new job for agents to run, with its `submitted` event, in one transaction that takes the next store revision. `target_hostname` defaults to `_any`.",
  security: SECURITY,
  middleware: [requireScope("job:write")] as const,
  request: { body: jsonBody(CreateJobBodySchema, "The operation and, optionally, its target") },
  responses: {
    201: accepted,
    ...errorResponses(400, 401, 403, 413, 415, 500, 503),
  },
});

export const listJobsRoute = createRoute({
  method: "get",
  path: "/job",
  operationId: "listJobs",
  tags: ["jobs"],
  summary: "List jobs",
  description:
    "Newest first. `total_items` counts the jobs matching the filter; `status_counts` counts every job by status, whatever the filter.",
  security: SECURITY,
  middleware: [requireScope("job:read")] as const,
  request: { query: ListJobsQuerySchema },
  responses: {
    200: {
      description: "A page of jobs",
      content: { "application/json": { schema: JobListSchema } },
    },
    ...errorResponses(400, 401, 403, 500, 503),
  },
});

export const getJob = createRoute({
  method: "get",
  path: "/job/{id}",
  operationId: "getJob",
  tags: ["jobs"],
  summary: "Get a job",
  description: "The job with its status, lineage, per-agent responses and states, and timeline.",
  security: SECURITY,
  middleware: [requireScope("job:read")] as const,
  request: { params: JobIdParamsSchema },
  responses: {
    200: { description: "The job", content: { "application/json": { schema: JobSchema } } },
    ...errorResponses(400, 401, 403, 404, 500, 503),
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
  security: SECURITY,
  middleware: [requireScope("job:write")] as const,
  request: { params: JobIdParamsSchema },
  responses: {
    204: { description: "Deleted" },
    ...errorResponses(400, 401, 403, 404, 500, 503),
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
  security: SECURITY,
  middleware: [requireScope("job:write")] as const,
  request: {
    params: JobIdParamsSchema,
    body: jsonBody(RetryJobBodySchema, "Optional: a target for the new job", false),
  },
  responses: {
    201: accepted,
    ...errorResponses(400, 401, 403, 404, 413, 415, 500, 503),
  },
});

export const jobs = createRouter()
  .openapi(createJob, async (c) => {
    const { operation, target_hostname } = c.req.valid("json");
    const job = await insertJob(c.var.db, {
      id: crypto.randomUUID(),
      operation,
      target: target_hostname ?? "_any",
      now: new Date().toISOString(),
    });
    c.header("Location", `/job/${job.job_id}`);
    return c.json(job, 201);
  })
  .openapi(listJobsRoute, async (c) => c.json(await listJobs(c.var.db, c.req.valid("query")), 200))
  .openapi(getJob, async (c) => {
    const { id } = c.req.valid("param");
    const job = await findJob(c.var.db, id);
    if (!job) throw notFound(id);
    return c.json(job, 200);
  })
  .openapi(deleteJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await deleteJob(c.var.db, id))) throw notFound(id);
    return c.body(null, 204);
  })
  .openapi(retryJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    const { target_hostname } = c.req.valid("json");
    const job = await retryJob(c.var.db, {
      originalId: id,
      newId: crypto.randomUUID(),
      target: target_hostname ?? "_any",
      now: new Date().toISOString(),
    });
    if (!job) throw notFound(id);
    c.header("Location", `/job/${job.job_id}`);
    return c.json(job, 201);
  });
