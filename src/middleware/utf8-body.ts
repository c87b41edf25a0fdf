import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "../app";
import { ApiError } from "./errors";

const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json\s*(;|$)/i;

/**
 * A JSON body must be UTF-8: the platform's decoder would otherwise swap bad bytes for U+FFFD
 * and the job would not store what the client sent. The body stays cached for the validator.
 *
 * A body sent without a Content-Type is read here too: the OpenAPI router's media-type check
 * would otherwise clone the request and read the clone to learn whether there is a body (about a
 * tenth of a bodiless `POST /job/{id}/retry`'s CPU); a body already read is asked of the cache.
 */
export const utf8Body: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.req.raw.body) {
    const type = c.req.header("Content-Type");
    if (type === undefined) await c.req.arrayBuffer();
    else if (JSON_MEDIA_TYPE.test(type)) {
      const bytes = await c.req.arrayBuffer();
      try {
        new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
      } catch {
        throw new ApiError("invalid_body", "malformed request body", "the body is not valid UTF-8");
      }
    }
  }
  return next();
};

/**
 * The JSON body as sent, once the route's schema accepted it: what is stored comes from here, since
 * Zod's object parsing makes a `__proto__` key the parsed object's prototype (and so drops it).
 */
export async function sentBody(c: Context<AppEnv>): Promise<Record<string, unknown>> {
  const body: unknown = await c.req.json().catch(() => ({}));
  return typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
}
