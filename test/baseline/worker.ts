import { findJob, retryJob } from "../../src/db/jobs";
import { counted } from "./counted";

const ROUTE = /^\/job\/([0-9a-f-]{36})(\/retry)?$/;

/** GET /job/{id} and POST /job/{id}/retry: the service's own data functions, nothing around them. */
export default counted(async (request, env) => {
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
    });
    return result.kind === "written"
      ? Response.json(result.value, { status: 201 })
      : new Response(null, { status: 404 });
  }
  return new Response(null, { status: 405 });
});
