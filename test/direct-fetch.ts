import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import app from "../src/index";
import { buildRequest, type CallOptions } from "./helpers";

/**
 * call(), but straight into the Worker's fetch handler with the test bindings (or another
 * database): through exports.default.fetch each request costs more than the one before it in
 * the same file, which the thousands of requests of the reliability tests cannot afford.
 */
export async function direct(
  method: string,
  path: string,
  options: CallOptions & { db?: D1Database } = {},
): Promise<Response> {
  const request = await buildRequest(method, path, options);
  const ctx = createExecutionContext();
  const response = await app.fetch(request, options.db ? { ...env, DB: options.db } : env, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}
