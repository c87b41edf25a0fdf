import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Handler } from "hono";
import type { AppEnv } from "./app";
import { BOOKMARK_HEADER } from "./middleware/session";

type Document = ReturnType<OpenAPIHono<AppEnv>["getOpenAPI31Document"]>;
type Config = Parameters<OpenAPIHono<AppEnv>["getOpenAPI31Document"]>[0];

const CONFIG: Config = {
  openapi: "3.1.0",
  info: {
    title: "Job API",
    version: "1.0.0",
    description:
      "Submit jobs for agents, watch them, and retry them. Every error has the shape `{type, error, details?, code}`: branch on `type` (an enum), show `error` to people. Every write takes the next store-wide `revision`.",
    // openapi3-ts types the 3.0 license object, without 3.1's SPDX `identifier`.
    license: { name: "MIT", ...{ identifier: "MIT" } },
  },
  servers: [{ url: "/", description: "The deployment that serves this document" }],
  tags: [
    { name: "jobs", description: "Submit, list, inspect, delete and retry jobs" },
    {
      name: "agents",
      description: "Agents register, claim jobs under a lease, and report what happened",
    },
    { name: "keys", description: "Create, list, revoke and rotate API keys (scope admin)" },
    {
      name: "webhooks",
      description: "Be told when jobs end: signed POSTs through a queue (scope admin)",
    },
    { name: "service", description: "Health and documentation" },
  ],
};

const string = { type: "string" as const };

/** Headers every operation takes and every answer carries. */
const COMMON_HEADERS = [
  {
    name: "X-Request-Id",
    component: "RequestId",
    request:
      "Your id for this request (1–255 printable characters), echoed back and logged; without it the service makes one",
    response: "The request's id: yours if you sent a sane one, else a new one",
  },
  {
    name: BOOKMARK_HEADER,
    component: "Bookmark",
    request:
      "A bookmark from an earlier answer: this read then sees at least what that answer saw (D1 Sessions)",
    response: "The database position this answer saw: send it back to read your own writes",
  },
] as const;

export function registerDocumentComponents(app: OpenAPIHono<AppEnv>) {
  for (const header of COMMON_HEADERS) {
    app.openAPIRegistry.registerComponent("parameters", header.component, {
      name: header.name,
      in: "header",
      required: false,
      description: header.request,
      schema: string,
    });
    app.openAPIRegistry.registerComponent("headers", header.component, {
      description: header.response,
      schema: string,
    });
  }
}

type Operation = {
  description?: string;
  parameters?: unknown[];
  responses?: Record<string, { headers?: Record<string, unknown> }>;
  "x-required-scopes"?: string[];
};

/** What the routes cannot say one by one: the common headers, and each operation's scope in words. */
function finish(document: Document): Document {
  for (const item of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(item as Record<string, Operation>)) {
      operation.parameters = [
        ...(operation.parameters ?? []),
        ...COMMON_HEADERS.map((h) => ({ $ref: `#/components/parameters/${h.component}` })),
      ];
      for (const response of Object.values(operation.responses ?? {})) {
        response.headers = {
          ...response.headers,
          ...Object.fromEntries(
            COMMON_HEADERS.map((h) => [h.name, { $ref: `#/components/headers/${h.component}` }]),
          ),
        };
      }
      const scopes = operation["x-required-scopes"];
      if (scopes) {
        const needs = scopes.map((scope) => `\`${scope}\``).join(" and ");
        const requirement =
          scopes.length === 0
            ? "Any valid key may call it, whatever its scopes."
            : `Requires the scope ${needs} (or \`admin\`).`;
        operation.description = `${operation.description ?? ""}\n\n${requirement}`;
      }
    }
  }
  return document;
}

/** `/openapi.json`, built once per isolate: the routes do not change while it runs. */
export function serveDocument(app: OpenAPIHono<AppEnv>): Handler<AppEnv> {
  let document: Document | undefined;
  return (c) => {
    document ??= finish(app.getOpenAPI31Document(CONFIG));
    return c.json(document);
  };
}
