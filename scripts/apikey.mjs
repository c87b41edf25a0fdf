#!/usr/bin/env node
// Manage API keys in the D1 database through `wrangler d1 execute`; only SHA-256 hashes are stored.
// Human-readable lines go to stderr; `create` prints the new key alone on stdout, as the last line.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { root, wrangler, wranglerEnv } from "./wrangler-env.mjs";

const SCOPES = ["job:read", "job:write", "agent:read", "agent:write", "admin"];
const env = wranglerEnv();

const USAGE = `usage:
  npm run apikey -- create --name <name> --scopes <scope,scope> [--expires-in-days N]
                          [--agent-hostnames <pattern,pattern>] [--local | --remote]
  npm run apikey -- list [--local | --remote]
  npm run apikey -- revoke <id or prefix> [--local | --remote]
scopes: ${SCOPES.join(", ")}
--agent-hostnames: the only hostnames the key may act as an agent for, e.g. db-*,web-01
  ('*' matches any run of letters, digits, '.', '_' and '-'); without it, any hostname`;

/** The server's grammar for a hostname pattern (src/domain/target.ts) and its limit per key. */
const HOSTNAME_PATTERN = /^[A-Za-z0-9*][A-Za-z0-9._*-]{0,252}$/;
const MAX_AGENT_HOSTNAMES = 32;

function fail(message) {
  console.error(`apikey: ${message}`);
  process.exit(2);
}

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        name: { type: "string" },
        scopes: { type: "string" },
        "expires-in-days": { type: "string" },
        "agent-hostnames": { type: "string" },
        local: { type: "boolean" },
        remote: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    return fail(`${error.message}\n${USAGE}`);
  }
})();

if (values.help || positionals.length === 0) {
  console.error(USAGE);
  process.exit(values.help ? 0 : 2);
}
if (values.local && values.remote) fail("choose one of --local and --remote");
const where = values.remote ? "--remote" : "--local";
// The local state folder `npm run dev` uses (JOBS_STATE_DIR, default .wrangler/state).
const persist =
  where === "--local" && process.env.JOBS_STATE_DIR
    ? ["--persist-to", process.env.JOBS_STATE_DIR]
    : [];

const sql = (value) => (value === null ? "NULL" : `'${String(value).replaceAll("'", "''")}'`);

function wranglerRun(args) {
  // A running `npm run dev` may hold the local database's lock for a moment (SQLITE_BUSY).
  for (let attempt = 1; ; attempt++) {
    try {
      return execFileSync(wrangler, args, {
        cwd: root,
        env,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (error) {
      const output = `${error.stdout ?? ""}${error.stderr ?? ""}`;
      if (where === "--local" && output.includes("SQLITE_BUSY") && attempt < 5) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200 * attempt);
        continue;
      }
      fail(`wrangler ${args.join(" ")} failed:\n${output}`);
    }
  }
}

function execute(statement) {
  if (where === "--local") wranglerRun(["d1", "migrations", "apply", "DB", "--local", ...persist]);
  const output = wranglerRun([
    "d1",
    "execute",
    "DB",
    where,
    ...persist,
    "--json",
    "--command",
    statement,
  ]);
  const parsed = JSON.parse(output);
  return parsed[0]?.results ?? [];
}

function create() {
  const name = values.name?.trim();
  if (!name) fail(`--name is required\n${USAGE}`);
  const scopes = (values.scopes ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (scopes.length === 0) fail(`--scopes is required\n${USAGE}`);
  const unknown = scopes.filter((s) => !SCOPES.includes(s));
  if (unknown.length > 0) fail(`unknown scope ${unknown.join(", ")}; scopes: ${SCOPES.join(", ")}`);
  let expiresAt = null;
  if (values["expires-in-days"] !== undefined) {
    const days = Number(values["expires-in-days"]);
    if (!Number.isInteger(days) || days < 1)
      fail("--expires-in-days must be a whole number of days, at least 1");
    expiresAt = new Date(Date.now() + days * 86_400_000).toISOString();
  }
  let agentHostnames = null;
  if (values["agent-hostnames"] !== undefined) {
    agentHostnames = [
      ...new Set(
        values["agent-hostnames"]
          .split(",")
          .map((p) => p.trim())
          .filter(Boolean),
      ),
    ];
    const bad = agentHostnames.filter((p) => !HOSTNAME_PATTERN.test(p));
    if (agentHostnames.length === 0 || bad.length > 0)
      fail(`--agent-hostnames: not a hostname pattern: ${bad.join(", ") || "(none given)"}`);
    if (agentHostnames.length > MAX_AGENT_HOSTNAMES)
      fail(`--agent-hostnames: at most ${MAX_AGENT_HOSTNAMES} patterns`);
  }
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const prefix = `jobs_${Array.from(randomBytes(12), (b) => alphabet[b % alphabet.length]).join("")}`;
  const key = `${prefix}_${randomBytes(32).toString("base64url")}`;
  const hash = createHash("sha256").update(key).digest("hex");
  const id = randomUUID();
  execute(
    `INSERT INTO api_keys (id, prefix, key_hash, name, scopes, created_at, expires_at, lineage_id, agent_hostnames) VALUES (${[
      id,
      prefix,
      hash,
      name,
      [...new Set(scopes)].join(","),
      new Date().toISOString(),
      expiresAt,
      id,
      agentHostnames && JSON.stringify(agentHostnames),
    ]
      .map(sql)
      .join(", ")})`,
  );
  console.error(
    `created key ${id} (${prefix}) "${name}" with scopes ${scopes.join(",")}${expiresAt ? `, expires ${expiresAt}` : ""}${agentHostnames ? `, for hostnames ${agentHostnames.join(",")}` : ""}`,
  );
  console.error("the key is shown once, below; only its hash is stored");
  console.log(key);
}

function list() {
  const rows = execute(
    "SELECT id, prefix, name, scopes, agent_hostnames, created_at, expires_at, revoked_at, last_used_at FROM api_keys ORDER BY created_at",
  );
  if (rows.length === 0) {
    console.error("no keys");
    return;
  }
  console.table(rows);
}

function revoke(target) {
  if (!target) fail(`revoke needs a key id or prefix\n${USAGE}`);
  const rows = execute(
    `UPDATE api_keys SET revoked_at = '${new Date().toISOString()}' WHERE (id = ${sql(target)} OR prefix = ${sql(target)}) AND revoked_at IS NULL RETURNING id, prefix, name`,
  );
  if (rows.length === 0) fail(`no active key with id or prefix ${target}`);
  for (const row of rows) console.error(`revoked ${row.id} (${row.prefix}) "${row.name}"`);
}

const [command, ...rest] = positionals;
if (command === "create") create();
else if (command === "list") list();
else if (command === "revoke") revoke(rest[0]);
else fail(`unknown command ${command}\n${USAGE}`);
