#!/usr/bin/env node
// The operator's client for the job API. Tables for people, --json for scripts.
import { parseArgs } from "node:util";

const USAGE = `usage: jobs <command> [options]

  job list [--status S] [--limit N] [--cursor C]   newest first; S: unprocessed, processing,
                                                   completed, failed, partial_failure, skipped;
                                                   C: the "next:" a page ends with (or --offset N)
  job get <id>                                     status, lineage, responses and timeline
  job retry <id> [--target T]                      a new job from the same operation (T: _any by default)
  job delete <id>
  agent list [--limit N] [--cursor C]              registered agents and whether they are ready,
                                                   by hostname, 100 a page

options:  --json  print the API's JSON on stdout (errors stay on stderr)   -h, --help
environment:  JOBS_URL (e.g. https://jobs.example.com), JOBS_API_KEY (a key with the scopes needed)
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
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new CliError(error.message, EXIT.usage);
  }
}

function config(env) {
  const url = env.JOBS_URL?.trim();
  const key = env.JOBS_API_KEY?.trim();
  if (!url) throw new CliError("JOBS_URL is not set (the service's base URL)", EXIT.usage);
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

async function jobList(conf, values, out) {
  const query = new URLSearchParams();
  if (values.status) query.set("status", values.status);
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
        ["STATUS", (j) => j.status],
        ["TARGET", (j) => j.target_hostname],
        ["TYPE", (j) => j.operation?.type],
        ["ATTEMPT", (j) => j.attempt],
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
    ["status", job.status],
    ["target", job.target_hostname],
    ["operation", JSON.stringify(job.operation)],
    ["created", time(job.created)],
    ["updated", time(job.updated_at)],
    ["revision", job.revision],
    ["attempt", job.attempt],
    ["retry of", job.retry_of],
    ["root job", job.root_job_id],
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

async function jobRetry(conf, values, positionals, out) {
  const id = needId(positionals, "job retry");
  const body = values.target === undefined ? undefined : { target_hostname: values.target };
  const accepted = await request(conf, "POST", `/job/${id}/retry`, body);
  if (values.json) return out(JSON.stringify(accepted, null, 2));
  out(
    `retried ${decodeURIComponent(id)} as ${accepted.job_id} (status ${accepted.status}, revision ${accepted.revision})`,
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
    const known = ["job list", "job get", "job retry", "job delete", "agent list"];
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
