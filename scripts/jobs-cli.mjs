#!/usr/bin/env node
// The operator's client for the job API. Tables for people, --json for scripts.
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

const USAGE = `usage: jobs <command> [options]

  job list [--status S] [--due true|false] [--exhausted] [--root ID] [--target T]
           [--held-by HOST] [--limit N] [--cursor C]
                                                   newest first; S: unprocessed, processing,
                                                   completed, failed, partial_failure, skipped,
                                                   cancelled; --due false: only jobs waiting for
                                                   their not_before; --exhausted: only dead letters
                                                   (their retries ran out); --root: one retry chain;
                                                   --target: jobs for exactly T (_any, _all, a
                                                   hostname, key:value); --held-by: the jobs that
                                                   agent holds now; C: the "next:" a page ends
                                                   with (or --offset N)
  job get <id>                                     status, lineage, retry policy, responses, timeline
  job watch <id> [--follow]                        each event as it is written, until the job ends;
                                                   --follow: on into its retries, to the end of the
                                                   chain; exit 0 if it completed, 1 if it ended
                                                   otherwise; --json: a JSON line per event, then
                                                   {job_id, status} (status null: deleted)
  job create (--type T [--data JSON] | --operation JSON) [--target T] [--policy JSON]
             [--delay S | --not-before TIME] [--watch]
                                                   a new job (T: _any by default); --operation is
                                                   the whole operation; --policy: a retry policy;
                                                   --watch: then watch it as job watch --follow
  job retry <id> [--target T] [--operation JSON | --patch JSON] [--policy JSON]
                 [--reset-attempts] [--delay S | --not-before TIME] [--watch]
                                                   a new job from the same operation (T: _any by
                                                   default); --operation replaces it, --patch merges
                                                   into it (RFC 7396: null removes a key, objects
                                                   merge); --policy replaces the retry policy (null:
                                                   none); --reset-attempts counts from attempt 1
                                                   again; --delay/--not-before: not before then;
                                                   --watch: then watch it as job watch --follow
  job cancel <id>                                  a job no agent holds ends cancelled; one an agent
                                                   holds, at the agent's next report or lease
                                                   extension (cancel requested); finished: exit 1
  job cancel <id> <id>... | --status S [--limit N] [--dry-run]
                                                   up to 100 jobs (the oldest in S), a result each;
                                                   --dry-run says what would happen, writes nothing
  job delete <id>
  agent list [--limit N] [--cursor C]              registered agents and whether they are ready,
                                                   by hostname, 100 a page

options:  --json  print the API's JSON on stdout (errors stay on stderr)   -h, --help
environment:  JOBS_URL (default http://127.0.0.1:$PORT, PORT 8787: npm run dev),
              JOBS_API_KEY (a key with the scopes needed)
exit codes:  0 done · 1 the API refused or failed, or a watched job did not complete
             2 usage or configuration · 3 service unreachable · 4 not found
             5 key missing, refused or lacking the scope · 130 interrupted (Ctrl-C)`;

const EXIT = { ok: 0, api: 1, usage: 2, unreachable: 3, notFound: 4, auth: 5, interrupted: 130 };

class CliError extends Error {
  constructor(message, code, body) {
    super(message);
    this.code = code;
    this.body = body;
  }
}

function parse(argv) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: "boolean" },
        watch: { type: "boolean" },
        follow: { type: "boolean" },
        type: { type: "string" },
        data: { type: "string" },
        status: { type: "string" },
        limit: { type: "string" },
        offset: { type: "string" },
        cursor: { type: "string" },
        target: { type: "string" },
        due: { type: "string" },
        exhausted: { type: "boolean" },
        root: { type: "string" },
        "held-by": { type: "string" },
        operation: { type: "string" },
        patch: { type: "string" },
        policy: { type: "string" },
        delay: { type: "string" },
        "not-before": { type: "string" },
        "reset-attempts": { type: "boolean" },
        "dry-run": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new CliError(error.message, EXIT.usage);
  }
}

function config(env) {
  const url = env.JOBS_URL?.trim() || `http://127.0.0.1:${env.PORT?.trim() || 8787}`;
  const key = env.JOBS_API_KEY?.trim();
  if (!key) throw new CliError("JOBS_API_KEY is not set", EXIT.usage);
  if (!/^https?:\/\//.test(url))
    throw new CliError(`JOBS_URL is not an http(s) URL: ${url}`, EXIT.usage);
  return { url: url.replace(/\/+$/, ""), key };
}

function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** The error for a response the API refused: its message, and the exit code its status means. */
function refusal(conf, method, path, response, text) {
  const parsed = parseJson(text);
  if (response.status === 404 && parsed?.error === "not found") {
    return new CliError(
      `${conf.url} has no ${method} ${path.split("?")[0]}: is it an older version of the service?`,
      EXIT.api,
      parsed,
    );
  }
  const what = parsed?.error ?? (text.slice(0, 200) || response.statusText);
  const details = parsed?.details ? `: ${parsed.details}` : "";
  const retry = response.headers.get("Retry-After");
  const message = `${what}${details} (HTTP ${response.status}${retry ? `, retry after ${retry} s` : ""})`;
  const code =
    response.status === 404
      ? EXIT.notFound
      : response.status === 401 || response.status === 403
        ? EXIT.auth
        : EXIT.api;
  return new CliError(message, code, parsed ?? { error: what, code: response.status });
}

function unreachable(conf, error) {
  return new CliError(
    `cannot reach ${conf.url}: ${error.cause?.message ?? error.message}`,
    EXIT.unreachable,
  );
}

async function request(conf, method, path, body) {
  const headers = { Authorization: `Bearer ${conf.key}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  let text;
  try {
    response = await fetch(`${conf.url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: conf.signal,
    });
    text = await response.text();
  } catch (error) {
    throw unreachable(conf, error);
  }
  if (response.ok) return parseJson(text);
  throw refusal(conf, method, path, response, text);
}

function table(rows, columns) {
  const cells = rows.map((row) => columns.map(([, get]) => String(get(row) ?? "-")));
  const widths = columns.map(([title], i) =>
    Math.max(title.length, ...cells.map((row) => row[i].length)),
  );
  const line = (values) =>
    values
      .map((value, i) => (i === values.length - 1 ? value : value.padEnd(widths[i])))
      .join("  ");
  return [line(columns.map(([title]) => title)), ...cells.map(line)].join("\n");
}

const time = (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "-");

function needId(positionals, command) {
  const id = positionals[2];
  if (!id) throw new CliError(`${command} needs a job id\n\n${USAGE}`, EXIT.usage);
  return encodeURIComponent(id);
}

function integer(value, name) {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new CliError(`--${name} must be a whole number`, EXIT.usage);
  return value;
}

function json(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    throw new CliError(`--${name} must be JSON, e.g. '{"type":"echo"}'`, EXIT.usage);
  }
}

/** `2/3` when a retry policy counts the attempts, else `2`. */
const attemptOf = (job) =>
  job.retry_policy ? `${job.attempt}/${job.retry_policy.max_attempts}` : job.attempt;

/** The status, with what a person needs to know about it next. */
function statusOf(job) {
  if (job.retries_exhausted) return `${job.status} (exhausted)`;
  if (job.cancel_requested && job.status === "processing")
    return `${job.status} (cancel requested)`;
  return job.status;
}

function policyOf(policy) {
  if (!policy) return undefined;
  const wait =
    policy.backoff === "fixed"
      ? `waits ${policy.delay_seconds}s`
      : `waits ${policy.delay_seconds}s doubling up to ${policy.max_delay_seconds}s`;
  const jitter = policy.jitter === "full" ? "full jitter" : "no jitter";
  const attempts = `${policy.max_attempts} attempt${policy.max_attempts === 1 ? "" : "s"}`;
  return `${attempts}, ${wait}, ${jitter}, on ${policy.retry_on.join(" or ")}`;
}

async function jobList(conf, values, out) {
  const query = new URLSearchParams();
  if (values.status) query.set("status", values.status);
  if (values.due !== undefined) {
    if (values.due !== "true" && values.due !== "false")
      throw new CliError("--due must be true or false", EXIT.usage);
    query.set("due", values.due);
  }
  if (values.exhausted) query.set("retries_exhausted", "true");
  if (values.root) query.set("root_job_id", values.root);
  if (values.target) query.set("target", values.target);
  if (values["held-by"]) query.set("held_by", values["held-by"]);
  const limit = integer(values.limit, "limit");
  const offset = integer(values.offset, "offset");
  if (limit) query.set("limit", limit);
  if (offset) query.set("offset", offset);
  if (values.cursor) query.set("cursor", values.cursor);
  const page = await request(conf, "GET", `/job${query.size ? `?${query}` : ""}`);
  if (values.json) return out(JSON.stringify(page, null, 2));
  if (page.items.length > 0) {
    out(
      table(page.items, [
        ["ID", (j) => j.id],
        ["STATUS", statusOf],
        ["TARGET", (j) => j.target_hostname],
        ["TYPE", (j) => j.operation?.type],
        ["ATTEMPT", attemptOf],
        ["NOT BEFORE", (j) => time(j.not_before)],
        ["REVISION", (j) => j.revision],
        ["CREATED", (j) => time(j.created)],
      ]),
    );
  }
  const counts = Object.entries(page.status_counts)
    .map(([status, n]) => `${status} ${n}`)
    .join(", ");
  const next = page.next_cursor ? ` · next: --cursor ${page.next_cursor}` : "";
  out(`${page.items.length} shown of ${page.total_items} matching${next} · all jobs: ${counts}`);
}

async function jobGet(conf, values, positionals, out) {
  const job = await request(conf, "GET", `/job/${needId(positionals, "job get")}`);
  if (values.json) return out(JSON.stringify(job, null, 2));
  const fields = [
    ["id", job.id],
    ["status", statusOf(job)],
    ["target", job.target_hostname],
    ["operation", JSON.stringify(job.operation)],
    ["created", time(job.created)],
    ["updated", time(job.updated_at)],
    ["revision", job.revision],
    ["attempt", attemptOf(job)],
    ["retry policy", policyOf(job.retry_policy)],
    ["not before", job.not_before && time(job.not_before)],
    ["retry of", job.retry_of],
    ["retried by", job.retried_by],
    ["retried as", job.retried_as?.join(", ") || undefined],
    ["root job", job.root_job_id],
    [
      "operation changed",
      job.operation_changed ? "yes: differs from the job it retries" : undefined,
    ],
    ["changed", job.changed],
    ["hostname", job.hostname],
    ["error", job.error],
    ["result", job.result === undefined ? undefined : JSON.stringify(job.result)],
  ].filter(([, value]) => value !== undefined && value !== null);
  const width = Math.max(...fields.map(([name]) => name.length));
  out(fields.map(([name, value]) => `${name.padEnd(width)}  ${value}`).join("\n"));
  const agents = Object.entries(job.agent_states ?? {});
  if (agents.length > 0) {
    out(
      `\n${table(agents, [
        ["AGENT", ([host]) => host],
        ["STATE", ([, s]) => s.status],
        ["DURATION", ([, s]) => s.duration],
        ["ERROR", ([, s]) => s.error],
      ])}`,
    );
  }
  out(
    `\n${table(job.timeline ?? [], [
      ["TIME", (e) => time(e.timestamp)],
      ["EVENT", (e) => e.event],
      ["HOST", (e) => e.hostname],
      ["MESSAGE", (e) => (e.error ? `${e.message}: ${e.error}` : e.message)],
    ])}`,
  );
}

function schedule(values) {
  if (values.delay !== undefined && values["not-before"] !== undefined)
    throw new CliError("give --delay or --not-before, not both", EXIT.usage);
  const delay = integer(values.delay, "delay");
  return {
    delay_seconds: delay === undefined ? undefined : Number(delay),
    not_before: values["not-before"],
  };
}

/** The fields given, or undefined when none is. */
function given(body) {
  const fields = Object.entries(body).filter(([, value]) => value !== undefined);
  return fields.length > 0 ? Object.fromEntries(fields) : undefined;
}

function createBody(values) {
  if (values.operation !== undefined && (values.type !== undefined || values.data !== undefined))
    throw new CliError("give --type (with --data) or --operation, not both", EXIT.usage);
  if (values.operation === undefined && values.type === undefined)
    throw new CliError(`job create needs --type or --operation\n\n${USAGE}`, EXIT.usage);
  const data = json(values.data, "data");
  return given({
    operation: json(values.operation, "operation") ?? {
      type: values.type,
      ...(data === undefined ? {} : { data }),
    },
    target_hostname: values.target,
    retry_policy: json(values.policy, "policy"),
    ...schedule(values),
  });
}

async function jobCreate(conf, values, out) {
  const accepted = await request(conf, "POST", "/job", createBody(values));
  if (values.watch) return watchAccepted(conf, values, accepted, `created ${accepted.job_id}`, out);
  if (values.json) return out(JSON.stringify(accepted, null, 2));
  out(`created ${accepted.job_id} (status ${accepted.status}, revision ${accepted.revision})`);
}

function retryBody(values) {
  if (values.operation !== undefined && values.patch !== undefined)
    throw new CliError("give --operation or --patch, not both", EXIT.usage);
  return given({
    target_hostname: values.target,
    operation: json(values.operation, "operation"),
    operation_patch: json(values.patch, "patch"),
    retry_policy: json(values.policy, "policy"),
    reset_attempts: values["reset-attempts"],
    ...schedule(values),
  });
}

async function jobRetry(conf, values, positionals, out) {
  const id = needId(positionals, "job retry");
  const body = retryBody(values);
  const accepted = await request(conf, "POST", `/job/${id}/retry`, body);
  const what = `retried ${decodeURIComponent(id)} as ${accepted.job_id}`;
  if (values.watch) return watchAccepted(conf, values, accepted, what, out);
  if (values.json) return out(JSON.stringify(accepted, null, 2));
  out(`${what} (status ${accepted.status}, revision ${accepted.revision})`);
}

/** After a 201: the new job's life, retries included; with --json, the 201's body is the first line. */
function watchAccepted(conf, values, accepted, what, out) {
  out(
    values.json
      ? JSON.stringify(accepted)
      : `${what} (status ${accepted.status}, revision ${accepted.revision})`,
  );
  return watch(conf, accepted.job_id, { follow: true, json: values.json }, out);
}

/** Reconnects in a row before a watch gives up (waiting 0.5, 1, 2, 4, 8 s). */
const RECONNECTS = 5;
/** A stream silent this long has dropped: the service sends a heartbeat at least every 25 s. */
const SILENT_MS = 60_000;

/** Splits a Server-Sent Events body into messages with data; `heard()` on every chunk. */
async function* sseMessages(body, heard) {
  const decoder = new TextDecoder();
  let buffer = "";
  // A CR that ends a chunk waits for the next: it may be the first half of a CRLF.
  let pending = "";
  for await (const chunk of body) {
    heard();
    const text = pending + decoder.decode(chunk, { stream: true });
    pending = text.endsWith("\r") ? "\r" : "";
    buffer += text.slice(0, text.length - pending.length).replace(/\r\n?/g, "\n");
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const message = {};
      for (const line of buffer.slice(0, end).split("\n")) {
        const colon = line.indexOf(":");
        if (colon <= 0) continue;
        const field = line.slice(0, colon);
        const value = line.slice(colon + 1).replace(/^ /, "");
        if (field === "data")
          message.data = message.data === undefined ? value : `${message.data}\n${value}`;
        else if (field === "id" || field === "event") message[field] = value;
      }
      buffer = buffer.slice(end + 2);
      if (message.data !== undefined) yield message;
    }
  }
}

const eventLine = (e) =>
  [
    time(e.timestamp),
    e.event.padEnd(12),
    e.hostname.padEnd(16),
    e.error ? `${e.message}: ${e.error}` : e.message,
  ].join("  ");

/**
 * Prints a job's events as they are written until it (with follow, its retry chain) ends. A
 * dropped stream is resumed after the last event printed (Last-Event-ID), so none is missed or
 * printed twice. Exit 0 when the job completed, 1 when it ended otherwise.
 */
async function watch(conf, id, { follow, json }, out) {
  const path = `/job/${encodeURIComponent(id)}/events${follow ? "?follow=retries" : ""}`;
  let jobId = id;
  let last;
  let opened = false;
  let failures = 0;
  const finish = (end) => {
    if (json) out(JSON.stringify(end));
    else out(`job ${end.job_id} ${end.status ?? "deleted"}`);
    return end.status === "completed" ? EXIT.ok : EXIT.api;
  };
  for (;;) {
    if (failures > 0) await sleep(250 * 2 ** failures, undefined, { signal: conf.signal });
    const silent = new AbortController();
    let timer;
    const heard = () => {
      clearTimeout(timer);
      timer = setTimeout(() => silent.abort(), SILENT_MS);
    };
    heard();
    try {
      let response;
      try {
        response = await fetch(`${conf.url}${path}`, {
          headers: {
            Authorization: `Bearer ${conf.key}`,
            Accept: "text/event-stream",
            ...(last === undefined ? {} : { "Last-Event-ID": last }),
          },
          signal: AbortSignal.any([conf.signal, silent.signal]),
        });
      } catch (error) {
        if (!opened) throw unreachable(conf, error);
        throw error;
      }
      if (!response.ok) {
        const text = await response.text();
        const busy = response.status === 429 || response.status >= 500;
        if (opened && response.status === 404) return finish({ job_id: jobId, status: null });
        if (!opened || !busy) throw refusal(conf, "GET", path, response, text);
      } else {
        opened = true;
        for await (const message of sseMessages(response.body, heard)) {
          const data = JSON.parse(message.data);
          if (message.event === "end") return finish(data);
          failures = 0;
          last = message.id ?? last;
          if (json) out(JSON.stringify(data));
          else {
            if (data.job_id !== jobId) out(`job ${data.job_id} (retry of ${jobId})`);
            out(eventLine(data));
          }
          jobId = data.job_id;
        }
      }
    } catch (error) {
      if (error instanceof CliError || conf.signal.aborted) throw error;
    } finally {
      clearTimeout(timer);
    }
    if (++failures > RECONNECTS)
      throw new CliError(
        `the stream of job ${jobId} kept dropping; gave up after ${RECONNECTS} reconnects`,
        EXIT.unreachable,
      );
  }
}

async function jobWatch(conf, values, positionals, out) {
  const id = decodeURIComponent(needId(positionals, "job watch"));
  return watch(conf, id, { follow: values.follow, json: values.json }, out);
}

const CANCELLED = {
  cancelled: "cancelled",
  cancel_requested: "cancel requested",
  would_cancel: "would cancel",
  would_request_cancel: "would request cancel",
  finished: "finished",
  not_found: "not found",
};

async function jobCancel(conf, values, positionals, out) {
  const ids = positionals.slice(2);
  if (ids.length === 0 && values.status === undefined)
    throw new CliError(`job cancel needs a job id or --status\n\n${USAGE}`, EXIT.usage);
  if (ids.length > 0 && values.status !== undefined)
    throw new CliError("give job ids or --status, not both", EXIT.usage);
  if (values.limit !== undefined && values.status === undefined)
    throw new CliError("--limit goes with --status", EXIT.usage);
  if (ids.length === 1 && !values["dry-run"]) {
    const id = needId(positionals, "job cancel");
    const done = await request(conf, "POST", `/job/${id}/cancel`);
    if (values.json) return out(JSON.stringify(done, null, 2));
    out(
      done.outcome === "cancelled"
        ? `cancelled ${done.job_id} (revision ${done.revision})`
        : `cancel requested for ${done.job_id}: an agent holds it; it ends cancelled at the agent's next report or lease extension (revision ${done.revision})`,
    );
    return;
  }
  const limit = integer(values.limit, "limit");
  const body = {
    ...(ids.length > 0
      ? { job_ids: ids }
      : { status: values.status, ...(limit ? { limit: Number(limit) } : {}) }),
    ...(values["dry-run"] ? { dry_run: true } : {}),
  };
  const done = await request(conf, "POST", "/job/cancel", body);
  if (values.json) return out(JSON.stringify(done, null, 2));
  if (done.results.length === 0) return out("no jobs to cancel");
  out(
    table(done.results, [
      ["JOB", (r) => r.job_id],
      ["OUTCOME", (r) => CANCELLED[r.outcome] ?? r.outcome],
      ["ERROR", (r) => r.error],
    ]),
  );
  const counts = new Map();
  for (const r of done.results) counts.set(r.outcome, (counts.get(r.outcome) ?? 0) + 1);
  const summary = [...counts].map(([outcome, n]) => `${n} ${CANCELLED[outcome] ?? outcome}`);
  out(
    done.dry_run
      ? `dry run: ${summary.join(", ")}; nothing written`
      : `${summary.join(", ")}${done.revision === null ? "" : ` (revision ${done.revision})`}`,
  );
}

async function jobDelete(conf, values, positionals, out) {
  const id = needId(positionals, "job delete");
  await request(conf, "DELETE", `/job/${id}`);
  if (values.json) return out(JSON.stringify({ deleted: decodeURIComponent(id) }));
  out(`deleted ${decodeURIComponent(id)}`);
}

async function agentList(conf, values, out) {
  const query = new URLSearchParams();
  const limit = integer(values.limit, "limit");
  if (limit) query.set("limit", limit);
  if (values.cursor) query.set("cursor", values.cursor);
  const page = await request(conf, "GET", `/agent${query.size ? `?${query}` : ""}`);
  if (values.json) return out(JSON.stringify(page, null, 2));
  if (page.items.length === 0) return out("no agents registered");
  out(
    table(page.items, [
      ["HOSTNAME", (a) => a.hostname],
      ["STATE", (a) => a.state],
      ["OWNER", (a) => a.owner_key_prefix ?? "-"],
      [
        "LABELS",
        (a) =>
          Object.entries(a.labels ?? {})
            .map(([k, v]) => `${k}=${v}`)
            .join(",") || "-",
      ],
      ["REGISTERED", (a) => time(a.registered_at)],
      ["LAST SEEN", (a) => time(a.last_seen)],
    ]),
  );
  if (page.next_cursor) out(`next: --cursor ${page.next_cursor}`);
}

async function run(argv, { env, out, err, signal }) {
  let values = {};
  try {
    const parsed = parse(argv);
    values = parsed.values;
    const { positionals } = parsed;
    if (values.help) {
      out(USAGE);
      return EXIT.ok;
    }
    const command = positionals.slice(0, 2).join(" ");
    const commands = {
      "job list": () => jobList(conf, values, out),
      "job get": () => jobGet(conf, values, positionals, out),
      "job watch": () => jobWatch(conf, values, positionals, out),
      "job create": () => jobCreate(conf, values, out),
      "job retry": () => jobRetry(conf, values, positionals, out),
      "job cancel": () => jobCancel(conf, values, positionals, out),
      "job delete": () => jobDelete(conf, values, positionals, out),
      "agent list": () => agentList(conf, values, out),
    };
    if (!Object.hasOwn(commands, command)) {
      throw new CliError(
        `${command ? `unknown command: ${command}` : "no command given"}\n\n${USAGE}`,
        EXIT.usage,
      );
    }
    const conf = { ...config(env), signal };
    return (await commands[command]()) ?? EXIT.ok;
  } catch (error) {
    if (signal.aborted) return EXIT.interrupted;
    if (!(error instanceof CliError)) throw error;
    if (values.json && error.body) err(JSON.stringify(error.body));
    else err(`jobs: ${error.message}`);
    return error.code;
  }
}

const interrupt = new AbortController();
process.once("SIGINT", () => interrupt.abort());
process.exitCode = await run(process.argv.slice(2), {
  env: process.env,
  signal: interrupt.signal,
  out: (text) => console.log(text),
  err: (text) => console.error(text),
});
