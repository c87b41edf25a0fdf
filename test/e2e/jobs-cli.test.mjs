// scripts/jobs-cli.mjs as an operator runs it, against the running Worker.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ADMIN, api, BASE, runScript } from "./helpers.mjs";

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
const cli = (args, env) => runScript("jobs-cli.mjs", args, env);

const createJob = async (type = "cli.test") =>
  (await api("POST", "/job", { operation: { type, data: { n: 1 } } })).job_id;

const keyWith = async (scopes) => (await api("POST", "/keys", { name: "cli", scopes })).key;

test("job list: a table for people, the API's JSON with --json", async () => {
  const first = await createJob("cli.list.one");
  const second = await createJob("cli.list.two");
  const table = await cli(["job", "list", "--limit", "100"]);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trim().split("\n");
  assert.match(lines[0], /^ID\s+STATUS\s+TARGET\s+TYPE\s+ATTEMPT\s+REVISION\s+CREATED$/);
  const rows = lines.filter((line) => UUID.test(line));
  assert.ok(
    rows.findIndex((r) => r.startsWith(second)) < rows.findIndex((r) => r.startsWith(first)),
  );
  assert.match(
    rows.find((r) => r.startsWith(first)),
    /unprocessed\s+_any\s+cli\.list\.one\s+1\s+\d+/,
  );
  assert.match(
    lines.at(-1),
    /^\d+ shown of \d+ matching( · next: --cursor \d+)? · all jobs: unprocessed \d+, processing \d+/,
  );

  const newest = await cli(["job", "list", "--limit", "1"]);
  const next = /· next: --cursor (\d+) ·/.exec(newest.stdout.trim().split("\n").at(-1));
  assert.ok(next, newest.stdout);
  assert.ok(newest.stdout.includes(second));
  const following = await cli(["job", "list", "--limit", "1", "--cursor", next[1]]);
  assert.equal(following.code, 0, following.stderr);
  assert.ok(following.stdout.includes(first), following.stdout);

  const json = await cli(["job", "list", "--status", "unprocessed", "--limit", "100", "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const page = JSON.parse(json.stdout);
  assert.ok(page.items.some((job) => job.id === first));
  assert.equal(typeof page.status_counts.unprocessed, "number");
});

test("job get: fields and timeline; --json is the job (with changed)", async () => {
  const id = await createJob("cli.get");
  const shown = await cli(["job", "get", id]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, new RegExp(`^id\\s+${id}$`, "m"));
  assert.match(shown.stdout, /^status\s+unprocessed$/m);
  assert.match(shown.stdout, /^operation\s+\{"type":"cli\.get","data":\{"n":1\}\}$/m);
  assert.match(shown.stdout, /^TIME\s+EVENT\s+HOST\s+MESSAGE$/m);
  assert.match(shown.stdout, /submitted\s+_api\s+Job submitted to queue/);

  const json = await cli(["job", "get", id.toUpperCase(), "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const job = JSON.parse(json.stdout);
  assert.equal(job.id, id);
  assert.ok("changed" in job);
});

test("job retry: the new job is a retry of the original, to _any or to --target", async () => {
  const id = await createJob("cli.retry");
  const retried = await cli(["job", "retry", id]);
  assert.equal(retried.code, 0, retried.stderr);
  const match = new RegExp(
    `^retried ${id} as (${UUID.source}) \\(status unprocessed, revision (\\d+)\\)$`,
  ).exec(retried.stdout.trim());
  assert.ok(match, retried.stdout);
  const retry = await api("GET", `/job/${match[1]}`);
  assert.equal(retry.retry_of, id);
  assert.equal(retry.attempt, 2);
  assert.equal(retry.target_hostname, "_any");
  assert.equal(retry.revision, Number(match[2]));

  const broadcast = await cli(["job", "retry", id, "--target", "_all", "--json"]);
  assert.equal(broadcast.code, 0, broadcast.stderr);
  const accepted = JSON.parse(broadcast.stdout);
  assert.equal((await api("GET", `/job/${accepted.job_id}`)).target_hostname, "_all");
});

test("job delete: deleted, then get exits 4 with the API's message", async () => {
  const id = await createJob("cli.delete");
  const deleted = await cli(["job", "delete", id]);
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal(deleted.stdout.trim(), `deleted ${id}`);
  const gone = await cli(["job", "get", id]);
  assert.equal(gone.code, 4);
  assert.equal(gone.stdout, "");
  assert.equal(gone.stderr.trim(), `jobs: job not found: ${id} (HTTP 404)`);
  const json = await cli(["job", "retry", id, "--json"]);
  assert.equal(json.code, 4);
  assert.deepEqual(JSON.parse(json.stderr), {
    type: "job_not_found",
    error: `job not found: ${id}`,
    code: 404,
  });
});

test("agent list: hostname, state, owner, labels, registered, last seen", async (t) => {
  const doc = await (await fetch(`${BASE}/openapi.json`)).json();
  if (!doc.paths["/agent"]?.get) return t.skip("this build has no GET /agent");
  const hostname = `cli-${Date.now()}`;
  await api("PUT", `/agent/${hostname}`, { labels: { group: "web.dev", zone: "eu" } });
  const listed = await cli(["agent", "list"]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /^HOSTNAME\s+STATE\s+OWNER\s+LABELS\s+REGISTERED\s+LAST SEEN$/m);
  assert.match(
    listed.stdout,
    new RegExp(
      `^${hostname}\\s+ready\\s+${ADMIN.slice(0, 17)}\\s+group=web\\.dev,zone=eu\\s+\\d{4}-`,
      "m",
    ),
  );
  const json = JSON.parse((await cli(["agent", "list", "--json"])).stdout);
  const agent = json.items.find((a) => a.hostname === hostname);
  assert.deepEqual(agent.labels, { group: "web.dev", zone: "eu" });
  assert.equal(agent.state, "ready");
});

test("clear errors and exit codes: usage 2, unreachable 3, refused key 5, API error 1", async () => {
  const usage = await cli(["job", "frobnicate"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /^jobs: unknown command: job frobnicate\n\nusage: jobs/);
  assert.equal((await cli(["job", "get"])).code, 2);
  assert.equal((await cli(["job", "list", "--limit", "ten"])).code, 2);
  assert.equal((await cli(["--help"])).code, 0);

  const noUrl = await cli(["job", "list"], { JOBS_URL: "" });
  assert.equal(noUrl.code, 2);
  assert.match(noUrl.stderr, /JOBS_URL is not set/);
  const noKey = await cli(["job", "list"], { JOBS_API_KEY: "" });
  assert.equal(noKey.code, 2);
  assert.match(noKey.stderr, /JOBS_API_KEY is not set/);

  const down = await cli(["job", "list"], { JOBS_URL: "http://127.0.0.1:9" });
  assert.equal(down.code, 3);
  assert.match(down.stderr, /^jobs: cannot reach http:\/\/127\.0\.0\.1:9/);

  const unknown = await cli(["job", "list"], {
    JOBS_API_KEY: `jobs_zzzzzzzzzzzz_${"Z".repeat(43)}`,
  });
  assert.equal(unknown.code, 5);
  assert.match(
    unknown.stderr,
    /invalid API key: the key is unknown, revoked or expired \(HTTP 401\)/,
  );
  const reader = await keyWith(["job:read"]);
  const id = await createJob();
  const forbidden = await cli(["job", "retry", id], { JOBS_API_KEY: reader });
  assert.equal(forbidden.code, 5);
  assert.equal(
    forbidden.stderr.trim(),
    "jobs: Insufficient permissions: requires job:write (HTTP 403)",
  );
  assert.equal((await cli(["job", "get", id], { JOBS_API_KEY: reader })).code, 0);

  const badId = await cli(["job", "get", "not-a-uuid"]);
  assert.equal(badId.code, 1);
  assert.match(badId.stderr, /invalid path parameter: id: must be a UUID \(HTTP 400\)/);
});
