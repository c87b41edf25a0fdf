#!/usr/bin/env node
// The reference agent: registers, claims jobs under a lease, runs a few built-in operations, reports.
import { readFile } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

const USAGE = `usage: agent [--hostname H] [--labels key=value,...] [--once] [--limit N] [--lease S] [--interval S]

  --hostname H     the name jobs target (default: this machine's hostname)
  --labels L       labels for label targets, e.g. group=web.dev.us-east,os=debian
  --once           claim once, run what was handed out, and exit
  --limit N        jobs per claim, 1–100 (default 1)
  --lease S        seconds to finish a job before it is handed out again, 5–3600 (default 60)
  --interval S     seconds between claims when nothing is due (default 2)

operations:  echo {data}        completes with data as the result
             sleep {seconds}    waits, then completes
             fail {message}     fails with the message
             cat {path}         completes with the file's content; fails if it cannot be read
             anything else      skipped: unsupported operation
environment:  JOBS_URL (default http://127.0.0.1:8787), JOBS_API_KEY (a key with agent:write)`;

const OPERATIONS = {
  echo: async (op) => ({ result: op.data ?? null, changed: false }),
  sleep: async (op) => {
    const seconds = Number(op.seconds ?? 1);
    if (!Number.isFinite(seconds) || seconds < 0 || seconds > 3600)
      throw new Error("seconds must be between 0 and 3600");
    await sleep(seconds * 1000);
    return { result: { slept: seconds }, changed: false };
  },
  fail: async (op) => {
    throw new Error(
      typeof op.message === "string" && op.message ? op.message : "failed on purpose",
    );
  },
  cat: async (op) => {
    if (typeof op.path !== "string" || op.path === "") throw new Error("path must be a file path");
    return { result: { path: op.path, content: await readFile(op.path, "utf8") }, changed: false };
  },
};

function fail(message) {
  console.error(`agent: ${message}`);
  process.exit(2);
}

function options() {
  try {
    return parseArgs({
      options: {
        hostname: { type: "string" },
        labels: { type: "string" },
        once: { type: "boolean" },
        limit: { type: "string" },
        lease: { type: "string" },
        interval: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    return fail(`${error.message}\n${USAGE}`);
  }
}

function integer(value, fallback, min, max, name) {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    fail(`--${name} must be a whole number, ${min}–${max}`);
  return n;
}

function parseLabels(value) {
  if (value === undefined) return undefined;
  const labels = {};
  for (const pair of value.split(",").filter(Boolean)) {
    const [key, ...rest] = pair.split("=");
    if (!key || rest.length === 0) fail(`--labels wants key=value pairs, got "${pair}"`);
    labels[key] = rest.join("=");
  }
  return labels;
}

class ApiError extends Error {
  constructor(status, body) {
    super(`${status} ${body?.error ?? ""}${body?.details ? `: ${body.details}` : ""}`);
    this.status = status;
  }
}

const RETRIES = 5;
const TRANSIENT = new Set([429, 502, 503, 504]);

/** Requests the API; a refused-for-now answer (429, 503…) or a lost connection is tried again. */
function client(url, key) {
  return async (method, path, body) => {
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await fetch(`${url}${path}`, {
          method,
          headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (error) {
        if (attempt >= RETRIES) throw error;
        await sleep(2 ** attempt * 500);
        continue;
      }
      const text = await response.text();
      const parsed = text ? JSON.parse(text) : null;
      if (response.ok) return parsed;
      if (!TRANSIENT.has(response.status) || attempt >= RETRIES)
        throw new ApiError(response.status, parsed);
      const retryAfter = Number(response.headers.get("Retry-After"));
      await sleep(
        Math.min(Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 2 ** attempt, 60) *
          1000,
      );
    }
  };
}

async function run(job) {
  const operation = OPERATIONS[job.operation.type];
  if (!operation) return { event: "skipped", error: `unsupported operation ${job.operation.type}` };
  try {
    return { event: "completed", ...(await operation(job.operation)) };
  } catch (error) {
    return { event: "failed", error: error instanceof Error ? error.message : String(error) };
  }
}

async function main() {
  const opts = options();
  if (opts.help) {
    console.log(USAGE);
    return;
  }
  const url = (process.env.JOBS_URL?.trim() || "http://127.0.0.1:8787").replace(/\/+$/, "");
  const key = process.env.JOBS_API_KEY?.trim();
  if (!key) fail("JOBS_API_KEY is not set (a key with the agent:write scope)");
  const hostname = opts.hostname ?? osHostname();
  const labels = parseLabels(opts.labels);
  const claim = {
    limit: integer(opts.limit, 1, 1, 100, "limit"),
    lease_seconds: integer(opts.lease, 60, 5, 3600, "lease"),
  };
  const interval = integer(opts.interval, 2, 1, 3600, "interval");
  const api = client(url, key);
  const agentPath = `/agent/${encodeURIComponent(hostname)}`;

  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => {
      if (stopping) process.exit(130);
      stopping = true;
      console.error("agent: stopping after the current job (again to quit now)");
    });
  }

  const agent = await api("PUT", agentPath, labels === undefined ? {} : { labels });
  console.error(
    `agent: ${agent.hostname} registered at ${url}, labels ${JSON.stringify(agent.labels)}`,
  );

  while (!stopping) {
    let jobs;
    try {
      ({ jobs } = await api("POST", `${agentPath}/claim`, claim));
    } catch (error) {
      if (opts.once || (error instanceof ApiError && error.status < 500 && error.status !== 429))
        throw error;
      console.error(`agent: claim failed (${error.message}); trying again in ${interval} s`);
      await sleep(interval * 1000);
      continue;
    }
    for (const job of jobs) {
      const eventPath = `${agentPath}/job/${job.id}/event`;
      try {
        await api("POST", eventPath, { event: "started" });
        const outcome = await run(job);
        const answer = await api("POST", eventPath, outcome);
        console.log(
          `${hostname} ${job.id} ${job.operation.type}: ${outcome.event}${outcome.error ? `: ${outcome.error}` : ""} (job ${answer.status})`,
        );
      } catch (error) {
        // 409: another agent holds the job now, or a report already landed; 404: it was deleted.
        if (!(error instanceof ApiError) || (error.status !== 409 && error.status !== 404))
          throw error;
        console.error(`agent: ${job.id}: ${error.message}; moving on`);
      }
    }
    if (opts.once) break;
    if (jobs.length === 0) await sleep(interval * 1000);
  }
}

main().catch((error) => {
  console.error(`agent: ${error.message}`);
  process.exit(1);
});
