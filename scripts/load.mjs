#!/usr/bin/env node
// npm run load: a few thousand mixed requests (creates, reads, retries racing deletes, agents
// claiming and reporting, malformed requests) at `wrangler dev` on a fresh local D1, then the
// consistency check of test/consistency.ts on that database. Fails on any 5xx, any violation,
// any request the server never answered, or when over its time limit; always stops its server.
// Settings (environment): LOAD_REQUESTS=3000 LOAD_CONNECTIONS=16 LOAD_PORT=<a free port>
// LOAD_STATE=<folder for the database; a fresh one inside it> LOAD_TIMEOUT_SECONDS=300 LOAD_KEEP=1
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import ts from "typescript";
import { freePort } from "./free-port.mjs";
import { root, wrangler, wranglerEnv } from "./wrangler-env.mjs";

const env = wranglerEnv();

const REQUESTS = Number(process.env.LOAD_REQUESTS ?? 3000);
const CONNECTIONS = Number(process.env.LOAD_CONNECTIONS ?? 16);
const PORT = Number(process.env.LOAD_PORT || (await freePort()));
const TIMEOUT_SECONDS = Number(process.env.LOAD_TIMEOUT_SECONDS ?? 300);
const KEYS = 40;
const AGENTS = 8;
const BASE = `http://127.0.0.1:${PORT}`;

const stateBase = process.env.LOAD_STATE ?? os.tmpdir();
mkdirSync(stateBase, { recursive: true });
const state = mkdtempSync(path.join(stateBase, "load-"));
let server;

const log = (message) => console.error(`load: ${message}`);

function cleanup() {
  if (server) {
    try {
      process.kill(-server.pid, "SIGTERM");
    } catch {}
    server = undefined;
  }
  if (process.env.LOAD_KEEP) log(`state kept in ${state}`);
  else rmSync(state, { recursive: true, force: true });
}

const deadline = setTimeout(() => {
  log(`stopped: over the ${TIMEOUT_SECONDS}-second limit`);
  cleanup();
  process.exit(1);
}, TIMEOUT_SECONDS * 1000);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}

function wranglerRun(args) {
  return execFileSync(wrangler, [...args, "--persist-to", state], {
    cwd: root,
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 * 1024 * 1024,
    timeout: 120_000,
  });
}

function d1File(sql) {
  const file = path.join(state, `query-${randomUUID()}.sql`);
  writeFileSync(file, sql);
  return JSON.parse(wranglerRun(["d1", "execute", "DB", "--local", "--json", "--file", file]));
}

/** API keys in the same form as scripts/apikey.mjs makes them: only hashes are stored. */
function makeKeys() {
  const keys = Array.from({ length: KEYS }, () => {
    const prefix = `jobs_${randomBytes(9)
      .toString("base64url")
      .toLowerCase()
      .replace(/[^a-z0-9]/g, "0")
      .slice(0, 12)}`;
    return { prefix, key: `${prefix}_${randomBytes(32).toString("base64url")}` };
  });
  const now = new Date().toISOString();
  d1File(
    keys
      .map(
        ({ prefix, key }) =>
          `INSERT INTO api_keys (id, prefix, key_hash, name, scopes, created_at) VALUES ('${randomUUID()}', '${prefix}', '${createHash("sha256").update(key).digest("hex")}', 'load', 'admin', '${now}');`,
      )
      .join("\n"),
  );
  return keys.map((k) => k.key);
}

async function startServer() {
  const out = openSync(path.join(state, "wrangler-dev.log"), "w");
  server = spawn(
    wrangler,
    [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(PORT),
      "--inspector-port",
      String(await freePort()),
      "--persist-to",
      state,
    ],
    { cwd: root, env, detached: true, stdio: ["ignore", out, out] },
  );
  for (let i = 0; i < 120; i++) {
    try {
      if ((await fetch(`${BASE}/health`)).ok) return;
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`wrangler dev did not answer on ${BASE}; see ${state}/wrangler-dev.log`);
}

/** The same check the tests run, from test/consistency.ts, compiled here: Node 20 runs no TypeScript. */
async function loadCheck() {
  const source = readFileSync(path.join(root, "test", "consistency.ts"), "utf8");
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  return import(`data:text/javascript;base64,${Buffer.from(outputText).toString("base64")}`);
}

const keys = [];
const agents = Array.from({ length: AGENTS }, (_, i) => `load-agent-${i}`);
const pool = [];
const deleted = new Set();
const statuses = new Map();
const serverErrors = [];
let turn = 0;

const pick = (items) => items[Math.floor(Math.random() * items.length)];
const someJob = () => (pool.length > 0 ? pick(pool) : randomUUID());
const json = (body) => ({ "content-type": "application/json", body: JSON.stringify(body) });
/** An agent's own key (a hostname belongs to the key that registered it); any key for the rest. */
const agentKey = (agent) => keys[agents.indexOf(agent) % keys.length];
const keyFor = (context) =>
  context.path.startsWith("/agent/") ? agentKey(context.agent) : keys[turn++ % keys.length];

/** One step of a connection's cycle: what to send, and what to remember from the answer. */
function step(method, pathOf, extra = {}) {
  return {
    method,
    setupRequest(request, context) {
      context.agent ??= agents[turn % AGENTS];
      extra.prepare?.(context);
      context.path = pathOf(context);
      const { body, ...headers } = extra.body ? extra.body(context) : {};
      return {
        ...request,
        method,
        path: context.path,
        headers: { ...headers, authorization: `Bearer ${keyFor(context)}` },
        body,
      };
    },
    onResponse(status, body, context) {
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status >= 500) serverErrors.push(`${method} ${context.path} → ${status} ${body}`);
      extra.remember?.(status, body, context);
    },
  };
}

const created = (key) => (status, body, context) => {
  if (status !== 201) return;
  context[key] = JSON.parse(body).job_id;
  pool.push(context[key]);
};
const gone = (id) => (status, _body, context) => {
  if (status === 204) deleted.add(id(context));
};

const cycle = [
  step("POST", () => "/job", {
    body: () =>
      json({
        operation: { type: "load.echo", data: { n: turn } },
        // Half retry themselves: failures below make attempts inside the report's batch.
        ...(turn % 2 === 0
          ? {
              retry_policy: { max_attempts: 3, backoff: "fixed", delay_seconds: 1, jitter: "none" },
            }
          : {}),
      }),
    remember: created("job"),
  }),
  step("GET", (c) => `/job/${c.job ?? randomUUID()}`),
  step("POST", (c) => `/job/${c.job ?? randomUUID()}/retry`, { remember: created("child") }),
  step("GET", () => "/job?limit=5&status=unprocessed"),
  step("POST", (c) => `/agent/${c.agent}/claim`, {
    body: () => json({ limit: 2, lease_seconds: 60 }),
    remember: (status, body, context) => {
      if (status === 200) context.claimed = JSON.parse(body).jobs;
    },
  }),
  step("POST", (c) => `/agent/${c.agent}/job/${c.claimed?.[0]?.id ?? someJob()}/event`, {
    body: (c) => json({ event: "started", lease_token: c.claimed?.[0]?.lease_token ?? "none" }),
  }),
  step("POST", (c) => `/agent/${c.agent}/job/${c.claimed?.[0]?.id ?? someJob()}/event`, {
    body: (c) =>
      json({
        lease_token: c.claimed?.[0]?.lease_token ?? "none",
        ...(Math.random() < 0.8
          ? { event: "completed", result: { ok: true }, changed: false }
          : { event: "failed", error: "load failure" }),
      }),
  }),
  step("POST", (c) => `/job/${c.target}/retry`, {
    prepare: (c) => {
      c.target = someJob();
    },
    body: () => json({ target_hostname: "_any" }),
  }),
  step("DELETE", (c) => `/job/${c.target}`, {
    prepare: (c) => {
      c.target = someJob();
    },
    remember: gone((c) => c.target),
  }),
  step("POST", () => "/job", {
    body: () => ({ "content-type": "application/json", body: '{"operation":' }),
  }),
  step("GET", () => "/job/not-a-uuid"),
  step("GET", () => "/health"),
  step("POST", () => "/job", {
    body: () => json({ operation: { type: "load.all" }, target_hostname: "_all" }),
    remember: created("broadcast"),
  }),
  step("DELETE", (c) => `/job/${c.child ?? randomUUID()}`, { remember: gone((c) => c.child) }),
  step("POST", (c) => `/job/${c.target}/cancel`, {
    prepare: (c) => {
      c.target = someJob();
    },
  }),
  step("POST", (c) => `/job/${c.target}/retry`, {
    prepare: (c) => {
      c.target = someJob();
    },
    body: () => json({ operation_patch: { data: { patched: turn } }, delay_seconds: 1 }),
    remember: created("patched"),
  }),
];

async function main() {
  const started = performance.now();
  log(`state in ${state}`);
  wranglerRun(["d1", "migrations", "apply", "DB", "--local"]);
  keys.push(...makeKeys());
  await startServer();
  log(`wrangler dev ready on ${BASE} after ${((performance.now() - started) / 1000).toFixed(1)} s`);
  for (const agent of agents) {
    const response = await fetch(`${BASE}/agent/${agent}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${agentKey(agent)}`, "content-type": "application/json" },
      body: "{}",
    });
    if (response.status !== 200) throw new Error(`registering ${agent}: ${response.status}`);
  }

  const result = await autocannon({
    url: BASE,
    connections: CONNECTIONS,
    amount: REQUESTS,
    timeout: 30,
    requests: cycle,
  });
  const seconds = result.duration;
  log(
    `${result.requests.total} requests in ${seconds.toFixed(1)} s (${(result.requests.total / seconds).toFixed(0)}/s), ` +
      `p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms; ` +
      `statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}; ` +
      `errors ${result.errors}, timeouts ${result.timeouts}`,
  );
  process.kill(-server.pid, "SIGTERM");
  await new Promise((resolve) => server.once("exit", resolve));
  server = undefined;

  const { checkConsistency } = await loadCheck();
  const violations = await checkConsistency(
    async (sql) => d1File(sql.map((s) => `${s};`).join("\n")).map((r) => r.results),
    deleted,
  );
  const [counts] = d1File(
    "SELECT (SELECT COUNT(*) FROM jobs) AS jobs, (SELECT COUNT(*) FROM job_events) AS events, (SELECT revision FROM store_revision) AS revision, (SELECT COUNT(*) FROM job_agents WHERE state IN ('completed', 'failed')) AS answered;",
  );
  log(`stored ${JSON.stringify(counts.results[0])}; ${deleted.size} jobs deleted`);

  const fiveHundreds = [...statuses].filter(([s]) => s >= 500).reduce((n, [, c]) => n + c, 0);
  for (const line of serverErrors.slice(0, 10)) log(`5xx: ${line.slice(0, 300)}`);
  for (const v of violations.slice(0, 20)) log(`violation: ${JSON.stringify(v)}`);
  const unanswered = result.errors + result.timeouts;
  const answered = [...statuses.values()].reduce((a, b) => a + b, 0);
  log(
    `${answered} answered, ${fiveHundreds} 5xx, ${unanswered} unanswered, ${violations.length} violations, ${((performance.now() - started) / 1000).toFixed(1)} s in all`,
  );
  return fiveHundreds === 0 && unanswered === 0 && violations.length === 0 && answered >= REQUESTS;
}

main()
  .then((ok) => {
    clearTimeout(deadline);
    cleanup();
    process.exit(ok ? 0 : 1);
  })
  .catch((error) => {
    log(error instanceof Error ? (error.stack ?? error.message) : String(error));
    clearTimeout(deadline);
    cleanup();
    process.exit(1);
  });
