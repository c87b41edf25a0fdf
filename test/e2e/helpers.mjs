// What the end-to-end tests share: the running Worker's API as the admin key sees it, and the
// project's command-line scripts run as a user runs them.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const BASE = process.env.E2E_URL;
export const ADMIN = process.env.E2E_ADMIN_KEY;

let defaultKey = ADMIN;

/**
 * From now on this test file's api() calls use an admin key of its own: its writes spend that
 * key's budget (120 a minute), not the one every end-to-end file shares with the admin key.
 */
export async function useOwnAdminKey(name) {
  defaultKey = (await api("POST", "/keys", { name, scopes: ["admin"] })).key;
}

/** A request that must succeed (as the admin key, or the file's own); its JSON body, or null. */
export async function api(method, path, body, key = defaultKey) {
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

/** Waits up to `seconds` for `what()` to be true; whether it became true. */
export async function until(what, seconds) {
  for (let i = 0; i < seconds * 20; i++) {
    if (await what()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

/**
 * `node scripts/<name> ...args` left running, as a user starts it (with JOBS_URL and the admin key
 * unless `env` says otherwise); `output()` is what it printed so far, `exited` its exit code,
 * `stop(signal)` ends it and waits for its exit.
 */
export function startScript(name, args, env = {}) {
  const file = fileURLToPath(new URL(`../../scripts/${name}`, import.meta.url));
  const child = spawn(process.execPath, [file, ...args], {
    env: { PATH: process.env.PATH, JOBS_URL: BASE, JOBS_API_KEY: ADMIN, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const printed = { stdout: "", stderr: "" };
  child.stdout.on("data", (chunk) => {
    printed.stdout += chunk;
  });
  child.stderr.on("data", (chunk) => {
    printed.stderr += chunk;
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  return {
    output: () => printed,
    exited,
    stop: async (signal = "SIGKILL") => {
      child.kill(signal);
      return exited;
    },
  };
}

/** The reference agent left running, as an operator starts it, with `key`. */
export function startAgent(args, key) {
  return startScript("agent.mjs", args, { JOBS_API_KEY: key });
}
