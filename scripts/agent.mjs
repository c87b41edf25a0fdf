#!/usr/bin/env node
// The reference agent: registers, claims jobs under a lease, runs a few built-in operations, reports.
import { constants } from "node:fs";
import { open, realpath, stat } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

const USAGE = `usage: agent [--hostname H] [--labels key=value,...] [--once] [--limit N] [--lease S] [--wait S] [--interval S] [--cat-root DIR] [--fail-first N:TYPE]...

  --hostname H     the name jobs target (default: this machine's hostname)
  --labels L       labels for label targets, e.g. group=web.dev.us-east,os=debian
  --once           claim once, run what was handed out, and exit
  --limit N        jobs per claim, 1–100 (default 1)
  --lease S        seconds to finish a job before it is handed out again, 5–3600 (default 60);
                   while an operation runs, the lease is extended by S every S/2 seconds
  --wait S         how long each claim waits for work when nothing is due, 0–60 (default 30,
                   0 with --once): the service answers the moment a job is due for this agent
  --interval S     with --wait 0, seconds between claims when nothing is due (default 2)
  --cat-root DIR   lets cat read regular files inside DIR (at most 60 KiB); without it cat fails
  --fail-first N:TYPE
                   fails attempts 1 to N of every job of operation type TYPE on purpose (the
                   job's attempt in its retry chain, from the claim), to watch automatic
                   retries; may be given once per type, e.g. --fail-first 2:echo

operations:  echo {data}        completes with data as the result
             sleep {seconds}    waits, then completes
             fail {message}     fails with the message
             cat {path}         completes with the file's content; path is taken relative to
                                --cat-root, and fails if it leads outside it (also through
                                symlinks or ..), is not a regular file, or is over 60 KiB
             anything else      skipped: unsupported operation

leases:  each claimed job carries a lease_token that every report for it sends back. A report or
         lease extension answered 403 (the key may not act for this host), 404 or 409 (the lease
         expired, was superseded or the job was already reported) is logged and the agent moves on
         to the next job; a 403 on register or claim stops the agent with exit code 1.
cancel:  a report or lease extension answered 409 cancelled means an operator cancelled the job:
         the agent stops the operation, sends nothing more for it, logs one line and moves on.

environment:  JOBS_URL (default http://127.0.0.1:$PORT, PORT 8787), JOBS_API_KEY (a key with agent:write)`;

/** Read cap for cat: the server takes results up to 64 KiB, so leave room for the JSON around it. */
const CAT_MAX_BYTES = 60 * 1024;
const RESULT_MAX_BYTES = 64 * 1024;
/** The server's limit on a report's error. */
const ERROR_MAX_CHARS = 4096;

const OPERATIONS = {
  echo: async (op) => ({ result: op.data ?? null, changed: false }),
  sleep: async (op, { signal }) => {
    const seconds = Number(op.seconds ?? 1);
    if (!Number.isFinite(seconds) || seconds < 0 || seconds > 3600)
      throw new Error("seconds must be between 0 and 3600");
    await sleep(seconds * 1000, undefined, { signal });
    return { result: { slept: seconds }, changed: false };
  },
  fail: async (op) => {
    throw new Error(
      typeof op.message === "string" && op.message ? op.message : "failed on purpose",
    );
  },
  cat: async (op, { catRoot }) => {
    if (!catRoot) throw new Error("cat is disabled: start the agent with --cat-root DIR");
    if (typeof op.path !== "string" || op.path === "") throw new Error("path must be a file path");
    const content = await readCapped(await confine(catRoot, op.path), op.path);
    const result = { path: op.path, content };
    // Escaping can grow the content past what the server stores; fail here rather than get a 400.
    if (Buffer.byteLength(JSON.stringify(result)) > RESULT_MAX_BYTES)
      throw new Error(`${op.path} serialises to more than ${RESULT_MAX_BYTES} bytes`);
    return { result, changed: false };
  },
};

/** True when `file` is `root` or lies below it; both absolute and normalised. Pure, no I/O. */
function isInside(root, file) {
  return file === root || file.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

/**
 * The realpath of `requested` under --cat-root, or an error. Relative paths start at the root;
 * absolute ones must already point inside it. Checked twice: as written (so `../` is refused
 * without revealing whether the file outside exists) and after realpath (symlinks, `..`).
 */
async function confine(catRoot, requested) {
  const written = path.resolve(catRoot.given, requested);
  // An absolute path may name the root through its realpath (/private/tmp for /tmp on macOS).
  if (!isInside(catRoot.given, written) && !isInside(catRoot.real, written))
    throw new Error(`${requested} is outside --cat-root`);
  let real;
  try {
    real = await realpath(written);
  } catch (error) {
    throw new Error(`cannot read ${requested}: ${error.code ?? error.message}`);
  }
  if (!isInside(catRoot.real, real)) throw new Error(`${requested} is outside --cat-root`);
  return real;
}

/** Reads a regular file of at most CAT_MAX_BYTES; directories, devices and fifos are refused. */
async function readCapped(file, requested) {
  const notRegular = new Error(`${requested} is not a regular file`);
  const tooLarge = new Error(`${requested} is larger than ${CAT_MAX_BYTES} bytes`);
  const info = await stat(file);
  if (!info.isFile()) throw notRegular;
  if (info.size > CAT_MAX_BYTES) throw tooLarge;
  // The file may be swapped between stat and open: O_NONBLOCK keeps a fifo from hanging the agent,
  // O_NOFOLLOW refuses a symlink, and the handle is checked again before reading.
  const flags = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);
  const handle = await open(file, flags);
  try {
    if (!(await handle.stat()).isFile()) throw notRegular;
    // One byte over the cap tells a file that grew since the stat.
    const buffer = Buffer.alloc(CAT_MAX_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > CAT_MAX_BYTES) throw tooLarge;
    }
    return buffer.subarray(0, length).toString("utf8");
  } finally {
    await handle.close();
  }
}

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
        wait: { type: "string" },
        "cat-root": { type: "string" },
        "fail-first": { type: "string", multiple: true },
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

/** --fail-first N:TYPE, given once per type, as a map TYPE → N. */
function parseFailFirst(values = []) {
  const failFirst = new Map();
  for (const value of values) {
    const match = /^(\d+):(.+)$/.exec(value);
    if (!match) fail(`--fail-first wants N:TYPE, e.g. 2:echo, got "${value}"`);
    const [, n, type] = match;
    if (failFirst.has(type)) fail(`--fail-first names ${type} twice`);
    failFirst.set(type, integer(n, 0, 1, 100, "fail-first N"));
  }
  return failFirst;
}

/** --cat-root as given (absolute) and as its realpath; undefined when cat is disabled. */
async function catRootOf(value) {
  if (value === undefined) return undefined;
  let real;
  try {
    real = await realpath(value);
  } catch (error) {
    return fail(`--cat-root ${value}: ${error.code ?? error.message}`);
  }
  if (!(await stat(real)).isDirectory()) fail(`--cat-root ${value} is not a directory`);
  return { given: path.resolve(value), real };
}

class ApiError extends Error {
  constructor(status, body) {
    super(`${status} ${body?.error ?? ""}${body?.details ? `: ${body.details}` : ""}`);
    this.status = status;
    this.reason = body?.error;
  }
}

const RETRIES = 5;
const TRANSIENT = new Set([429, 502, 503, 504]);
/** A job is no longer ours: 403 the key may not act for this host, 404 deleted, 409 lease lost. */
const NOT_OURS = new Set([403, 404, 409]);

/** An operator cancelled the job: its holder stops and sends nothing more for it. */
const isCancelled = (error) =>
  error instanceof ApiError && error.status === 409 && error.reason === "cancelled";

/** A 403 on register or claim: this key cannot act as this hostname, and retrying will not help. */
function denied(error, hostname) {
  if (!(error instanceof ApiError) || error.status !== 403) return error;
  return new Error(`${hostname}: ${error.message} (this key cannot act as ${hostname}; stopping)`);
}

/**
 * Exponential backoff with full jitter: a random wait up to 0.5 s × 2^attempt, at most 60 s, at
 * least what Retry-After asks. Agents that lost the service at the same moment come back spread out.
 */
function backoffMs(attempt, retryAfterSeconds = 0) {
  const ceiling = Math.min(500 * 2 ** attempt, 60_000);
  const floor =
    Number.isFinite(retryAfterSeconds) && retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : 0;
  return Math.min(floor + Math.random() * ceiling, 60_000 + floor);
}

/** Requests the API; a refused-for-now answer (429, 503…) or a lost connection is tried again. */
function client(url, key) {
  return async (method, path, body, signal) => {
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await fetch(`${url}${path}`, {
          method,
          headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal,
        });
      } catch (error) {
        if (signal?.aborted || attempt >= RETRIES) throw error;
        await sleep(backoffMs(attempt));
        continue;
      }
      const text = await response.text();
      const parsed = text ? JSON.parse(text) : null;
      if (response.ok) return parsed;
      if (!TRANSIENT.has(response.status) || attempt >= RETRIES)
        throw new ApiError(response.status, parsed);
      await sleep(backoffMs(attempt, Number(response.headers.get("Retry-After"))));
    }
  };
}

/**
 * Extends a running job's lease by `body.lease_seconds` every half of that, so a long operation is
 * not handed out again. Returns a stop function that also waits for an extension in flight, so none lands
 * after the report. A refused extension is logged; the job's report will then get its own 409.
 * An extension answered 409 `cancelled` aborts `cancel` instead: the job is stopped, not reported.
 */
function holdLease(api, leasePath, body, who, cancel) {
  let inFlight;
  const extend = async () => {
    try {
      await api("POST", leasePath, body);
    } catch (error) {
      const lost = error instanceof ApiError && NOT_OURS.has(error.status);
      if (lost) clearInterval(timer);
      if (isCancelled(error)) return cancel.abort();
      console.error(
        `agent: ${who}: lease extension failed (${error.message})${lost ? "; the job is no longer ours" : ""}`,
      );
    } finally {
      inFlight = undefined;
    }
  };
  const timer = setInterval(() => {
    inFlight ??= extend();
  }, body.lease_seconds * 500);
  // An agent that stops on an error is not kept alive by the leases it held.
  timer.unref();
  return async () => {
    clearInterval(timer);
    await inFlight;
  };
}

/** Resolves with the operation, or rejects as soon as `signal` aborts (the job was cancelled). */
function unlessCancelled(promise, signal) {
  return new Promise((resolve, reject) => {
    const stop = () => reject(signal.reason);
    if (signal.aborted) return stop();
    signal.addEventListener("abort", stop, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", stop));
  });
}

async function run(job, settings, signal) {
  const type = job.operation.type;
  const failFirst = settings.failFirst.get(type);
  if (failFirst !== undefined) {
    // A service older than retry policies sends no attempt: every job is a first attempt there.
    const attempt = job.attempt ?? 1;
    if (attempt <= failFirst)
      return {
        event: "failed",
        error: `attempt ${attempt} failed on purpose (--fail-first ${failFirst}:${type})`,
      };
  }
  const operation = OPERATIONS[type];
  if (!operation) return { event: "skipped", error: `unsupported operation ${type}` };
  try {
    const done = await unlessCancelled(operation(job.operation, { ...settings, signal }), signal);
    return { event: "completed", ...done };
  } catch (error) {
    if (signal.aborted) return { cancelled: true };
    const message = error instanceof Error ? error.message : String(error);
    return { event: "failed", error: message.slice(0, ERROR_MAX_CHARS) };
  }
}

async function main() {
  const opts = options();
  if (opts.help) {
    console.log(USAGE);
    return;
  }
  const url = (
    process.env.JOBS_URL?.trim() || `http://127.0.0.1:${process.env.PORT?.trim() || 8787}`
  ).replace(/\/+$/, "");
  const key = process.env.JOBS_API_KEY?.trim();
  if (!key) fail("JOBS_API_KEY is not set (a key with the agent:write scope)");
  const hostname = opts.hostname ?? osHostname();
  const labels = parseLabels(opts.labels);
  const claim = {
    limit: integer(opts.limit, 1, 1, 100, "limit"),
    lease_seconds: integer(opts.lease, 60, 5, 3600, "lease"),
    wait_seconds: integer(opts.wait, opts.once ? 0 : 30, 0, 60, "wait"),
  };
  const interval = integer(opts.interval, 2, 1, 3600, "interval");
  const settings = {
    catRoot: await catRootOf(opts["cat-root"]),
    failFirst: parseFailFirst(opts["fail-first"]),
  };
  const api = client(url, key);
  const agentPath = `/agent/${encodeURIComponent(hostname)}`;

  let stopping = false;
  // A long claim in flight is given up at once on a stop: it holds no job yet.
  const stop = new AbortController();
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => {
      if (stopping) process.exit(130);
      stopping = true;
      stop.abort();
      console.error("agent: stopping after the current job (again to quit now)");
    });
  }

  const agent = await api("PUT", agentPath, labels === undefined ? {} : { labels }).catch(
    (error) => {
      throw denied(error, hostname);
    },
  );
  console.error(
    `agent: ${agent.hostname} registered at ${url}, labels ${JSON.stringify(agent.labels)}`,
  );

  let failures = 0;
  while (!stopping) {
    let jobs;
    try {
      ({ jobs } = await api("POST", `${agentPath}/claim`, claim, stop.signal));
      failures = 0;
    } catch (error) {
      if (stopping) break;
      if (opts.once || (error instanceof ApiError && error.status < 500 && error.status !== 429))
        throw denied(error, hostname);
      // The service is unreachable or refusing for now: come back later, spread out from the fleet.
      const wait = backoffMs(++failures);
      console.error(
        `agent: claim failed (${error.message}); trying again in ${(wait / 1000).toFixed(1)} s`,
      );
      await sleep(wait);
      continue;
    }
    // Every job's lease is held from the claim on, so the jobs waiting behind the first one in a
    // batch keep theirs too; each is released before its final report.
    const held = jobs.map((job) => {
      const jobPath = `${agentPath}/job/${job.id}`;
      // Every report proves this delivery with its token; a stale delivery's report gets 409.
      const token = { lease_token: job.lease_token };
      const lease = { ...token, lease_seconds: claim.lease_seconds };
      const cancel = new AbortController();
      const release = holdLease(api, `${jobPath}/lease`, lease, `${hostname} ${job.id}`, cancel);
      return { job, jobPath, token, release, cancel };
    });
    const cancelled = (job) =>
      console.log(`${hostname} ${job.id} ${job.operation.type}: stopped: the job was cancelled`);
    for (const { job, jobPath, token, release, cancel } of held) {
      try {
        if (cancel.signal.aborted) {
          await release();
          cancelled(job);
          continue;
        }
        await api("POST", `${jobPath}/event`, { event: "started", ...token }).catch((error) => {
          // A started that landed before its connection was lost, sent again: it is ours.
          if (!(error instanceof ApiError && error.reason === "already started")) throw error;
        });
        let outcome;
        try {
          outcome = await run(job, settings, cancel.signal);
        } finally {
          await release();
        }
        if (outcome.cancelled) {
          cancelled(job);
          continue;
        }
        const answer = await api("POST", `${jobPath}/event`, { ...outcome, ...token });
        console.log(
          `${hostname} ${job.id} ${job.operation.type}: ${outcome.event}${outcome.error ? `: ${outcome.error}` : ""} (job ${answer.status})`,
        );
      } catch (error) {
        await release();
        if (isCancelled(error)) {
          cancelled(job);
          continue;
        }
        // Lease lost, superseded or already reported (409), job deleted (404), or the key may not
        // act for this host (403): the job is not ours to finish, and the report is not retried.
        if (!(error instanceof ApiError) || !NOT_OURS.has(error.status)) throw error;
        console.error(`agent: ${hostname} ${job.id}: ${error.message}; moving on`);
      }
    }
    if (opts.once) break;
    // A long claim already waited for work; a short one (--wait 0) pauses before the next.
    if (jobs.length === 0 && claim.wait_seconds === 0) await sleep(interval * 1000);
  }
}

main().catch((error) => {
  console.error(`agent: ${error.message}`);
  process.exit(1);
});
