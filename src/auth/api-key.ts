export const SCOPES = ["job:read", "job:write", "agent:read", "agent:write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export type VerifiedKey = {
  id: string;
  prefix: string;
  name: string;
  scopes: Scope[];
  /** The id of the first key of its rotation chain: what the key owns, its successors own. */
  lineage: string;
  /** Hostname patterns the key may act as an agent for; null: any hostname. */
  agentHostnames: string[] | null;
};

const KEY_PATTERN = /^(jobs_[a-z0-9]{12})_[A-Za-z0-9_-]{43}$/;

/** The public part of a well-formed key (the row's lookup value), or null. */
export function keyPrefix(key: string): string | null {
  return KEY_PATTERN.exec(key)?.[1] ?? null;
}

/** Anything shaped like a key, even cut short or run into other text; the prefix survives. */
const KEY_SHAPED = /(jobs_[a-z0-9]{12})_[A-Za-z0-9_-]{8,}/g;

/** The text with the secret part of every key-shaped string replaced: for logs. */
export function redactKeys(text: string): string {
  return text.replace(KEY_SHAPED, "$1_[redacted]");
}

const PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

export function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

/** A new key `jobs_<12 of a-z0-9>_<43 base64url>`, the format scripts/apikey.mjs writes too. */
export function generateApiKey(): { key: string; prefix: string } {
  const random = crypto.getRandomValues(new Uint8Array(12));
  const prefix = `jobs_${Array.from(random, (b) => PREFIX_ALPHABET[b % PREFIX_ALPHABET.length]).join("")}`;
  return { key: `${prefix}_${base64url(crypto.getRandomValues(new Uint8Array(32)))}`, prefix };
}

export async function hashKey(key: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++)
    bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

export function hasScope(key: VerifiedKey, scope: Scope): boolean {
  return key.scopes.includes("admin") || key.scopes.includes(scope);
}

/** The stored JSON array of hostname patterns, or null for a key that may act as any hostname. */
export function parseAgentHostnames(value: string | null): string[] | null {
  return value === null ? null : (JSON.parse(value) as string[]);
}

export function parseScopes(value: string): Scope[] {
  return value.split(",").filter((s): s is Scope => (SCOPES as readonly string[]).includes(s));
}
