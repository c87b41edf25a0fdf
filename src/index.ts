import { swaggerUI } from "@hono/swagger-ui";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { type AppEnv, createRouter } from "./app";
import { scheduled } from "./background/retention";
import { handleWebhookBatch, type WebhookMessage } from "./background/webhooks";
import { authenticate } from "./middleware/auth";
import { corsHeaders } from "./middleware/cors";
import { ApiError, notFoundOrMethodNotAllowed, onError } from "./middleware/errors";
import { requestLog } from "./middleware/logging";
import { rateLimit } from "./middleware/rate-limit";
import { d1Session } from "./middleware/session";
import { utf8Body } from "./middleware/utf8-body";
import { registerDocumentComponents, serveDocument } from "./openapi";
import { agents } from "./routes/agents";
import { health } from "./routes/health";
import { jobEvents } from "./routes/job-events";
import { jobs } from "./routes/jobs";
import { keys } from "./routes/keys";
import { registerSecuritySchemes } from "./routes/security";
import { webhooks } from "./routes/webhooks";

const MAX_BODY_BYTES = 1024 * 1024;

const app = createRouter();

app.use(requestId());
app.use(requestLog);
app.use(corsHeaders);
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
export { ClaimWaiters } from "./background/wakeups";
export { app };
export default {
  fetch: app.fetch,
  scheduled,
  queue: (batch, env, _ctx) => handleWebhookBatch(batch as MessageBatch<WebhookMessage>, env),
} satisfies ExportedHandler<Env>;
