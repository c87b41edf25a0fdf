import { createRoute } from "@hono/zod-openapi";
import { createRouter } from "../app";
import { generateApiKey, hashKey, toHex } from "../auth/api-key";
import {
  findApiKeyById,
  insertApiKey,
  listApiKeys,
  revokeApiKey,
  rotateApiKey,
  toApiKey,
} from "../db/api-keys";
import { ApiError } from "../middleware/errors";
import { errorResponses } from "../schemas/error";
import {
  ApiKeySchema,
  CreatedKeySchema,
  CreateKeyBodySchema,
  DEFAULT_GRACE_SECONDS,
  KeyIdParamsSchema,
  KeyListSchema,
  ListKeysQuerySchema,
  RotateKeyBodySchema,
} from "../schemas/key";
import { anyKey, requires } from "./security";

const DAY_MS = 86_400_000;

const created = {
  description:
    "The new key. `key` is the secret: it is shown in this response only and cannot be read again.",
  content: { "application/json": { schema: CreatedKeySchema } },
};

function expiry(now: number, days: number | undefined): string | null {
  return days === undefined ? null : new Date(now + days * DAY_MS).toISOString();
}

function notFound(id: string) {
  return new ApiError("key_not_found", `key not found: ${id}`);
}

export const createKey = createRoute({
  method: "post",
  path: "/keys",
  operationId: "createKey",
  tags: ["keys"],
  summary: "Create an API key",
  description:
    "Makes a key with the given scopes. The secret is in the 201 response and nowhere else: only its SHA-256 hash is stored.",
  ...requires("admin"),
  request: {
    body: {
      required: true,
      description: "A name, the scopes and, optionally, a lifetime",
      content: { "application/json": { schema: CreateKeyBodySchema } },
    },
  },
  responses: { 201: created, ...errorResponses(400, 401, 403, 413, 415, 429, 500, 503) },
});

export const listKeys = createRoute({
  method: "get",
  path: "/keys",
  operationId: "listKeys",
  tags: ["keys"],
  summary: "List API keys",
  description:
    "Newest first, revoked and expired keys too, with their state and when each was last used. Never the secrets.",
  ...requires("admin"),
  request: { query: ListKeysQuerySchema },
  responses: {
    200: {
      description: "A page of keys",
      content: { "application/json": { schema: KeyListSchema } },
    },
    ...errorResponses(400, 401, 403, 429, 500, 503),
  },
});

export const getOwnKey = createRoute({
  method: "get",
  path: "/keys/self",
  operationId: "getOwnKey",
  tags: ["keys"],
  summary: "The calling API key",
  description:
    "The key this request is made with, as `GET /keys` lists it: its name, scopes, state, expiry and last use. Never the secret.",
  ...anyKey(),
  responses: {
    200: {
      description: "The calling key",
      content: { "application/json": { schema: ApiKeySchema } },
    },
    ...errorResponses(400, 401, 429, 500, 503),
  },
});

export const revokeKey = createRoute({
  method: "delete",
  path: "/keys/{id}",
  operationId: "revokeKey",
  tags: ["keys"],
  summary: "Revoke an API key",
  description:
    "The key is refused from now on (after at most `KEY_CACHE_SECONDS` on instances that have it cached). Revoking a revoked key changes nothing and answers 204 again.",
  ...requires("admin"),
  request: { params: KeyIdParamsSchema },
  responses: {
    204: { description: "Revoked" },
    ...errorResponses(400, 401, 403, 404, 429, 500, 503),
  },
});

export const rotateKey = createRoute({
  method: "post",
  path: "/keys/{id}/rotate",
  operationId: "rotateKey",
  tags: ["keys"],
  summary: "Rotate an API key",
  description:
    "Makes a new key with the same name, scopes, hostname patterns and lifetime (unless `expires_in_days` gives it another), which owns the agents the old key owned, and lets the old one expire after `grace_period_seconds` (never later than it already would), in one transaction. A key is rotated at most once; a revoked or expired key cannot be rotated (409).",
  ...requires("admin"),
  request: {
    params: KeyIdParamsSchema,
    body: {
      required: false,
      description: "Optional: the grace period of the old key and a lifetime for the new one",
      content: { "application/json": { schema: RotateKeyBodySchema } },
    },
  },
  responses: { 201: created, ...errorResponses(400, 401, 403, 404, 409, 413, 415, 429, 500, 503) },
});

async function newKeyMaterial() {
  const { key, prefix } = generateApiKey();
  return { key, prefix, keyHash: toHex(await hashKey(key)) };
}

export const keys = createRouter()
  .openapi(createKey, async (c) => {
    const { name, scopes, expires_in_days, agent_hostnames } = c.req.valid("json");
    const now = Date.now();
    const { key, prefix, keyHash } = await newKeyMaterial();
    const stored = await insertApiKey(c.var.db, {
      id: crypto.randomUUID(),
      prefix,
      keyHash,
      name,
      scopes,
      now: new Date(now).toISOString(),
      expiresAt: expiry(now, expires_in_days),
      agentHostnames: agent_hostnames ?? null,
    });
    return c.json({ ...stored, key }, 201);
  })
  .openapi(listKeys, async (c) =>
    c.json(await listApiKeys(c.var.db, c.req.valid("query"), new Date().toISOString()), 200),
  )
  .openapi(getOwnKey, async (c) => {
    // The verified key may come from the isolate's cache: the row says how it stands now.
    const row = await findApiKeyById(c.var.db, c.var.apiKey.id);
    if (!row) throw new ApiError("invalid_api_key", "invalid API key", "the key is unknown");
    return c.json(toApiKey(row, new Date().toISOString()), 200);
  })
  .openapi(revokeKey, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await revokeApiKey(c.var.db, id, new Date().toISOString()))) throw notFound(id);
    return c.body(null, 204);
  })
  .openapi(rotateKey, async (c) => {
    const { id } = c.req.valid("param");
    const { grace_period_seconds = DEFAULT_GRACE_SECONDS, expires_in_days } = c.req.valid("json");
    const now = Date.now();
    const nowIso = new Date(now).toISOString();
    const { key, prefix, keyHash } = await newKeyMaterial();
    const rotated = await rotateApiKey(c.var.db, {
      oldId: id,
      newId: crypto.randomUUID(),
      prefix,
      keyHash,
      now: nowIso,
      expiresAt: expiry(now, expires_in_days),
      oldExpiresAt: new Date(now + grace_period_seconds * 1000).toISOString(),
    });
    if (rotated) return c.json({ ...rotated.created, key }, 201);
    const row = await findApiKeyById(c.var.db, id);
    if (!row) throw notFound(id);
    const old = toApiKey(row, nowIso);
    if (old.replaced_by) {
      throw new ApiError(
        "key_not_active",
        "key already rotated",
        `it was rotated to ${old.replaced_by}`,
      );
    }
    throw new ApiError(
      "key_not_active",
      `key is ${old.state}`,
      "only an active key can be rotated",
    );
  });
