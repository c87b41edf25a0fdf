import { countingD1, createCounter } from "../counting-d1";

type Fetch = (request: Request, env: Env, ctx: ExecutionContext) => Response | Promise<Response>;

/** A Worker whose D1 round trips, rows read and rows written are reported in response headers. */
export function counted(fetch: Fetch): ExportedHandler<Env> {
  return {
    async fetch(request, env, ctx) {
      const counter = createCounter();
      const response = await fetch(request, { ...env, DB: countingD1(env.DB, counter) }, ctx);
      const headers = new Headers(response.headers);
      headers.set("x-d1-calls", String(counter.count));
      headers.set("x-d1-rows-read", String(counter.rowsRead));
      headers.set("x-d1-rows-written", String(counter.rowsWritten));
      return new Response(response.body, { status: response.status, headers });
    },
  };
}
