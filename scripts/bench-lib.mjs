// What the benchmarks share: wrangler on loopback, the service Worker with its D1 round trips
// counted (test/baseline/service.ts), servers in their own process groups, and what they cost.
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { openSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { experimental_readRawConfig } from "wrangler";
import { root, wrangler, wranglerEnv } from "./wrangler-env.mjs";

export { root, wrangler };
export const env = wranglerEnv();

const servers = new Set();

export function stopServers() {
  for (const child of servers) {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
  }
  servers.clear();
}

export function run(args, options = {}) {
  return execFileSync(wrangler, args, {
    cwd: root,
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 * 1024 * 1024,
    timeout: 10 * 60_000,
    ...options,
  });
}

export function newApiKey() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const prefix = `jobs_${Array.from(randomBytes(12), (b) => alphabet[b % alphabet.length]).join("")}`;
  const key = `${prefix}_${randomBytes(32).toString("base64url")}`;
  return { key, prefix, hash: createHash("sha256").update(key).digest("hex") };
}

/** The root wrangler.toml with test/baseline/service.ts as main and rate limits out of the way. */
export function serviceConfig(dir) {
  const { rawConfig } = experimental_readRawConfig({ config: path.join(root, "wrangler.toml") });
  const config = structuredClone(rawConfig);
  config.name = `${config.name}-bench`;
  config.main = path.join(root, "test", "baseline", "service.ts");
  if (config.assets?.directory)
    config.assets.directory = path.resolve(root, config.assets.directory);
  for (const db of config.d1_databases ?? []) {
    if (db.migrations_dir) db.migrations_dir = path.resolve(root, db.migrations_dir);
  }
  for (const limiter of config.ratelimits ?? []) limiter.simple.limit = 1_000_000_000;
  const file = path.join(dir, "service.wrangler.json");
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

export async function startServer(name, config, port, state, extra = []) {
  const out = path.join(state, `${name}.log`);
  const output = openSync(out, "w");
  const child = spawn(
    wrangler,
    [
      "dev",
      "--config",
      config,
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      state,
      ...extra,
    ],
    { cwd: root, env, detached: true, stdio: ["ignore", output, output] },
  );
  servers.add(child);
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 120; i++) {
    if (child.exitCode !== null) break;
    try {
      await fetch(`${base}/health`);
      return { base, group: child.pid };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  throw new Error(`${name} did not start on ${base} (log: ${out})`);
}

const CLOCK_TICKS = 100;

/** Each process of a server's process group (workerd and wrangler) with its /proc stat fields. */
function groupProcesses(group) {
  let pids = [];
  try {
    pids = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  return pids.flatMap((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(fields[2]) === group ? [{ pid, fields }] : [];
    } catch {
      return [];
    }
  });
}

/** CPU seconds used so far by a server's process group, from /proc; 0 elsewhere. */
export function cpuSeconds(group) {
  return groupProcesses(group).reduce(
    (total, { fields }) => total + (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS,
    0,
  );
}

/** Resident memory in MB of a server's process group, from /proc; 0 elsewhere. */
export function memoryMb(group) {
  let kb = 0;
  for (const { pid } of groupProcesses(group)) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
    } catch {}
  }
  return kb / 1024;
}
