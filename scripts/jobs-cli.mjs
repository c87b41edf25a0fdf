#!/usr/bin/env node
// The operator's client for the job API. Tables for people, --json for scripts.
import { parseArgs } from "node:util";

const USAGE = `usage: jobs <command> [options]

  job list [--status S] [--due true|false] [--exhausted] [--root ID] [--limit N] [--cursor C]
                                                   newest first; S: unprocessed, processing,
                                                   completed, failed, partial_failure, skipped,
                                                   cancelled; --due false: only jobs waiting for
                                                   their not_before; --exhausted: only dead letters
                                                   (their retries ran out); --root: one retry chain;
                                                   C: the "next:" a page ends with (or --offset N)
  job get <id>                                     status, lineage, retry policy, responses, timeline
  job retry <id> [--target T] [--operation JSON | --patch JSON] [--policy JSON]
                 [--reset-attempts] [--delay S | --not-before TIME]
                                                   a new job from the same operation (T: _any by
                                                   default); --operation replaces it, --patch merges
                                                   into it (RFC 7396: null removes a key, objects
                                                   merge); --policy replaces the retry policy (null:
                                                   none); --reset-attempts counts from attempt 1
                                                   again; --delay/--not-before: not before then
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
exit codes:  0 done · 1 the API refused or failed · 2 usage or configuration · 3 service unreachable
             4 not found · 5 key missing, refused or lacking the scope`;

const EXIT = { ok: 0, api: 1, usage: 2, unreachable: 3, notFound: 4, auth: 5 };

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
        status: { type: "string" },
        limit: { type: "string" },
        offset: { type: "string" },
        cursor: { type: "string" },
        target: { type: "string" },
        due: { type: "string" },
        exhausted: { type: "boolean" },
        root: { type: "string" },
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

async function request(conf, method, path, body) {
  const headers = { Authorization: `Bearer ${conf.key}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`${conf.url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new CliError(
      `cannot reach ${conf.url}: ${error.cause?.message ?? error.message}`,
      EXIT.unreachable,
    );
  }
  const text = await response.text();
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (response.ok) return parsed;
  if (response.status === 404 && parsed?.error === "not found") {
    throw new CliError(
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
  throw new CliError(message, code, parsed ?? { error: what, code: response.status });
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

function retryBody(values) {
  if (values.operation !== undefined && values.patch !== undefined)
    throw new CliError("give --operation or --patch, not both", EXIT.usage);
  if (values.delay !== undefined && values["not-before"] !== undefined)
    throw new CliError("give --delay or --not-before, not both", EXIT.usage);
  const delay = integer(values.delay, "delay");
  const body = {
    target_hostname: values.target,
    operation: json(values.operation, "operation"),
    operation_patch: json(values.patch, "patch"),
    retry_policy: json(values.policy, "policy"),
    reset_attempts: values["reset-attempts"],
    delay_seconds: delay === undefined ? undefined : Number(delay),
    not_before: values["not-before"],
  };
  const given = Object.entries(body).filter(([, value]) => value !== undefined);
  return given.length > 0 ? Object.fromEntries(given) : undefined;
}

async function jobRetry(conf, values, positionals, out) {
  const id = needId(positionals, "job retry");
  const body = retryBody(values);
  const accepted = await request(conf, "POST", `/job/${id}/retry`, body);
  if (values.json) return out(JSON.stringify(accepted, null, 2));
  out(
    `retried ${decodeURIComponent(id)} as ${accepted.job_id} (status ${accepted.status}, revision ${accepted.revision})`,
  );
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

async function run(argv, { env, out, err }) {
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
    const known = ["job list", "job get", "job retry", "job cancel", "job delete", "agent list"];
    if (!known.includes(command)) {
      throw new CliError(
        `${command ? `unknown command: ${command}` : "no command given"}\n\n${USAGE}`,
        EXIT.usage,
      );
    }
    const conf = config(env);
    if (command === "job list") await jobList(conf, values, out);
    else if (command === "job get") await jobGet(conf, values, positionals, out);
    else if (command === "job retry") await jobRetry(conf, values, positionals, out);
    else if (command === "job cancel") await jobCancel(conf, values, positionals, out);
    else if (command === "job delete") await jobDelete(conf, values, positionals, out);
    else await agentList(conf, values, out);
    return EXIT.ok;
  } catch (error) {
    if (!(error instanceof CliError)) throw error;
    if (values.json && error.body) err(JSON.stringify(error.body));
    else err(`jobs: ${error.message}`);
    return error.code;
  }
}

process.exitCode = await run(process.argv.slice(2), {
  env: process.env,
  out: (text) => console.log(text),
  err: (text) => console.error(text),
});
