#!/usr/bin/env node
// npm run bench: the service and a hand-written baseline Worker (test/baseline/) under autocannon,
// each on its own local D1 seeded with 10,000 and then 1,000,000 jobs; prints one table. The
// baseline runs twice: with the request log line the service writes too, and without it.
// Settings (environment): BENCH_SIZES=10000,1000000 BENCH_SECONDS=5 BENCH_ROUNDS=5 BENCH_CONNECTIONS=10
// BENCH_PORT=8791 (each Worker of each size takes the next port: 8791-8796) BENCH_TIMEOUT_MINUTES=30 BENCH_KEEP=1 (keep the state).
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import autocannon from "autocannon";
import {
  cpuSeconds,
  newApiKey,
  root,
  run,
  serviceConfig,
  startServer,
  stopServers,
} from "./bench-lib.mjs";

const SIZES = (process.env.BENCH_SIZES ?? "10000,1000000").split(",").map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10);
const PORT = Number(process.env.BENCH_PORT ?? 8791);
const TIMEOUT_MINUTES = Number(process.env.BENCH_TIMEOUT_MINUTES ?? 30);
const SAMPLE = 2000;
/** The baseline without its request log line, to show what wrangler dev charges for one. */
const QUIET = "baseline, no log";

const stateRoot = mkdtempSync(path.join(os.tmpdir(), "state-bench-"));

function log(message) {
  console.error(`bench: ${message}`);
}

function cleanup() {
  stopServers();
  if (process.env.BENCH_KEEP) log(`state kept in ${stateRoot}`);
  else rmSync(stateRoot, { recursive: true, force: true });
}

const deadline = setTimeout(() => {
  log(`stopped: over the ${TIMEOUT_MINUTES}-minute limit`);
  cleanup();
  process.exit(1);
}, TIMEOUT_MINUTES * 60_000);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}

const elapsed = (start) => (performance.now() - start) / 1000;

/** Jobs as the API makes them (random v4 ids, one per second of history), in the service's status mix, with their events. */
function seedSql(jobs, apiKey) {
  return `
INSERT INTO jobs (id, operation, target_hostname, status, created_at, updated_at, created_revision, revision, root_job_id, attempt)
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${jobs}),
seeded AS MATERIALIZED (
  SELECT i,
    lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))) AS id,
    strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d seconds', ${jobs} - i)) AS at
  FROM n
)
SELECT id, '{"type":"node.hostname.get","data":{}}', '_any',
  CASE WHEN i % 10 < 6 THEN 'completed' WHEN i % 10 = 6 THEN 'failed' WHEN i % 10 = 7 THEN 'processing' ELSE 'unprocessed' END,
  at, at, 1, 1, id, 1
FROM seeded;

INSERT INTO job_events (job_id, event, hostname, created_at, revision, data)
WITH steps(status, ord, event, data) AS (VALUES
  ('unprocessed', 0, 'submitted', NULL),
  ('processing', 0, 'submitted', NULL), ('processing', 1, 'acknowledged', NULL),
  ('completed', 0, 'submitted', NULL), ('completed', 1, 'started', NULL),
  ('completed', 2, 'completed', '{"result":{"hostname":"web-01"},"changed":false}'),
  ('failed', 0, 'submitted', NULL), ('failed', 1, 'started', NULL),
  ('failed', 2, 'failed', '{"error":"disk full"}'))
SELECT j.id, s.event, CASE s.ord WHEN 0 THEN '_api' ELSE printf('host-%02d', j.seq % 50) END,
  strftime('%Y-%m-%dT%H:%M:%fZ', j.created_at, printf('+%d seconds', s.ord)), 1,
  CASE s.ord WHEN 0 THEN json_object('target_hostname', j.target_hostname, 'operation_type', json_extract(j.operation, '$.type')) ELSE s.data END
FROM jobs j CROSS JOIN steps s WHERE s.status = j.status;

UPDATE store_revision SET revision = 1 WHERE id = 1;

INSERT INTO api_keys (id, prefix, key_hash, name, scopes, created_at)
VALUES ('${randomUUID()}', '${apiKey.prefix}', '${apiKey.hash}', 'bench', 'admin', '${new Date().toISOString()}');
`;
}

function databaseFile(state) {
  const dir = path.join(state, "v3", "d1", "miniflare-D1DatabaseObject");
  const file = readdirSync(dir).find((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite");
  return path.join(dir, file);
}

/** Bytes per table and index, when the sqlite3 command is on the machine. */
function tableSizes(file) {
  try {
    const out = execFileSync(
      "sqlite3",
      ["-readonly", file, "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"],
      { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
    );
    return Object.fromEntries(
      out
        .trim()
        .split("\n")
        .map((line) => {
          const [name, bytes] = line.split("|");
          return [name, Number(bytes)];
        }),
    );
  } catch {
    return null;
  }
}

function seed(state, jobs, apiKey) {
  run(["d1", "migrations", "apply", "DB", "--local", "--persist-to", state]);
  const file = path.join(state, "seed.sql");
  writeFileSync(file, seedSql(jobs, apiKey));
  const start = performance.now();
  run(["d1", "execute", "DB", "--local", "--persist-to", state, "--file", file]);
  const seconds = elapsed(start);
  const out = run([
    "d1",
    "execute",
    "DB",
    "--local",
    "--persist-to",
    state,
    "--json",
    "--command",
    `SELECT id FROM jobs ORDER BY random() LIMIT ${SAMPLE}; SELECT COUNT(*) AS n FROM job_events`,
  ]);
  const [ids, events] = JSON.parse(out);
  const dbFile = databaseFile(state);
  return {
    seconds,
    ids: ids.results.map((r) => r.id),
    events: events.results[0].n,
    bytes: statSync(dbFile).size,
    tables: tableSizes(dbFile),
  };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** The row of one endpoint on one Worker. */
const rowOf = (rows, name, server) => rows.find((r) => r.name === name && r.server === server);

/**
 * One Worker's rate against another's: the median over rounds of the ratio of the two runs in the
 * same round, which were back to back, so a change in the machine's load between rounds cancels.
 */
const pairedRatio = (a, b) => median(a.rounds.map((round, i) => round.rps / b.rounds[i].rps));

function cycle(paths) {
  let i = 0;
  const next = () => paths[i++ % paths.length];
  next.first = paths[0];
  return next;
}

/** One request, to read the D1 round trips and rows the Worker reports for it. */
async function probe({ base }, endpoint, auth) {
  const headers = headersFor(endpoint, auth);
  const response = await fetch(`${base}${endpoint.path.first}`, {
    method: endpoint.method,
    headers,
    body: endpoint.body,
  });
  await response.arrayBuffer();
  if (response.status >= 300) throw new Error(`${endpoint.name} answered ${response.status}`);
  return {
    calls: Number(response.headers.get("x-d1-calls")),
    rowsRead: Number(response.headers.get("x-d1-rows-read")),
  };
}

function headersFor(endpoint, auth) {
  return endpoint.body ? { ...auth, "content-type": "application/json" } : auth;
}

async function load({ base, group }, endpoint, auth, options) {
  const headers = headersFor(endpoint, auth);
  const cpuBefore = cpuSeconds(group);
  const next = endpoint.path;
  const result = await autocannon({
    url: base,
    connections: CONNECTIONS,
    ...options,
    requests: [
      {
        method: endpoint.method,
        headers,
        body: endpoint.body,
        setupRequest: (request) => ({ ...request, path: next() }),
      },
    ],
  });
  const failed = result.non2xx + result.errors + result.timeouts;
  if (failed > 0) {
    throw new Error(
      `${endpoint.name}: ${failed} of ${result.requests.total} requests failed: ${JSON.stringify({ codes: result.statusCodeStats, errors: result.errors, timeouts: result.timeouts })}`,
    );
  }
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    cpu: cpuSeconds(group) - cpuBefore,
  };
}

function endpoints(ids) {
  const half = ids.length / 2;
  const reads = cycle(ids.slice(0, half).map((id) => `/job/${id}`));
  const retries = cycle(ids.slice(half).map((id) => `/job/${id}/retry`));
  const body = JSON.stringify({ operation: { type: "node.hostname.get", data: {} } });
  const fixed = (p) => cycle([p]);
  return [
    { name: "GET /job/{id}", server: "service", method: "GET", path: reads },
    { name: "GET /job/{id}", server: "baseline", method: "GET", path: reads },
    { name: "GET /job/{id}", server: QUIET, method: "GET", path: reads },
    { name: "GET /job", server: "service", method: "GET", path: fixed("/job") },
    {
      name: "GET /job?status=failed",
      server: "service",
      method: "GET",
      path: fixed("/job?status=failed"),
    },
    { name: "GET /health", server: "service", method: "GET", path: fixed("/health") },
    { name: "POST /job/{id}/retry", server: "service", method: "POST", path: retries },
    { name: "POST /job/{id}/retry", server: "baseline", method: "POST", path: retries },
    { name: "POST /job/{id}/retry", server: QUIET, method: "POST", path: retries },
    { name: "POST /job", server: "service", method: "POST", path: fixed("/job"), body },
  ];
}

/** A seeded database per Worker for one size, and the three Workers serving them. */
async function prepareSize(jobs, apiKey, port) {
  const dir = path.join(stateRoot, String(jobs));
  const serviceState = path.join(dir, "service");
  const baselineState = path.join(dir, "baseline");
  const quietState = path.join(dir, "quiet");
  mkdirSync(dir, { recursive: true });
  log(`seeding ${jobs.toLocaleString("en")} jobs`);
  const seeded = seed(serviceState, jobs, apiKey);
  log(
    `seeded in ${seeded.seconds.toFixed(1)} s: ${seeded.events.toLocaleString("en")} events, ${(seeded.bytes / 1e6).toFixed(0)} MB`,
  );
  cpSync(serviceState, baselineState, { recursive: true });
  cpSync(serviceState, quietState, { recursive: true });
  const baselineConfig = path.join(root, "test", "baseline", "wrangler.toml");
  const workers = {
    service: await startServer(`service-${jobs}`, serviceConfig(dir), port, serviceState),
    baseline: await startServer(`baseline-${jobs}`, baselineConfig, port + 1, baselineState),
    [QUIET]: await startServer(`quiet-${jobs}`, baselineConfig, port + 2, quietState, [
      "--var",
      "BASELINE_LOG:off",
    ]),
  };
  const headers = { authorization: `Bearer ${apiKey.key}` };
  const list = endpoints(seeded.ids);
  for (const endpoint of list)
    await load(workers[endpoint.server], endpoint, headers, { amount: 200 });
  const counts = [];
  for (const endpoint of list)
    counts.push(await probe(workers[endpoint.server], endpoint, headers));
  return { jobs, seeded, workers, headers, list, counts, runs: list.map(() => []) };
}

/**
 * Every size's Workers are up at once, and each round runs an endpoint on every size and Worker
 * back to back, so the ratios between Workers and between sizes are all paired within a round.
 */
async function measure(apiKey) {
  const sizes = [];
  for (const [i, jobs] of SIZES.entries())
    sizes.push(await prepareSize(jobs, apiKey, PORT + 3 * i));
  const list = sizes[0].list;
  for (let round = 1; round <= ROUNDS; round++) {
    log(`round ${round} of ${ROUNDS}: ${list.length * sizes.length} × ${SECONDS} s`);
    for (const i of list.keys()) {
      for (const size of sizes) {
        const endpoint = size.list[i];
        size.runs[i].push(
          await load(size.workers[endpoint.server], endpoint, size.headers, { duration: SECONDS }),
        );
      }
    }
  }
  stopServers();
  return sizes.map(({ jobs, seeded, list: endpointsOfSize, counts, runs }) => ({
    jobs,
    seeded,
    rows: endpointsOfSize.map((endpoint, i) => ({
      ...endpoint,
      ...counts[i],
      rounds: runs[i],
      rps: median(runs[i].map((r) => r.rps)),
      p50: median(runs[i].map((r) => r.p50)),
      p99: median(runs[i].map((r) => r.p99)),
      cpuMs:
        (1000 * runs[i].reduce((s, r) => s + r.cpu, 0)) /
        runs[i].reduce((s, r) => s + r.requests, 0),
    })),
  }));
}

function bundleSize() {
  const outdir = path.join(stateRoot, "bundle");
  run(["deploy", "--dry-run", "--outdir", outdir]);
  const file = readdirSync(outdir).find((f) => f.endsWith(".js"));
  const code = readFileSync(path.join(outdir, file));
  return { bytes: code.length, gzip: gzipSync(code).length };
}

const label = (jobs) => (jobs >= 1e6 ? `${jobs / 1e6}M` : `${jobs / 1e3}k`);
const times = (x) => `${x.toFixed(2)}×`;
const ratio = (a, b) => (a && b ? times(a / b) : "");

function table(results) {
  const lines = [
    `| endpoint | Worker | jobs | req/s | p50 ms | p99 ms | CPU ms | D1 calls | rows read | req/s ÷ baseline | CPU ÷ baseline | req/s ÷ baseline, no log | req/s ÷ ${label(results[0].jobs)} |`,
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const first = results[0];
  for (const row of first.rows) {
    for (const result of results) {
      const r = rowOf(result.rows, row.name, row.server);
      const service = row.server === "service";
      const baseline = service ? rowOf(result.rows, row.name, "baseline") : undefined;
      const quiet = service ? rowOf(result.rows, row.name, QUIET) : undefined;
      const scaled = result === first ? "" : times(pairedRatio(r, row));
      lines.push(
        `| \`${r.name}\` | ${r.server} | ${label(result.jobs)} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.cpuMs ? r.cpuMs.toFixed(2) : ""} | ${r.calls} | ${r.rowsRead} | ${baseline ? times(pairedRatio(r, baseline)) : ""} | ${baseline ? ratio(r.cpuMs, baseline.cpuMs) : ""} | ${quiet ? times(pairedRatio(r, quiet)) : ""} | ${scaled} |`,
      );
    }
  }
  return lines.join("\n");
}

function targets(results) {
  const lines = [];
  for (const result of results) {
    for (const row of result.rows.filter((r) => r.server === "service")) {
      const baseline = rowOf(result.rows, row.name, "baseline");
      const quiet = rowOf(result.rows, row.name, QUIET);
      if (baseline) {
        const x = pairedRatio(row, baseline);
        const without = quiet
          ? `; ${pairedRatio(row, quiet).toFixed(2)}× the baseline with no log line`
          : "";
        lines.push(
          `${x >= 0.8 ? "met   " : "MISSED"} ${row.name} at ${label(result.jobs)}: ${x.toFixed(2)}× the baseline (target ≥ 0.8)${without}`,
        );
      }
    }
  }
  const [small, ...larger] = results;
  for (const result of larger) {
    for (const row of result.rows.filter((r) => r.server === "service")) {
      const x = pairedRatio(row, rowOf(small.rows, row.name, "service"));
      const baseline = rowOf(result.rows, row.name, "baseline");
      const alongside = baseline
        ? `; the baseline, same SQL: ${pairedRatio(baseline, rowOf(small.rows, row.name, "baseline")).toFixed(2)}×`
        : "";
      lines.push(
        `${x >= 0.8 ? "met   " : "MISSED"} ${row.name} at ${label(result.jobs)}: ${x.toFixed(2)}× its rate at ${label(small.jobs)} (target ≥ 0.8)${alongside}`,
      );
    }
  }
  return lines.join("\n");
}

function perJob(result) {
  const { seeded, jobs } = result;
  const t = seeded.tables;
  const sum = (names) => names.reduce((s, n) => s + (t?.[n] ?? 0), 0);
  const jobTables = t
    ? Object.keys(t).filter(
        (n) => n === "jobs" || n.startsWith("jobs_") || n === "sqlite_autoindex_jobs_1",
      )
    : [];
  const eventTables = t ? Object.keys(t).filter((n) => n.startsWith("job_events")) : [];
  const detail = t
    ? `; jobs table + indexes ${(sum(jobTables) / jobs).toFixed(0)} B per job, events table + index ${(sum(eventTables) / seeded.events).toFixed(0)} B per event`
    : " (install sqlite3 for a per-table split)";
  return `${label(jobs)}: seeded in ${seeded.seconds.toFixed(1)} s, ${seeded.events.toLocaleString("en")} events, database ${(seeded.bytes / 1e6).toFixed(0)} MB = ${(seeded.bytes / jobs).toFixed(0)} B per job with its events${detail}`;
}

try {
  const apiKey = newApiKey();
  const started = performance.now();
  const results = await measure(apiKey);
  const bundle = bundleSize();
  const cpus = os.cpus();
  console.log(
    `\n${new Date().toISOString().slice(0, 10)} · ${cpus.length} × ${cpus[0]?.model.trim()} · ${Math.round(os.totalmem() / 2 ** 30)} GB · Node ${process.version} · median of ${ROUNDS} round(s) of ${SECONDS} s (ratios to a baseline: median of the rounds' ratios), ${CONNECTIONS} connections, wrangler dev with local D1\n`,
  );
  console.log(table(results));
  console.log(`\n${targets(results)}\n`);
  for (const result of results) console.log(perJob(result));
  console.log(
    `bundle: ${(bundle.bytes / 1024).toFixed(0)} KiB, ${(bundle.gzip / 1024).toFixed(0)} KiB gzipped`,
  );
  console.log(`total ${(elapsed(started) / 60).toFixed(1)} min`);
} catch (error) {
  log(error instanceof Error ? (error.stderr ?? error.message) : String(error));
  process.exitCode = 1;
} finally {
  clearTimeout(deadline);
  cleanup();
}
