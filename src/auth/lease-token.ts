import { base64url, hashKey, toHex } from "./api-key";

/** 192 random bits: a delivery's proof, shown to its agent once in the claim's answer. */
const TOKEN_BYTES = 24;

export function newLeaseToken(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(TOKEN_BYTES)));
}

/** What is stored: the token's SHA-256 in hex, so the database never holds a usable token. */
export async function hashLeaseToken(token: string): Promise<string> {
  return toHex(await hashKey(token));
}
