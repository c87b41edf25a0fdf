#!/usr/bin/env node
// npm run retention [-- --remote]: run the Worker's scheduled handler (src/background/retention.ts) once,
// as the cron does. It starts its own `wrangler dev --test-scheduled` on a free loopback port,
// asks it for one scheduled event (`/__scheduled`, which wrangler serves only in that mode, never
// in a deployed Worker), prints the handler's JSON line and stops. Locally it uses the state of
// `npm run dev` (JOBS_STATE_DIR, default .wrangler/state); with --remote the Worker still runs on
// this machine, but its DB binding is the deployed database (`remote = true`; needs wrangler login).
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { freePort } from "./free-port.mjs";
import { root, wrangler, wranglerEnv } from "./wrangler-env.mjs";

const env = wranglerEnv();
const USAGE = "usage: npm run retention [-- --local | --remote]";

function fail(message, code = 1) {
  console.error(`retention: ${message}`);
  process.exit(code);
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        local: { type: "boolean" },
        remote: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    return fail(`${error.message}\n${USAGE}`, 2);
  }
})();
if (values.help) {
  console.error(USAGE);
  process.exit(0);
}
if (values.local && values.remote) fail("choose one of --local and --remote", 2);

/** wrangler.toml with the DB binding marked remote, so a local Worker acts on the deployed database. */
function remoteConfig() {
  const source = readFileSync(path.join(root, "wrangler.toml"), "utf8");
  const marked = source.replace(/(binding = "DB"\n)/, "$1remote = true\n");
  if (marked === source) fail('wrangler.toml has no binding = "DB" to mark remote');
  const dir = path.join(root, ".wrangler");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "retention-remote.toml");
  // Paths in a wrangler config are relative to the config file.
  writeFileSync(
    file,
    marked
      .replace(/^main = "(.*)"$/m, 'main = "../$1"')
      .replace(/^directory = "(.*)"$/m, 'directory = "../$1"')
      .replace(/^migrations_dir = "(.*)"$/m, 'migrations_dir = "../$1"'),
  );
  return ["--config", file];
}

const persist =
  !values.remote && process.env.JOBS_STATE_DIR ? ["--persist-to", process.env.JOBS_STATE_DIR] : [];
if (!values.remote) {
  const migrated = spawnSync(wrangler, ["d1", "migrations", "apply", "DB", "--local", ...persist], {
    cwd: root,
    env,
    encoding: "utf8",
  });
  if (migrated.status !== 0) fail(`migrations failed:\n${migrated.stdout}${migrated.stderr}`);
}

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const config = values.remote ? remoteConfig() : [];
const args = [
  "dev",
  ...config,
  "--ip",
  "127.0.0.1",
  "--port",
  String(port),
  "--inspector-port",
  String(await freePort()),
  "--test-scheduled",
];
const child = spawn(wrangler, [...args, ...persist], {
  cwd: root,
  env,
  detached: true,
  stdio: ["ignore", "pipe", "pipe"],
});
let output = "";
child.stdout.on("data", (chunk) => {
  output += chunk;
});
child.stderr.on("data", (chunk) => {
  output += chunk;
});
const exited = new Promise((resolve) => child.once("exit", resolve));
async function stop() {
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {}
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await stop();
    process.exit(130);
  });
}

const retentionLine = () =>
  output.split("\n").find((line) => line.startsWith("{") && line.includes('"event":"retention"'));

try {
  let up = false;
  for (let i = 0; i < 120 && child.exitCode === null && !up; i++) {
    up = await fetch(`${base}/health`).then(
      (response) => response.status < 500,
      () => false,
    );
    if (!up) await new Promise((resolve) => setTimeout(resolve, 500));
  }
  if (!up) throw new Error(`wrangler dev did not start:\n${output.slice(-3000)}`);
  const cron = encodeURIComponent("*/5 * * * *");
  const response = await fetch(`${base}/__scheduled?cron=${cron}`);
  if (!response.ok)
    throw new Error(`the scheduled handler failed (${response.status}):\n${output.slice(-3000)}`);
  for (let i = 0; i < 50 && !retentionLine(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const line = retentionLine();
  if (!line) throw new Error(`the handler wrote no retention line:\n${output.slice(-3000)}`);
  console.log(line);
} catch (error) {
  await stop();
  fail(error.message);
}
await stop();
