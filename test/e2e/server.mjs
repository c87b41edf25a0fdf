// A real `wrangler dev` for the end-to-end tests: its own port and state folder, a migrated local
// D1 database, and a first admin key written the way `npm run apikey` writes one.
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../scripts/free-port.mjs";
import { root, wrangler, wranglerEnv } from "../../scripts/wrangler-env.mjs";

const env = wranglerEnv();

function wranglerSync(args) {
  return execFileSync(wrangler, args, { cwd: root, env, encoding: "utf8", stdio: "pipe" });
}

function newKey() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const prefix = `jobs_${Array.from(randomBytes(12), (b) => alphabet[b % alphabet.length]).join("")}`;
  const key = `${prefix}_${randomBytes(32).toString("base64url")}`;
  return { key, prefix, hash: createHash("sha256").update(key).digest("hex") };
}

/** Starts the Worker; `stop()` ends its whole process group and removes a state folder it made. */
export async function startServer({ port = 8793, state } = {}) {
  const persistTo = state ?? mkdtempSync(join(tmpdir(), "jobs-e2e-"));
  const removeState = () => {
    if (!state) rmSync(persistTo, { recursive: true, force: true });
  };
  wranglerSync(["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistTo]);
  const { key, prefix, hash } = newKey();
  wranglerSync([
    "d1",
    "execute",
    "DB",
    "--local",
    "--persist-to",
    persistTo,
    "--command",
    `INSERT INTO api_keys (id, prefix, key_hash, name, scopes, created_at) VALUES ('${randomUUID()}', '${prefix}', '${hash}', 'e2e-admin', 'admin', '${new Date().toISOString()}')`,
  ]);
  const logFile = join(persistTo, "wrangler-dev.log");
  const log = openSync(logFile, "w");
  const child = spawn(
    wrangler,
    [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(await freePort()),
      "--persist-to",
      persistTo,
    ],
    { cwd: root, env, detached: true, stdio: ["ignore", log, log] },
  );
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    removeState();
  };
  for (let i = 0; i < 120; i++) {
    if (child.exitCode !== null) break;
    try {
      if ((await fetch(`${url}/health`)).ok)
        return { url, adminKey: key, stop, logFile, stateDir: persistTo };
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const tail = readFileSync(logFile, "utf8").slice(-3000);
  await stop();
  throw new Error(`wrangler dev did not become healthy on ${url}:\n${tail}`);
}
