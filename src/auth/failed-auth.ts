/**
 * Failed authentications, remembered in this isolate: each unknown key costs a D1 read on the
 * primary, so a failed key is not looked up again for a while, and an address that keeps failing
 * is refused without a lookup until its minute is over.
 */
const WINDOW_MS = 60_000;
const FAILED_KEY_MS = 60_000;
const MAX_ENTRIES = 10_000;
export const DEFAULT_FAILURES_PER_MINUTE = 60;

type Window = { start: number; failures: number };
const byAddress = new Map<string, Window>();
const failedKeys = new Map<string, number>();

function remember<V>(map: Map<string, V>, key: string, value: V) {
  map.delete(key);
  if (map.size >= MAX_ENTRIES) {
    const oldest = map.keys().next().value;
    if (oldest !== undefined) map.delete(oldest);
  }
  map.set(key, value);
}

/** The client's address as Cloudflare saw it; one shared bucket when it is missing (local dev). */
export function clientAddress(headers: Headers): string {
  return headers.get("CF-Connecting-IP") ?? "unknown";
}

/** `AUTH_FAILURES_PER_MINUTE`: failed authentications an address may make a minute; 0: no limit. */
export function failuresPerMinute(env: Env): number {
  const limit = Number(env.AUTH_FAILURES_PER_MINUTE);
  return Number.isInteger(limit) && limit >= 0 ? limit : DEFAULT_FAILURES_PER_MINUTE;
}

/** Seconds until the address may try again, or 0 when it has failures left this minute. */
export function blockedFor(address: string, limit: number, now: number): number {
  const window = byAddress.get(address);
  if (limit === 0 || !window || now - window.start >= WINDOW_MS || window.failures < limit)
    return 0;
  return Math.max(1, Math.ceil((window.start + WINDOW_MS - now) / 1000));
}

export function recordFailure(address: string, keyHash: string, now: number): void {
  const window = byAddress.get(address);
  if (window && now - window.start < WINDOW_MS) window.failures++;
  else remember(byAddress, address, { start: now, failures: 1 });
  remember(failedKeys, keyHash, now + FAILED_KEY_MS);
}

/** Whether this key (by its hash) failed recently: then it fails again without a lookup. */
export function failedRecently(keyHash: string, now: number): boolean {
  const until = failedKeys.get(keyHash);
  if (until === undefined) return false;
  if (until > now) return true;
  failedKeys.delete(keyHash);
  return false;
}
