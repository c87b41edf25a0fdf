#!/usr/bin/env node
// npm run dev: migrate the local D1 database, then `wrangler dev` on 127.0.0.1. PORT (default
// 8787) picks the port and the local CORS_ORIGINS follow it; JOBS_STATE_DIR (default
// .wrangler/state) picks the local state folder. Extra arguments go to `wrangler dev`.
import { spawn, spawnSync } from "node:child_process";
import { portOr } from "./free-port.mjs";
import { root, wrangler, wranglerEnv } from "./wrangler-env.mjs";

const env = wranglerEnv();

const args = process.argv.slice(2);
const portArg = args.findIndex((arg) => arg === "--port" || arg.startsWith("--port="));
let port = process.env.PORT?.trim() || "8787";
if (portArg !== -1) {
  const inline = args[portArg].split("=")[1];
  port = inline ?? args[portArg + 1] ?? "";
  args.splice(portArg, inline === undefined ? 2 : 1);
}
if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
  console.error(`dev: not a port: ${port}`);
  process.exit(2);
}
const persist = process.env.JOBS_STATE_DIR ? ["--persist-to", process.env.JOBS_STATE_DIR] : [];

const migrated = spawnSync(wrangler, ["d1", "migrations", "apply", "DB", "--local", ...persist], {
  cwd: root,
  env,
  stdio: "inherit",
});
if (migrated.status !== 0) process.exit(migrated.status ?? 1);

const origins = `http://127.0.0.1:${port},http://localhost:${port}`;
const child = spawn(
  wrangler,
  [
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    port,
    "--var",
    `CORS_ORIGINS:${origins}`,
    ...persist,
    ...(args.some((arg) => arg.startsWith("--inspector-port"))
      ? []
      : ["--inspector-port", String(await portOr(9229))]),
    ...args,
  ],
  { cwd: root, env, stdio: "inherit" },
);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
