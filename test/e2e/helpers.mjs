// What the end-to-end tests share: the running Worker's API as the admin key sees it, and the
// project's command-line scripts run as a user runs them.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

export const BASE = process.env.E2E_URL;
export const ADMIN = process.env.E2E_ADMIN_KEY;

/** A request that must succeed; its JSON body, or null when it has none. */
export async function api(method, path, body, key = ADMIN) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** `node scripts/<name> ...args` with JOBS_URL and JOBS_API_KEY (the admin key unless `env` says otherwise). */
export function runScript(name, args, env = {}) {
  const file = fileURLToPath(new URL(`../../scripts/${name}`, import.meta.url));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [file, ...args],
      { env: { PATH: process.env.PATH, JOBS_URL: BASE, JOBS_API_KEY: ADMIN, ...env } },
      (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr }),
    );
  });
}
