// scripts/jobs-cli.mjs as an operator runs it, against the running Worker.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { ADMIN, api, BASE, runScript, startAgent, startScript, until } from "./helpers.mjs";

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
  assert.match(
    lines[0],
    /^ID\s+STATUS\s+TARGET\s+TYPE\s+ATTEMPT\s+NOT BEFORE\s+REVISION\s+CREATED$/,
  );
  const rows = lines.filter((line) => UUID.test(line));
  assert.ok(
    rows.findIndex((r) => r.startsWith(second)) < rows.findIndex((r) => r.startsWith(first)),
  );
  assert.match(
    rows.find((r) => r.startsWith(first)),
    /unprocessed\s+_any\s+cli\.list\.one\s+1\s+-\s+\d+/,
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

test("job list --target and --held-by: the jobs for one target, and what an agent holds", async () => {
  const hostname = `cli-held-${Date.now()}`;
  await api("PUT", `/agent/${hostname}`, {});
  const made = [];
  for (const n of [1, 2])
    made.push(
      (
        await api("POST", "/job", {
          operation: { type: `cli.held.${n}` },
          target_hostname: hostname,
        })
      ).job_id,
    );
  const listed = async (...args) => {
    const result = await cli(["job", "list", ...args, "--limit", "100", "--json"]);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout).items.map((job) => job.id);
  };
  assert.deepEqual(await listed("--target", hostname), [...made].reverse());
  assert.deepEqual(await listed("--held-by", hostname), []);
  const { jobs } = await api("POST", `/agent/${hostname}/claim`, { limit: 100 });
  const mine = jobs.map((job) => job.id).filter((id) => made.includes(id));
  assert.deepEqual(mine.sort(), [...made].sort());
  const held = await listed("--held-by", hostname);
  assert.ok(
    made.every((id) => held.includes(id)),
    held.join(" "),
  );
  assert.equal(held.length, jobs.length);
  const bad = await cli(["job", "list", "--target", "gr@up:web"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /target/);
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

const POLICY = { max_attempts: 3, backoff: "fixed", delay_seconds: 1, jitter: "none" };

test("job get and job list: attempt of max, the policy, not before; --due false lists waiting jobs", async () => {
  const { job_id: id } = await api("POST", "/job", {
    operation: { type: "cli.delayed" },
    retry_policy: POLICY,
    delay_seconds: 600,
  });
  const shown = await cli(["job", "get", id]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^attempt\s+1\/3$/m);
  assert.match(shown.stdout, /^retry policy\s+3 attempts, waits 1s, no jitter, on failed$/m);
  assert.match(shown.stdout, /^not before\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/m);

  const waiting = await cli(["job", "list", "--due", "false", "--limit", "100"]);
  assert.equal(waiting.code, 0, waiting.stderr);
  assert.match(
    waiting.stdout,
    new RegExp(`^${id}\\s+unprocessed\\s+_any\\s+cli\\.delayed\\s+1/3\\s+\\d{4}-`, "m"),
  );
  const due = await cli(["job", "list", "--due", "true", "--limit", "100", "--json"]);
  assert.ok(!JSON.parse(due.stdout).items.some((job) => job.id === id));
  assert.equal((await cli(["job", "list", "--due", "soon"])).code, 2);
});

test("job cancel: a delayed job ends cancelled; cancelling it again is 409, exit 1", async () => {
  const { job_id: id } = await api("POST", "/job", {
    operation: { type: "cli.cancel" },
    delay_seconds: 600,
  });
  const cancelled = await cli(["job", "cancel", id]);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  assert.match(cancelled.stdout.trim(), new RegExp(`^cancelled ${id} \\(revision \\d+\\)$`));
  const job = await api("GET", `/job/${id}`);
  assert.equal(job.status, "cancelled");
  assert.deepEqual(
    job.timeline.map((entry) => entry.event),
    ["submitted", "cancelled"],
  );
  const waiting = await cli(["job", "list", "--due", "false", "--limit", "100", "--json"]);
  assert.ok(!JSON.parse(waiting.stdout).items.some((j) => j.id === id));

  const again = await cli(["job", "cancel", id]);
  assert.equal(again.code, 1);
  assert.equal(
    again.stderr.trim(),
    `jobs: job is already cancelled: job ${id} has finished; retry it instead (HTTP 409)`,
  );
  const json = await cli(["job", "cancel", id, "--json"]);
  assert.equal(json.code, 1);
  assert.equal(JSON.parse(json.stderr).code, 409);
});

test("job cancel many: --dry-run writes nothing, then a result per job", async () => {
  const first = await createJob("cli.cancel.many");
  const second = await createJob("cli.cancel.many");
  const finished = await createJob("cli.cancel.many");
  await cli(["job", "cancel", finished]);
  const missing = "00000000-0000-4000-8000-000000000000";
  const ids = [first, second, finished, missing];

  const dry = await cli(["job", "cancel", ...ids, "--dry-run"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^JOB\s+OUTCOME\s+ERROR$/m);
  assert.match(dry.stdout, new RegExp(`^${first}\\s+would cancel\\s+-$`, "m"));
  assert.match(dry.stdout, new RegExp(`^${finished}\\s+finished\\s+job is cancelled$`, "m"));
  assert.match(dry.stdout, new RegExp(`^${missing}\\s+not found\\s+job not found$`, "m"));
  assert.equal(
    dry.stdout.trim().split("\n").at(-1),
    "dry run: 2 would cancel, 1 finished, 1 not found; nothing written",
  );
  assert.equal((await api("GET", `/job/${first}`)).status, "unprocessed");

  const done = await cli(["job", "cancel", ...ids, "--json"]);
  assert.equal(done.code, 0, done.stderr);
  const body = JSON.parse(done.stdout);
  assert.equal(body.dry_run, false);
  assert.deepEqual(
    body.results.map((r) => r.outcome),
    ["cancelled", "cancelled", "finished", "not_found"],
  );
  assert.equal((await api("GET", `/job/${second}`)).status, "cancelled");

  const byStatus = await cli(["job", "cancel", "--status", "unprocessed", "--dry-run", "--json"]);
  assert.equal(byStatus.code, 0, byStatus.stderr);
  assert.ok(JSON.parse(byStatus.stdout).results.every((r) => r.outcome.startsWith("would_")));
  assert.equal((await cli(["job", "cancel"])).code, 2);
  assert.equal((await cli(["job", "cancel", first, "--status", "failed"])).code, 2);
  assert.equal((await cli(["job", "cancel", first, second, "--limit", "1"])).code, 2);
});

test("job retry: --patch merges into the operation, --operation replaces it, --delay and --reset-attempts", async () => {
  const { job_id: id } = await api("POST", "/job", {
    operation: { type: "cli.patch", data: { keep: 1, drop: 2, nested: { a: 1 } }, tags: ["x"] },
    retry_policy: POLICY,
  });
  const patched = await cli([
    "job",
    "retry",
    id,
    "--patch",
    '{"data":{"drop":null,"nested":{"b":2}},"tags":["y"]}',
    "--delay",
    "600",
    "--json",
  ]);
  assert.equal(patched.code, 0, patched.stderr);
  const retry = await api("GET", `/job/${JSON.parse(patched.stdout).job_id}`);
  assert.deepEqual(retry.operation, {
    type: "cli.patch",
    data: { keep: 1, nested: { a: 1, b: 2 } },
    tags: ["y"],
  });
  assert.equal(retry.operation_changed, true);
  assert.equal(retry.attempt, 2);
  assert.equal(retry.retried_by, "manual");
  assert.ok(Date.parse(retry.not_before) > Date.now() + 500_000, retry.not_before);
  const shown = await cli(["job", "get", retry.id]);
  assert.match(shown.stdout, /^operation changed\s+yes/m);
  assert.match(shown.stdout, /^retried by\s+manual$/m);

  const replaced = await cli([
    "job",
    "retry",
    retry.id,
    "--operation",
    '{"type":"cli.other"}',
    "--reset-attempts",
    "--policy",
    "null",
    "--json",
  ]);
  assert.equal(replaced.code, 0, replaced.stderr);
  const fresh = await api("GET", `/job/${JSON.parse(replaced.stdout).job_id}`);
  assert.deepEqual(fresh.operation, { type: "cli.other" });
  assert.equal(fresh.attempt, 1);
  assert.equal(fresh.retry_policy, null);
  assert.equal(fresh.root_job_id, id);

  const invalid = await cli(["job", "retry", id, "--patch", '{"type":null}']);
  assert.equal(invalid.code, 1);
  assert.match(invalid.stderr, /^jobs: operation_patch leaves an invalid operation: /);
  const both = await cli(["job", "retry", id, "--operation", "{}", "--patch", "{}"]);
  assert.equal(both.code, 2);
  assert.equal(both.stderr.trim(), "jobs: give --operation or --patch, not both");
  assert.equal((await cli(["job", "retry", id, "--patch", "{data"])).code, 2);
  assert.equal((await cli(["job", "retry", id, "--delay", "1", "--not-before", "x"])).code, 2);
});

test("job list --exhausted: dead letters, shown as exhausted", async () => {
  const hostname = `cli-dead-${crypto.randomUUID().slice(0, 8)}`;
  await api("PUT", `/agent/${hostname}`, {});
  const { job_id: id } = await api("POST", "/job", {
    operation: { type: "fail", message: "no luck" },
    target_hostname: hostname,
    retry_policy: { ...POLICY, max_attempts: 1 },
  });
  // A claim hands out `_any` jobs too, oldest first: run the agent until it reaches this one.
  const failed = await until(async () => {
    const ran = await runScript("agent.mjs", ["--hostname", hostname, "--once", "--limit", "100"]);
    assert.equal(ran.code, 0, ran.stderr);
    return (await api("GET", `/job/${id}`)).status === "failed";
  }, 30);
  assert.ok(failed);
  const dead = await cli(["job", "list", "--exhausted", "--limit", "100"]);
  assert.equal(dead.code, 0, dead.stderr);
  assert.match(
    dead.stdout,
    new RegExp(`^${id}\\s+failed \\(exhausted\\)\\s+${hostname}\\s+fail\\s+1/1\\s`, "m"),
  );
  const json = JSON.parse((await cli(["job", "list", "--exhausted", "--json"])).stdout);
  assert.ok(json.items.every((job) => job.retries_exhausted));
  assert.match((await cli(["job", "get", id])).stdout, /^status\s+failed \(exhausted\)$/m);
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

  const port = new URL(BASE).port;
  const byPort = await cli(["job", "list", "--json"], { JOBS_URL: "", PORT: port });
  assert.equal(byPort.code, 0, "without JOBS_URL the CLI talks to http://127.0.0.1:$PORT");
  const badUrl = await cli(["job", "list"], { JOBS_URL: "127.0.0.1:8787" });
  assert.equal(badUrl.code, 2);
  assert.match(badUrl.stderr, /JOBS_URL is not an http\(s\) URL/);
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

/**
 * The reference agent for a hostname of its own, registered and stopped after test `t`; that
 * hostname. A long claim in flight outlives a killed agent by up to its --wait and may take an
 * `_any` job meanwhile, so stopping waits that out before the next test submits any.
 */
async function agentFor(t, what, args = []) {
  const hostname = `cli-${what}-${crypto.randomUUID().slice(0, 8)}`;
  const { key } = await api("POST", "/keys", {
    name: "cli-watch",
    scopes: ["agent:write"],
    agent_hostnames: [hostname],
  });
  const agent = startAgent(["--hostname", hostname, "--wait", "1", ...args], key);
  t.after(async () => {
    await agent.stop();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
  });
  const registered = () => agent.output().stderr.includes(`${hostname} registered`);
  assert.ok(await until(registered, 30), `the agent did not register: ${agent.output().stderr}`);
  return hostname;
}

const ndjson = (stdout) =>
  stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
const EVENT_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ {2}(\S+) +(\S+) {2,}(.+)$/;
/** The event names of `job watch` lines, with `job <id>` where the retry chain moves on. */
const watched = (stdout) =>
  stdout
    .trim()
    .split("\n")
    .map((line) => EVENT_LINE.exec(line)?.[1] ?? line);

test("job watch: each event as the agent runs the job, in order, to completed, exit 0; --json is NDJSON", async (t) => {
  const hostname = await agentFor(t, "watch");
  const { job_id: id } = await api("POST", "/job", {
    operation: { type: "echo", data: { n: 1 } },
    target_hostname: hostname,
    delay_seconds: 2,
  });
  const live = await cli(["job", "watch", id]);
  assert.equal(live.code, 0, live.stderr);
  assert.deepEqual(watched(live.stdout), [
    "submitted",
    "acknowledged",
    "started",
    "completed",
    `job ${id} completed`,
  ]);
  assert.match(
    live.stdout,
    new RegExp(`^\\S+ \\S+ {2}started {7}${hostname} +Job processing started on ${hostname}$`, "m"),
  );

  const json = await cli(["job", "watch", id, "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const lines = ndjson(json.stdout);
  assert.deepEqual(lines.at(-1), { job_id: id, status: "completed" });
  const events = lines.slice(0, -1);
  assert.deepEqual(
    events.map((e) => e.event),
    ["submitted", "acknowledged", "started", "completed"],
  );
  assert.ok(events.every((e) => e.job_id === id && typeof e.id === "string" && e.timestamp));
  assert.deepEqual(events[3].data, { result: { n: 1 }, changed: false });
});

test("job create --watch: a job that fails ends the watch with exit 1", async (t) => {
  const hostname = await agentFor(t, "fail");
  const failed = await cli([
    "job",
    "create",
    "--operation",
    '{"type":"fail","message":"no luck"}',
    "--target",
    hostname,
    "--watch",
  ]);
  assert.equal(failed.code, 1, failed.stderr);
  const [created, ...rest] = failed.stdout.trim().split("\n");
  const id = new RegExp(`^created (${UUID.source}) \\(status unprocessed, revision \\d+\\)$`).exec(
    created,
  )?.[1];
  assert.ok(id, created);
  assert.deepEqual(watched(rest.join("\n")), [
    "submitted",
    "acknowledged",
    "started",
    "failed",
    `job ${id} failed`,
  ]);
  assert.match(
    failed.stdout,
    new RegExp(`failed {8}${hostname} +Job failed on ${hostname}: no luck$`, "m"),
  );
  assert.equal((await api("GET", `/job/${id}`)).status, "failed");
});

test("job retry --watch: follows the retry and its automatic retries to the end", async (t) => {
  const hostname = await agentFor(t, "retry", ["--fail-first", "2:echo"]);
  const { job_id: id } = await api("POST", "/job", {
    operation: { type: "echo" },
    target_hostname: hostname,
  });
  assert.ok(await until(async () => (await api("GET", `/job/${id}`)).status === "failed", 30));
  const policy = { max_attempts: 3, backoff: "fixed", delay_seconds: 1, jitter: "none" };
  const retried = await cli([
    "job",
    "retry",
    id,
    "--target",
    hostname,
    "--policy",
    JSON.stringify(policy),
    "--watch",
  ]);
  assert.equal(retried.code, 0, retried.stderr);
  const [first, ...rest] = retried.stdout.trim().split("\n");
  const second = new RegExp(`^retried ${id} as (${UUID.source}) \\(status unprocessed`).exec(
    first,
  )?.[1];
  assert.ok(second, first);
  const third = (await api("GET", `/job/${second}`)).retried_as?.[0];
  assert.ok(third);
  assert.deepEqual(watched(rest.join("\n")), [
    "submitted",
    "acknowledged",
    "started",
    "failed",
    "retried",
    `job ${third} (retry of ${second})`,
    "submitted",
    "acknowledged",
    "started",
    "completed",
    `job ${third} completed`,
  ]);

  const json = await cli(["job", "retry", third, "--target", hostname, "--watch", "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const lines = ndjson(json.stdout);
  assert.equal(lines[0].status, "unprocessed");
  assert.deepEqual(lines.at(-1), { job_id: lines[0].job_id, status: "completed" });
  assert.ok(lines.slice(1, -1).every((e) => e.job_id === lines[0].job_id && e.event));
});

test("job watch --follow: from the first job of a chain to the end of it", async (t) => {
  const hostname = await agentFor(t, "follow", ["--fail-first", "1:echo"]);
  const created = await cli([
    "job",
    "create",
    "--type",
    "echo",
    "--target",
    hostname,
    "--policy",
    '{"max_attempts":2,"backoff":"fixed","delay_seconds":1,"jitter":"none"}',
    "--json",
  ]);
  assert.equal(created.code, 0, created.stderr);
  const { job_id: id } = JSON.parse(created.stdout);
  const followed = await cli(["job", "watch", id, "--follow", "--json"]);
  assert.equal(followed.code, 0, followed.stderr);
  const lines = ndjson(followed.stdout);
  const end = lines.at(-1);
  assert.notEqual(end.job_id, id);
  assert.equal(end.status, "completed");
  assert.deepEqual(
    lines.slice(0, -1).map((e) => `${e.job_id === id ? 1 : 2}:${e.event}`),
    [
      "1:submitted",
      "1:acknowledged",
      "1:started",
      "1:failed",
      "1:retried",
      "2:submitted",
      "2:acknowledged",
      "2:started",
      "2:completed",
    ],
  );
  const alone = await cli(["job", "watch", id]);
  assert.equal(alone.code, 1, "without --follow the watch ends with the first job, failed");
  assert.equal(alone.stdout.trim().split("\n").at(-1), `job ${id} failed`);
});

/**
 * A proxy to the Worker that cuts its first stream in the middle of the second message, as a
 * dropped connection does; `lastEventIds` are the Last-Event-ID headers of the requests it saw.
 */
async function cuttingProxy() {
  const lastEventIds = [];
  const server = createServer(async (req, res) => {
    lastEventIds.push(req.headers["last-event-id"]);
    const headers = { authorization: req.headers.authorization, accept: req.headers.accept };
    if (req.headers["last-event-id"]) headers["last-event-id"] = req.headers["last-event-id"];
    const upstream = await fetch(`${BASE}${req.url}`, { headers });
    const body = await upstream.text();
    res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") });
    if (lastEventIds.length > 1) return res.end(body);
    res.write(body.slice(0, body.indexOf("\n\n") + 12), () => res.destroy());
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    lastEventIds,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

test("job watch: a dropped stream is resumed after the last event, nothing missed or repeated", async () => {
  const id = await createJob("cli.watch.resume");
  await cli(["job", "cancel", id]);
  const direct = await cli(["job", "watch", id, "--json"]);
  assert.equal(direct.code, 1, direct.stderr);
  const proxy = await cuttingProxy();
  try {
    const resumed = await cli(["job", "watch", id, "--json"], { JOBS_URL: proxy.url });
    assert.equal(resumed.code, 1, resumed.stderr);
    assert.equal(resumed.stdout, direct.stdout);
    const first = JSON.parse(direct.stdout.split("\n")[0]);
    assert.deepEqual(proxy.lastEventIds, [undefined, first.id]);
  } finally {
    await proxy.close();
  }
});

test("job watch: a deleted job ends it with exit 1; Ctrl-C exits 130; usage errors exit 2", async () => {
  const later = { delay_seconds: 600 };
  const { job_id: deleted } = await api("POST", "/job", {
    operation: { type: "cli.watch.deleted" },
    ...later,
  });
  const watching = startScript("jobs-cli.mjs", ["job", "watch", deleted]);
  assert.ok(await until(() => watching.output().stdout.includes("submitted"), 30));
  await api("DELETE", `/job/${deleted}`);
  assert.equal(await watching.exited, 1);
  assert.equal(watching.output().stdout.trim().split("\n").at(-1), `job ${deleted} deleted`);

  const { job_id: waiting } = await api("POST", "/job", {
    operation: { type: "cli.watch.interrupted" },
    ...later,
  });
  const interrupted = startScript("jobs-cli.mjs", ["job", "watch", waiting]);
  assert.ok(await until(() => interrupted.output().stdout.includes("submitted"), 30));
  assert.equal(await interrupted.stop("SIGINT"), 130);
  assert.equal(interrupted.output().stderr, "");
  await cli(["job", "cancel", waiting]);

  assert.equal((await cli(["job", "watch"])).code, 2);
  assert.equal((await cli(["job", "create"])).code, 2);
  const both = await cli(["job", "create", "--type", "echo", "--operation", '{"type":"echo"}']);
  assert.equal(both.code, 2);
  assert.equal(both.stderr.trim(), "jobs: give --type (with --data) or --operation, not both");
  assert.equal((await cli(["job", "create", "--type", "echo", "--data", "{x"])).code, 2);
});

test("job create: --type and --data make the operation, to _any unless --target", async () => {
  const created = await cli(["job", "create", "--type", "cli.create", "--data", '{"n":2}']);
  assert.equal(created.code, 0, created.stderr);
  const match = new RegExp(
    `^created (${UUID.source}) \\(status unprocessed, revision \\d+\\)$`,
  ).exec(created.stdout.trim());
  assert.ok(match, created.stdout);
  const job = await api("GET", `/job/${match[1]}`);
  assert.deepEqual(job.operation, { type: "cli.create", data: { n: 2 } });
  assert.equal(job.target_hostname, "_any");
  await cli(["job", "cancel", match[1]]);
});
