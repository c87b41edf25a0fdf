import { base64url } from "./api-key";

/**
 * Webhook signing secrets, the Standard Webhooks way: `whsec_<base64 of 24 random bytes>`, and
 * `Webhook-Signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`. Stored encrypted
 * (AES-GCM) under the Worker secret WEBHOOK_SECRET_KEY (32 bytes, base64).
 */

const PREFIX = "whsec_";

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function unbase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export function newWebhookSecret(): string {
  return `${PREFIX}${base64(crypto.getRandomValues(new Uint8Array(24)))}`;
}

async function storageKey(env: Env): Promise<CryptoKey> {
  const raw = env.WEBHOOK_SECRET_KEY ? unbase64(env.WEBHOOK_SECRET_KEY) : new Uint8Array();
  if (raw.byteLength !== 32)
    throw new Error("WEBHOOK_SECRET_KEY must be 32 bytes in base64 (wrangler secret put)");
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** Whether the Worker can keep secrets: WEBHOOK_SECRET_KEY is set and well formed. */
export function canKeepSecrets(env: Env): boolean {
  try {
    return Boolean(env.WEBHOOK_SECRET_KEY) && unbase64(env.WEBHOOK_SECRET_KEY).byteLength === 32;
  } catch {
    return false;
  }
}

/** `<base64url iv>.<base64url ciphertext>` */
export async function encryptSecret(env: Env, secret: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv },
    await storageKey(env),
    new TextEncoder().encode(secret),
  );
  return `${base64url(iv)}.${base64url(new Uint8Array(sealed))}`;
}

function fromBase64url(text: string): Uint8Array {
  const padded = text.replaceAll("-", "+").replaceAll("_", "/");
  return unbase64(padded + "=".repeat((4 - (padded.length % 4)) % 4));
}

export async function decryptSecret(env: Env, stored: string): Promise<string> {
  const [iv = "", sealed = ""] = stored.split(".");
  const opened = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: fromBase64url(iv) },
    await storageKey(env),
    fromBase64url(sealed),
  );
  return new TextDecoder().decode(opened);
}

/** The `Webhook-Signature` header for a message. */
export async function signWebhook(
  secret: string,
  id: string,
  timestamp: number,
  body: string,
): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    unbase64(secret.slice(PREFIX.length)),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign(
    "HMAC",
    key,
    new TextEncoder().encode(`${id}.${timestamp}.${body}`),
  );
  return `v1,${base64(new Uint8Array(mac))}`;
}
