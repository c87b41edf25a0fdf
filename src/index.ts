import { swaggerUI } from "@hono/swagger-ui";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { requestId } from "hono/request-id";
import { type AppEnv, createRouter } from "./app";
import { authenticate } from "./auth/middleware";
import { ApiError, notFoundOrMethodNotAllowed, onError } from "./errors";
import { requestLog } from "./logging";
import { registerDocumentComponents, serveDocument } from "./openapi";
import { rateLimit } from "./rate-limit";
import { scheduled } from "./retention";
import { agents } from "./routes/agents";
import { health } from "./routes/health";
import { jobEvents } from "./routes/job-events";
import { jobs } from "./routes/jobs";
import { keys } from "./routes/keys";
import { registerSecuritySchemes } from "./routes/security";
import { webhooks } from "./routes/webhooks";
import { BOOKMARK_HEADER, d1Session } from "./session";
import { utf8Body } from "./utf8-body";
import { handleWebhookBatch, type WebhookMessage } from "./webhooks";

const MAX_BODY_BYTES = 1024 * 1024;

const browserCors = cors({
  origin: (origin, c) => (c.env.CORS_ORIGINS.split(",").includes(origin) ? origin : null),
  allowHeaders: [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    BOOKMARK_HEADER,
    "X-Request-Id",
    "Last-Event-ID",
  ],
  exposeHeaders: [
    "Location",
    "ETag",
    "Retry-After",
    "Idempotent-Replayed",
    BOOKMARK_HEADER,
    "X-Request-Id",
  ],
  maxAge: 600,
});

const app = createRouter();

app.use(requestId());
app.use(requestLog);
/**
 * CORS headers for browsers, the requests that carry an Origin. Hono's cors middleware writes its
 * headers before the handler runs, which builds and then merges a second response on every
 * request; the others need only `Vary: Origin`, so a cache never hands them to a browser.
 */
app.use(async (c, next) => {
  if (c.req.header("Origin") !== undefined) return browserCors(c, next);
  // Before the handler: Hono merges it into the response it builds (after, it would rebuild it).
  c.header("Vary", "Origin");
  return next();
});
app.use(authenticate);
app.use(rateLimit);
app.use(d1Session);
app.use(
  bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: () => {
      throw new ApiError(413, "request body too large", `the limit is ${MAX_BODY_BYTES} bytes`);
    },
  }),
);
app.use(utf8Body);

registerSecuritySchemes(app);
registerDocumentComponents(app);
const routes = app
  .route("/", health)
  .route("/", jobs)
  .route("/", jobEvents)
  .route("/", agents)
  .route("/", keys)
  .route("/", webhooks);

app.get("/openapi.json", serveDocument(app));

/** Swagger UI keeps the key for the tab only, unless DOCS_PERSIST_AUTHORIZATION is "true". */
const docs = [false, true].map((persistAuthorization) =>
  swaggerUI<AppEnv>({
    url: "/openapi.json",
    baseUrl: "/vendor",
    title: "Job API",
    persistAuthorization,
  }),
);
app.get("/docs", (c, next) => {
  const persist: string = c.env.DOCS_PERSIST_AUTHORIZATION;
  const page = docs[persist === "true" ? 1 : 0];
  return page ? page(c, next) : next();
});

app.onError(onError);
app.notFound(notFoundOrMethodNotAllowed(app.routes));

export type AppType = typeof routes;
export { ClaimWaiters } from "./wakeups";
export { app };
export default {
  fetch: app.fetch,
  scheduled,
  queue: (batch, env, _ctx) => handleWebhookBatch(batch as MessageBatch<WebhookMessage>, env),
} satisfies ExportedHandler<Env>;
