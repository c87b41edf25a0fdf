import type { MiddlewareHandler } from "hono";
import { type AppEnv, setResponseHeader } from "../app";
import { ApiError } from "./errors";

export const BOOKMARK_HEADER = "x-d1-bookmark";
const BOOKMARK = /^[0-9A-Za-z-]{1,256}$/;

/**
 * Read-your-writes across replicas with the D1 Sessions API: writes run in a `first-primary`
 * session; reads continue from the client's bookmark when it sends one (so they see at least
 * what that client last wrote), else from any replica. The response carries the new bookmark.
 */
export const d1Session: MiddlewareHandler<AppEnv> = async (c, next) => {
  const read = c.req.method === "GET" || c.req.method === "HEAD";
  const bookmark = c.req.header(BOOKMARK_HEADER);
  if (bookmark !== undefined && !BOOKMARK.test(bookmark)) {
    throw new ApiError(
      "invalid_header",
      `invalid ${BOOKMARK_HEADER} header`,
      "send back a bookmark this service returned",
    );
  }
  const session = c.env.DB.withSession(
    read ? (bookmark ?? "first-unconstrained") : "first-primary",
  );
  c.set("db", session);
  await next();
  const latest = session.getBookmark() ?? bookmark;
  if (latest) setResponseHeader(c, BOOKMARK_HEADER, latest);
};
