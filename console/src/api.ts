import type { z } from "@hono/zod-openapi";
import type { AgentListSchema } from "../../src/schemas/agent";
import type { ErrorSchema } from "../../src/schemas/error";
import type {
  BulkRetryResultSchema,
  JobAcceptedSchema,
  JobListSchema,
  JobSchema,
} from "../../src/schemas/job";
import type { ApiKeySchema, CreatedKeySchema, KeyListSchema } from "../../src/schemas/key";

export type Job = z.infer<typeof JobSchema>;
export type JobList = z.infer<typeof JobListSchema>;
export type JobAccepted = z.infer<typeof JobAcceptedSchema>;
export type BulkRetryResult = z.infer<typeof BulkRetryResultSchema>;
export type AgentList = z.infer<typeof AgentListSchema>;
export type ApiKey = z.infer<typeof ApiKeySchema>;
export type CreatedKey = z.infer<typeof CreatedKeySchema>;
export type KeyList = z.infer<typeof KeyListSchema>;
type ErrorBody = z.infer<typeof ErrorSchema>;

const KEY = "jobs-console-key";

export const session = {
  key: () => sessionStorage.getItem(KEY),
  signIn: (key: string) => sessionStorage.setItem(KEY, key),
  signOut: () => sessionStorage.removeItem(KEY),
};

let signedOutBecause = "";

/**
 * Forgets the key and returns to the sign-in form, which shows `reason`. The first reason stands:
 * calls still on their way when the key is forgotten are refused for want of a key, which says
 * nothing about why the console signed out.
 */
export function signOut(reason: string) {
  if (session.key() === null) return;
  session.signOut();
  signedOutBecause = reason;
  window.dispatchEvent(new CustomEvent("signed-out", { detail: reason }));
}

/** Why the console last signed out: for a listener that came after the event. */
export const signOutReason = () => signedOutBecause;

/** An API error in plain words: the body's `error` and `details`, and when to retry after a 429. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function describe(response: Response): Promise<string> {
  let body: Partial<ErrorBody> = {};
  try {
    body = (await response.json()) as Partial<ErrorBody>;
  } catch {}
  const words = body.error
    ? `${body.error}${body.details ? `: ${body.details}` : ""}`
    : `${response.status} ${response.statusText}`;
  const wait = response.headers.get("Retry-After");
  if (response.status === 429 || response.status === 503)
    return `${words}. Try again ${wait ? `in ${wait} s` : "later"}.`;
  return words;
}

/** A refused call in plain words; a 401 also signs out, and the app returns to sign-in. */
export async function refused(response: Response): Promise<ApiError> {
  const message = await describe(response);
  if (response.status === 401) signOut(message);
  return new ApiError(response.status, message);
}

type Call = { method?: string; body?: unknown; headers?: Record<string, string> };
type Answer<T> = { status: number; body: T; etag: string | null };

/**
 * Calls the API with the signed-in key; a 401 signs out and is thrown for the page to show.
 * A 304 (the caller sent `If-None-Match`) is an answer with a null body: nothing changed.
 */
export async function call<T>(path: string, { method = "GET", body, headers }: Call = {}) {
  const response = await fetch(path, {
    method,
    // The page asks for its own revalidation (If-None-Match); the browser's cache stays out of it.
    cache: "no-store",
    headers: {
      Authorization: `Bearer ${session.key() ?? ""}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (response.status === 304)
    return { status: 304, body: null as T, etag: response.headers.get("ETag") } satisfies Answer<T>;
  if (!response.ok) throw await refused(response);
  const text = await response.text();
  return {
    status: response.status,
    body: (text ? JSON.parse(text) : null) as T,
    etag: response.headers.get("ETag"),
  } satisfies Answer<T>;
}

export const message = (error: unknown) => (error instanceof Error ? error.message : String(error));
