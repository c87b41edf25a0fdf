import type { Context } from "hono";
import type { AppEnv } from "../app";
import { toHex } from "../auth/api-key";
import type { IdempotencyUse, StoredResponse } from "../db/idempotency";
import { ApiError } from "./errors";

export const IDEMPOTENCY_HEADER = "Idempotency-Key";
const PRINTABLE = /^[\x20-\x7e]{1,255}$/;

/** The key, bare or as a structured-field string (`"…"` with `\"` and `\\` escapes); null if malformed. */
export function parseIdempotencyKey(header: string): string | null {
  let value = header.trim();
  if (value.startsWith('"')) {
    const match = /^"((?:[^"\\]|\\["\\])*)"$/.exec(value);
    if (!match?.[1]) return null;
    value = match[1].replace(/\\(["\\])/g, "$1");
  }
  return PRINTABLE.test(value) ? value : null;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * The Idempotency-Key use of this request, or undefined when it sent none. A key is scoped to the
 * API key's rotation lineage (a rotated key repeating a request repeats it) and the route; the
 * fingerprint covers the request's target and its body as the handler resolved it, so bodies
 * that mean the same (`{}`, `{"target_hostname": null}`) are the same request.
 */
export async function idempotencyOf(
  c: Context<AppEnv>,
  route: string,
  target: string,
  body: unknown,
): Promise<IdempotencyUse | undefined> {
  const header = c.req.header(IDEMPOTENCY_HEADER);
  if (header === undefined) return undefined;
  const key = parseIdempotencyKey(header);
  if (key === null) {
    throw new ApiError(
      "invalid_header",
      `invalid ${IDEMPOTENCY_HEADER} header`,
      "1–255 printable ASCII characters, bare or quoted",
    );
  }
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(`${target}\n${canonicalJson(body)}`),
  );
  const hours = Number(c.env.IDEMPOTENCY_TTL_HOURS);
  const now = Date.now();
  return {
    apiKeyId: c.get("apiKey").lineage,
    route,
    key,
    fingerprint: toHex(new Uint8Array(digest)),
    now: new Date(now).toISOString(),
    expiresAt: new Date(
      now + (Number.isFinite(hours) && hours >= 24 ? hours : 24) * 3_600_000,
    ).toISOString(),
  };
}

/** The stored first response, to replay; 422 when the key was used for a different request. */
export function replayOf<T>(
  use: IdempotencyUse,
  stored: StoredResponse,
): { body: T; headers: Record<string, string> } {
  if (stored.fingerprint !== use.fingerprint) {
    throw new ApiError(
      422,
      `${IDEMPOTENCY_HEADER} already used for a different request`,
      "use a new key for a new request; a key replays only the request it was first sent with",
    );
  }
  const body = JSON.parse(stored.body) as T;
  const headers: Record<string, string> = { "Idempotent-Replayed": "true" };
  const jobId = (body as { job_id?: unknown }).job_id;
  if (stored.status === 201 && typeof jobId === "string") headers.Location = `/job/${jobId}`;
  return { body, headers };
}
