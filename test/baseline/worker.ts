import { findJob, retryJob } from "../../src/db/jobs";
import { counted } from "./counted";

const ROUTE = /^\/job\/([0-9a-f-]{36})(\/retry)?$/;

async function handle(request: Request, env: Env): Promise<Response> {
  const match = ROUTE.exec(new URL(request.url).pathname);
  const id = match?.[1];
  if (!id) return new Response(null, { status: 404 });
  if (match[2] === undefined && request.method === "GET") {
    const job = await findJob(env.DB, id);
    return job ? Response.json(job) : new Response(null, { status: 404 });
  }
  if (match[2] !== undefined && request.method === "POST") {
    const now = new Date().toISOString();
    const result = await retryJob(env.DB, {
      originalId: id,
      newId: crypto.randomUUID(),
      target: "_any",
      now,
      change: null,
      retryPolicy: undefined,
      resetAttempts: false,
      notBefore: null,
    });
    return result.kind === "written"
      ? Response.json(result.value, { status: 201 })
      : new Response(null, { status: 404 });
  }
  return new Response(null, { status: 405 });
}

/**
 * GET /job/{id} and POST /job/{id}/retry: the service's own data functions, nothing around them
 * but the one request log line a hand-written Worker in production would write too (wrangler dev
 * charges about 2 ms of CPU per line). `--var BASELINE_LOG:off` leaves the line out.
 */
export default counted(async (request, env) => {
  const started = Date.now();
  const response = await handle(request, env);
  if ((env as Env & { BASELINE_LOG?: string }).BASELINE_LOG !== "off") {
    const { pathname } = new URL(request.url);
    console.log(
      JSON.stringify({
        level: "info",
        request_id: crypto.randomUUID(),
        method: request.method,
        path: pathname,
        status: response.status,
        duration_ms: Date.now() - started,
        job_id: ROUTE.exec(pathname)?.[1],
      }),
    );
  }
  return response;
});
