import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "../app";
import { findApiKeyByPrefix, touchApiKey } from "../db/api-keys";
import { ApiError } from "../errors";
import {
  fromHex,
  hashKey,
  hasScope,
  keyPrefix,
  parseAgentHostnames,
  parseScopes,
  type Scope,
  type VerifiedKey,
} from "./api-key";

const PUBLIC_PATHS = new Set(["/health", "/openapi.json", "/docs", "/docs/"]);
const MAX_CACHE_SECONDS = 60;
const TOUCH_INTERVAL_MS = 60_000;

type CacheEntry = { key: VerifiedKey; hash: Uint8Array; expiresAt: number; until: number };
const verified = new Map<string, CacheEntry>();

function presentedKey(c: Context<AppEnv>): string | undefined {
  const authorization = c.req.header("Authorization");
  if (authorization) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match?.[1] ?? "";
  }
  return c.req.header("X-API-Key")?.trim();
}

function cacheSeconds(env: Env): number {
  const seconds = Number(env.KEY_CACHE_SECONDS);
  return Number.isFinite(seconds) ? Math.min(Math.max(seconds, 0), MAX_CACHE_SECONDS) : 30;
}

function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && crypto.subtle.timingSafeEqual(a, b);
}

async function verify(c: Context<AppEnv>, presented: string): Promise<VerifiedKey | null> {
  const prefix = keyPrefix(presented);
  if (!prefix) return null;
  const hash = await hashKey(presented);
  const now = Date.now();
  const cached = verified.get(prefix);
  if (cached && cached.until > now && cached.expiresAt > now) {
    return timingSafeEqual(hash, cached.hash) ? cached.key : null;
  }
  verified.delete(prefix);
  const row = await findApiKeyByPrefix(c.env.DB.withSession("first-unconstrained"), prefix);
  const storedHash = row ? fromHex(row.key_hash) : undefined;
  if (!row || !storedHash || !timingSafeEqual(hash, storedHash)) return null;
  const expiresAt = row.expires_at ? Date.parse(row.expires_at) : Number.POSITIVE_INFINITY;
  if (row.revoked_at || expiresAt <= now) return null;
  const key: VerifiedKey = {
    id: row.id,
    prefix: row.prefix,
    name: row.name,
    scopes: parseScopes(row.scopes),
    lineage: row.lineage_id ?? row.id,
    agentHostnames: parseAgentHostnames(row.agent_hostnames),
  };
  const ttl = cacheSeconds(c.env) * 1000;
  if (ttl > 0) verified.set(prefix, { key, hash: storedHash, expiresAt, until: now + ttl });
  if (!row.last_used_at || now - Date.parse(row.last_used_at) >= TOUCH_INTERVAL_MS) {
    c.executionCtx.waitUntil(
      touchApiKey(c.env.DB, row.id, new Date(now).toISOString()).catch(() => {}),
    );
  }
  return key;
}

/** Every path but the public ones needs a valid key, checked before anything else about the request. */
export const authenticate: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (PUBLIC_PATHS.has(c.req.path)) return next();
  const presented = presentedKey(c);
  if (!presented) {
    throw new ApiError("unauthenticated", "API key required", undefined, {
      "WWW-Authenticate": 'Bearer realm="jobs"',
    });
  }
  const key = await verify(c, presented);
  if (!key) {
    throw new ApiError(
      "invalid_api_key",
      "invalid API key",
      "the key is unknown, revoked or expired",
      {
        "WWW-Authenticate": 'Bearer realm="jobs", error="invalid_token"',
      },
    );
  }
  c.set("apiKey", key);
  return next();
};

export function requireScope(scope: Scope): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (!hasScope(c.get("apiKey"), scope)) {
      throw new ApiError("insufficient_scope", "Insufficient permissions", `requires ${scope}`, {
        "WWW-Authenticate": `Bearer realm="jobs", error="insufficient_scope", scope="${scope}"`,
      });
    }
    return next();
  };
}
