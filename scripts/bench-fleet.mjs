#!/usr/bin/env node
// npm run bench:fleet: a fleet of agents (each its own hostname) against `wrangler dev`, with jobs
// submitted at a steady rate, once polling every few seconds with short claims and once with long
// claims; prints what each costs D1 (counted by the Worker and by the object the long claims wait
// in: test/baseline/service.ts), how long a
// job waits between its submission and its claim, whether every job was handed out exactly once,
// and the Worker's memory.
// Settings (environment): FLEET_AGENTS=1000 FLEET_SECONDS=30 FLEET_RATE=5 (jobs a second, half
// `_any`, half for a random agent) FLEET_POLL_SECONDS=5 FLEET_WAIT_SECONDS=30 FLEET_PORT=8797.
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { memoryMb, newApiKey, run, serviceConfig, startServer, stopServers } from "./bench-lib.mjs";

const AGENTS = Number(process.env.FLEET_AGENTS ?? 1000);
const SECONDS = Number(process.env.FLEET_SECONDS ?? 30);
const RATE = Number(process.env.FLEET_RATE ?? 5);
const POLL_SECONDS = Number(process.env.FLEET_POLL_SECONDS ?? 5);
const WAIT_SECONDS = Number(process.env.FLEET_WAIT_SECONDS ?? 30);
const PORT = Number(process.env.FLEET_PORT ?? 8797);
/** After the last job, how long the fleet keeps claiming so every job can be handed out. */
const DRAIN_SECONDS = POLL_SECONDS + 5;

const stateRoot = mkdtempSync(path.join(os.tmpdir(), "state-fleet-"));
const log = (message) => console.error(`bench:fleet: ${message}`);
function cleanup() {
  stopServers();
  rmSync(stateRoot, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}

/** A fresh migrated database with one admin key, and the counted service Worker on it. */
async function startService(name, port) {
  const dir = path.join(stateRoot, name);
  mkdirSync(dir, { recursive: true });
  const key = newApiKey();
  run(["d1", "migrations", "apply", "DB", "--local", "--persist-to", dir]);
  const sql = path.join(dir, "key.sql");
  writeFileSync(
    sql,
    `INSERT INTO api_keys (id, prefix, key_hash, name, scopes, created_at) VALUES ('${randomUUID()}', '${key.prefix}', '${key.hash}', 'fleet', 'admin', '${new Date().toISOString()}');`,
  );
  run(["d1", "execute", "DB", "--local", "--persist-to", dir, "--file", sql]);
  const server = await startServer(name, serviceConfig(dir), port, dir);
  return { ...server, key: key.key };
}

/** What the Worker reported for every request of a phase, and what the waiting object spent. */
function meter() {
  const m = { requests: 0, d1Calls: 0, rowsRead: 0, writeBatches: 0, idleWrites: 0, errors: 0 };
  const statuses = new Map();
  return {
    m,
    statuses,
    /** The requests' counts so far plus the object's own D1 use (its feed, last_seen). */
    async snapshot(base) {
      const object = await (await fetch(`${base}/__bench/waiters-d1`)).json();
      return {
        at: performance.now(),
        requests: m.requests,
        d1Calls: m.d1Calls + object.calls,
        rowsRead: m.rowsRead + object.rowsRead,
        writes: m.writeBatches + object.writes,
      };
    },
    /** A request to the service, its D1 use added up; its JSON body, or null on failure. */
    async call(base, key, method, urlPath, body, { idleClaim = false } = {}) {
      let response;
      try {
        response = await fetch(`${base}${urlPath}`, {
          method,
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch {
        m.errors++;
        return null;
      }
      const text = await response.text();
      m.requests++;
      m.d1Calls += Number(response.headers.get("x-d1-calls") ?? 0);
      m.rowsRead += Number(response.headers.get("x-d1-rows-read") ?? 0);
      const wrote = Number(response.headers.get("x-d1-rows-written") ?? 0) > 0;
      if (wrote) m.writeBatches++;
      const parsed = response.ok && text ? JSON.parse(text) : null;
      if (wrote && idleClaim && parsed?.jobs?.length === 0) m.idleWrites++;
      if (!response.ok) {
        m.errors++;
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      }
      return parsed;
    },
  };
}

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};

/** One phase: the fleet claiming with `wait` seconds (0: poll every POLL_SECONDS) while jobs arrive. */
async function phase(name, wait, port) {
  log(`${name}: starting wrangler dev and registering ${AGENTS} agents`);
  const server = await startService(name, port);
  const { m, call, snapshot, statuses } = meter();
  const hosts = Array.from({ length: AGENTS }, (_, i) => `fleet-${String(i).padStart(5, "0")}`);
  for (let i = 0; i < hosts.length; i += 100) {
    await Promise.all(
      hosts.slice(i, i + 100).map((h) => call(server.base, server.key, "PUT", `/agent/${h}`, {})),
    );
  }
  Object.assign(m, { requests: 0, d1Calls: 0, rowsRead: 0, writeBatches: 0, idleWrites: 0 });

  const submitted = new Map();
  const claimedBy = new Map();
  const claimedAt = new Map();
  let submitting = true;
  let running = true;

  const agent = async (hostname) => {
    // Polling agents start spread over one interval, as a fleet started at different times would.
    if (wait === 0) await sleep(Math.random() * POLL_SECONDS * 1000);
    while (running) {
      const body = { limit: 10, lease_seconds: 300, wait_seconds: wait };
      const claimed = await call(
        server.base,
        server.key,
        "POST",
        `/agent/${hostname}/claim`,
        body,
        {
          idleClaim: true,
        },
      );
      const at = performance.now();
      for (const job of claimed?.jobs ?? []) {
        claimedBy.set(job.id, [...(claimedBy.get(job.id) ?? []), hostname]);
        if (!claimedAt.has(job.id)) claimedAt.set(job.id, at);
        await call(server.base, server.key, "POST", `/agent/${hostname}/job/${job.id}/event`, {
          event: "completed",
          lease_token: job.lease_token,
        });
      }
      if (!claimed) await sleep(1000);
      else if (wait === 0 && claimed.jobs.length === 0) await sleep(POLL_SECONDS * 1000);
    }
  };

  const submitter = async () => {
    const started = performance.now();
    for (let n = 0; submitting; n++) {
      const due = started + (n * 1000) / RATE;
      const delay = due - performance.now();
      if (delay > 0) await sleep(delay);
      if (!submitting) break;
      const target = n % 2 === 0 ? "_any" : hosts[Math.floor(Math.random() * hosts.length)];
      const sentAt = performance.now();
      call(server.base, server.key, "POST", "/job", {
        operation: { type: "fleet.echo" },
        target_hostname: target,
      }).then((created) => {
        if (created?.job_id) submitted.set(created.job_id, sentAt);
      });
    }
  };

  // The idle cost first: the fleet with no jobs, over two poll intervals or two waits (a long
  // claim is counted when it answers), after the first claims and their last_seen writes.
  // A request's D1 use is counted when it answers, so the window opens after the first claims.
  const idleSeconds = 2 * Math.max(POLL_SECONDS, WAIT_SECONDS);
  log(`${name}: ${AGENTS} agents idle for ${idleSeconds} s`);
  const fleet = hosts.map(agent);
  await sleep((Math.max(POLL_SECONDS, WAIT_SECONDS) + 5) * 1000);
  const between = async (start) => {
    const end = await snapshot(server.base);
    return {
      seconds: (end.at - start.at) / 1000,
      d1Calls: end.d1Calls - start.d1Calls,
      writes: end.writes - start.writes,
      requests: end.requests - start.requests,
      rowsRead: end.rowsRead - start.rowsRead,
    };
  };
  const idleStart = await snapshot(server.base);
  await sleep(idleSeconds * 1000);
  const idle = await between(idleStart);

  log(`${name}: ${RATE} jobs a second for ${SECONDS} s`);
  const busyStart = await snapshot(server.base);
  const submitting$ = submitter();
  await sleep(SECONDS * 1000);
  submitting = false;
  await submitting$;
  const busy = await between(busyStart);
  const memory = memoryMb(server.group);
  log(`${name}: draining for ${DRAIN_SECONDS} s`);
  await sleep(DRAIN_SECONDS * 1000);
  running = false;
  if (wait > 0) log(`${name}: letting the waiting claims run out (${wait} s at most)`);
  await Promise.all(fleet);
  stopServers();

  const latencies = [...submitted].flatMap(([id, sentAt]) =>
    claimedAt.has(id) ? [claimedAt.get(id) - sentAt] : [],
  );
  const once = [...submitted.keys()].filter((id) => claimedBy.get(id)?.length === 1).length;
  return {
    name,
    idle,
    busy,
    memory,
    submitted: submitted.size,
    once,
    twice: [...claimedBy.values()].filter((h) => h.length > 1).length,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors: m.errors,
    statuses: Object.fromEntries(statuses),
  };
}

const rate = (n, seconds) => (n / seconds).toFixed(1);

try {
  const short = await phase("short polling", 0, PORT);
  const long = await phase("long claims", WAIT_SECONDS, PORT + 1);
  const cpus = os.cpus();
  console.log(
    `\n${new Date().toISOString().slice(0, 10)} · ${cpus.length} × ${cpus[0]?.model.trim()} · Node ${process.version} · wrangler dev with local D1 · ${AGENTS} agents, ${RATE} jobs/s (half _any) for ${SECONDS} s; short polls every ${POLL_SECONDS} s, long claims wait ${WAIT_SECONDS} s\n`,
  );
  console.log(
    "| protocol | idle: writes/s | idle: D1 calls/s | idle: claims/s | idle: rows read/s | busy: writes/s | busy: D1 calls/s | busy: rows read/s | submit → claim p50 | p99 | handed out once | twice | Worker memory | errors |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of [short, long]) {
    console.log(
      `| ${r.name} | ${rate(r.idle.writes, r.idle.seconds)} | ${rate(r.idle.d1Calls, r.idle.seconds)} | ${rate(r.idle.requests, r.idle.seconds)} | ${rate(r.idle.rowsRead, r.idle.seconds)} | ${rate(r.busy.writes, r.busy.seconds)} | ${rate(r.busy.d1Calls, r.busy.seconds)} | ${rate(r.busy.rowsRead, r.busy.seconds)} | ${r.p50.toFixed(0)} ms | ${r.p99.toFixed(0)} ms | ${r.once} of ${r.submitted} | ${r.twice} | ${r.memory.toFixed(0)} MB | ${r.errors} |`,
    );
  }
  for (const r of [short, long])
    if (r.errors > 0)
      console.log(`${r.name}: failed requests by status ${JSON.stringify(r.statuses)}`);
  const idleWrites = long.idle.writes / long.idle.seconds;
  const fewer = short.busy.d1Calls / long.busy.d1Calls;
  const checks = [
    [
      idleWrites <= AGENTS / 30,
      `long claims idle: ${idleWrites.toFixed(1)} writes/s (target ≤ ${(AGENTS / 30).toFixed(1)})`,
    ],
    [long.p50 <= 100, `long claims submit → claim p50 ${long.p50.toFixed(0)} ms (target ≤ 100)`],
    [long.p99 <= 1000, `long claims submit → claim p99 ${long.p99.toFixed(0)} ms (target ≤ 1000)`],
    [
      long.once === long.submitted && short.once === short.submitted,
      "every job handed out exactly once, in both",
    ],
    [
      fewer >= 10,
      `D1 calls while busy: long claims make ${fewer.toFixed(1)}× fewer than short polling (target ≥ 10)`,
    ],
  ];
  console.log();
  for (const [met, text] of checks) console.log(`${met ? "met   " : "MISSED"} ${text}`);
} catch (error) {
  log(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
} finally {
  cleanup();
}
