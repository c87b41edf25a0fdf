import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "../app";
import {
  fromHex,
  hashKey,
  hasScope,
  keyPrefix,
  parseAgentHostnames,
  parseScopes,
  type Scope,
  toHex,
  type VerifiedKey,
} from "../auth/api-key";
import {
  blockedFor,
  clientAddress,
  failedRecently,
  failuresPerMinute,
  recordFailure,
} from "../auth/failed-auth";
import { findApiKeyByPrefix, touchApiKey } from "../db/api-keys";
import { ApiError } from "./errors";

const PUBLIC_PATHS = new Set(["/health", "/openapi.json", "/docs", "/docs/"]);
const MAX_CACHE_SECONDS = 60;
const TOUCH_INTERVAL_MS = 60_000;

type CacheEntry = { key: VerifiedKey; hash: Uint8Array; expiresAt: number; until: number };
const verified = new Map<string, CacheEntry>();

/** RFC 6750 §2.1: `Bearer` and one b64token. */
const BEARER = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i;

function malformed(details: string) {
  return new ApiError("invalid_authorization", "malformed credentials", details, {
    "WWW-Authenticate": 'Bearer realm="jobs", error="invalid_request"',
  });
}

/** The key the request presents; 400 for a malformed Authorization header or two keys at once. */
function presentedKey(c: Context<AppEnv>): string | undefined {
  const authorization = c.req.header("Authorization");
  const apiKey = c.req.header("X-API-Key");
  if (authorization !== undefined && apiKey !== undefined)
    throw malformed("send the key in Authorization or in X-API-Key, not both");
  if (authorization === undefined) return apiKey?.trim();
  const token = BEARER.exec(authorization)?.[1];
  if (!token) throw malformed("the Authorization header must be `Bearer <key>`");
  return token;
}

function cacheSeconds(env: Env): number {
  const seconds = Number(env.KEY_CACHE_SECONDS);
  return Number.isFinite(seconds) ? Math.min(Math.max(seconds, 0), MAX_CACHE_SECONDS) : 30;
}

function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && crypto.subtle.timingSafeEqual(a, b);
}

type Presented = { prefix: string | null; hash: Uint8Array; hex: string };

async function present(key: string): Promise<Presented> {
  const hash = await hashKey(key);
  return { prefix: keyPrefix(key), hash, hex: toHex(hash) };
}

/** The key from this isolate's cache: the key, null when it is refused, undefined when not cached. */
function fromCache(presented: Presented, now: number): VerifiedKey | null | undefined {
  if (!presented.prefix || failedRecently(presented.hex, now)) return null;
  const cached = verified.get(presented.prefix);
  if (cached && cached.until > now && cached.expiresAt > now)
    return timingSafeEqual(presented.hash, cached.hash) ? cached.key : null;
  return undefined;
}

async function lookUp(
  c: Context<AppEnv>,
  prefix: string,
  hash: Uint8Array,
  now: number,
): Promise<VerifiedKey | null> {
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

/**
 * Every path but the public ones needs a valid key, checked before anything else about the
 * request. An address past its failed authentications for the minute gets 429 unless its key is
 * in this isolate's cache, and nothing is looked up for it.
 */
export const authenticate: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (PUBLIC_PATHS.has(c.req.path)) return next();
  c.header("Cache-Control", "no-store");
  const secret = presentedKey(c);
  if (!secret) {
    throw new ApiError("unauthenticated", "API key required", undefined, {
      "WWW-Authenticate": 'Bearer realm="jobs"',
    });
  }
  const now = Date.now();
  const presented = await present(secret);
  const address = clientAddress(c.req.raw.headers);
  let key = fromCache(presented, now);
  if (key === undefined) {
    const wait = blockedFor(address, failuresPerMinute(c.env), now);
    if (wait > 0) {
      throw new ApiError(
        "too_many_failed_authentications",
        "too many failed authentications",
        `from this address; retry after ${wait} s`,
        { "Retry-After": String(wait) },
      );
    }
    key = presented.prefix ? await lookUp(c, presented.prefix, presented.hash, now) : null;
  }
  if (!key) {
    recordFailure(address, presented.hex, now);
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

/** 403 unless the key has the scope (admin has every scope). */
export function assertScope(key: VerifiedKey, scope: Scope): void {
  if (!hasScope(key, scope)) {
    throw new ApiError("insufficient_scope", "Insufficient permissions", `requires ${scope}`, {
      "WWW-Authenticate": `Bearer realm="jobs", error="insufficient_scope", scope="${scope}"`,
    });
  }
}

export function requireScope(scope: Scope): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    assertScope(c.get("apiKey"), scope);
    return next();
  };
}
