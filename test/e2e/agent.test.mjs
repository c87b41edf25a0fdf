// The agent walkthrough of README.md and docs/agents.md, against the running Worker: an admin
// makes a key for one hostname, the reference agent registers with it (another key is refused),
// fails a job, the operator retries it with the CLI, and the agent completes the retry. Then
// docs/retries.md's: automatic retries until an attempt completes, and cancel of a waiting and of
// a held job.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { api, runScript, startAgent, until } from "./helpers.mjs";

const run = (name, args, key) => runScript(name, args, { JOBS_API_KEY: key });

test("a job fails on the agent, is retried from the CLI, and the retry completes", async () => {
  const hostname = `e2e-${crypto.randomUUID().slice(0, 8)}`;
  const { key } = await api("POST", "/keys", {
    name: "e2e-agent",
    scopes: ["job:read", "job:write", "agent:read", "agent:write"],
    agent_hostnames: [hostname],
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), "agent-e2e-"));
  const file = path.join(dir, "motd");
  /** One claim of everything due, run and reported, as the README's walkthrough does. */
  const runAgentOnce = () =>
    run("agent.mjs", ["--hostname", hostname, "--once", "--limit", "100", "--cat-root", dir], key);
  try {
    const registered = await run("agent.mjs", ["--hostname", hostname, "--once"], key);
    assert.equal(registered.code, 0, registered.stderr);
    const agents = await api("GET", "/agent");
    assert.equal(
      agents.items.find((agent) => agent.hostname === hostname)?.owner_key_prefix,
      key.slice(0, 17),
    );
    const { key: other } = await api("POST", "/keys", { name: "other", scopes: ["agent:write"] });
    const refused = await run("agent.mjs", ["--hostname", hostname, "--once"], other);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`agent ${hostname} belongs to another key`));
    const elsewhere = await run("agent.mjs", ["--hostname", "web-99", "--once"], key);
    assert.equal(elsewhere.code, 1);
    assert.match(elsewhere.stderr, /this key may not act as agent web-99/);

    const { job_id } = await api("POST", "/job", {
      operation: { type: "cat", path: "motd" },
      target_hostname: hostname,
    });
    const { job_id: snoop } = await api("POST", "/job", {
      operation: { type: "cat", path: "/proc/self/environ" },
      target_hostname: hostname,
    });
    const failed = await runAgentOnce();
    assert.equal(failed.code, 0, failed.stderr);
    const original = await api("GET", `/job/${job_id}`);
    assert.equal(original.status, "failed");
    assert.match(original.error, /cannot read motd: ENOENT/);
    const snooped = await api("GET", `/job/${snoop}`);
    assert.equal(snooped.status, "failed");
    assert.equal(snooped.error, "/proc/self/environ is outside --cat-root");
    assert.deepEqual(
      original.timeline.map((entry) => entry.event),
      ["submitted", "acknowledged", "started", "failed"],
    );

    writeFileSync(file, "hello from the agent\n");
    const retried = await run(
      "jobs-cli.mjs",
      ["job", "retry", job_id, "--target", hostname, "--json"],
      key,
    );
    assert.equal(retried.code, 0, retried.stderr);
    const newId = JSON.parse(retried.stdout).job_id;

    const completed = await runAgentOnce();
    assert.equal(completed.code, 0, completed.stderr);
    const retry = await api("GET", `/job/${newId}`);
    assert.equal(retry.status, "completed");
    assert.equal(retry.retry_of, job_id);
    assert.equal(retry.hostname, hostname);
    assert.equal(retry.result.content, "hello from the agent\n");
    assert.equal(retry.result.path, "motd");
    assert.equal(
      (await api("GET", `/job/${job_id}`)).status,
      "failed",
      "the original is untouched",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a running agent waits in a long claim: a job submitted to it runs at once, and a stop ends the wait", async () => {
  const hostname = `e2e-wait-${crypto.randomUUID().slice(0, 8)}`;
  const { key } = await api("POST", "/keys", {
    name: "e2e-wait",
    scopes: ["agent:write"],
    agent_hostnames: [hostname],
  });
  const agent = startAgent(["--hostname", hostname], key);
  const printed = () => `${agent.output().stdout}\n${agent.output().stderr}`;
  try {
    assert.ok(await until(() => agent.output().stderr.includes("registered"), 10), printed());
    // Registered, then waiting in its claim: give the claim a moment to reach the object.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sent = Date.now();
    const { job_id } = await api("POST", "/job", {
      operation: { type: "echo", data: "woken" },
      target_hostname: hostname,
    });
    assert.ok(await until(() => agent.output().stdout.includes(job_id), 5), printed());
    const ran = Date.now() - sent;
    assert.ok(ran < 3000, `the job ran ${ran} ms after it was submitted`);
    const job = await api("GET", `/job/${job_id}`);
    assert.equal(job.status, "completed");
    assert.equal(job.result, "woken");

    const stopped = Date.now();
    await agent.stop("SIGINT");
    assert.ok(Date.now() - stopped < 3000, "a stop does not wait out the long claim");
  } finally {
    await agent.stop();
  }
});

/** A hostname and a key that may act only as it, for one agent of one test. */
async function agentKey(name) {
  const hostname = `e2e-${name}-${crypto.randomUUID().slice(0, 8)}`;
  const { key } = await api("POST", "/keys", {
    name: `e2e-${name}`,
    scopes: ["agent:write"],
    agent_hostnames: [hostname],
  });
  return { hostname, key };
}

const FIXED_1S = { max_attempts: 3, backoff: "fixed", delay_seconds: 1, jitter: "none" };

/** The jobs of a retry chain, oldest first, in full. */
async function chainOf(root) {
  const page = await api("GET", `/job?root_job_id=${root}&limit=100`);
  return Promise.all(page.items.reverse().map((job) => api("GET", `/job/${job.id}`)));
}

test("docs/retries.md's walkthrough: max_attempts 3 fails twice on the agent, is retried automatically, and completes at attempt 3", async () => {
  const { hostname, key } = await agentKey("retry");
  const agent = startAgent(["--hostname", hostname, "--fail-first", "2:echo"], key);
  try {
    assert.ok(await until(() => agent.output().stderr.includes("registered"), 10));
    const { job_id: root } = await api("POST", "/job", {
      operation: { type: "echo", data: "third time lucky" },
      target_hostname: hostname,
      retry_policy: FIXED_1S,
    });
    const done = await until(async () => {
      const page = await api("GET", `/job?root_job_id=${root}&status=completed`);
      return page.items.length > 0;
    }, 30);
    assert.ok(done, `${agent.output().stdout}\n${agent.output().stderr}`);
    const chain = await chainOf(root);
    assert.deepEqual(
      chain.map((job) => [job.attempt, job.status, job.retried_by, job.retries_exhausted]),
      [
        [1, "failed", null, false],
        [2, "failed", "automatic", false],
        [3, "completed", "automatic", false],
      ],
    );
    const [first, second, third] = chain;
    assert.equal(first.error, "attempt 1 failed on purpose (--fail-first 2:echo)");
    assert.equal(second.error, "attempt 2 failed on purpose (--fail-first 2:echo)");
    assert.equal(third.result, "third time lucky");
    assert.deepEqual(third.retry_policy, {
      ...FIXED_1S,
      max_delay_seconds: 3600,
      retry_on: ["failed"],
    });
    for (const [before, after] of [
      [first, second],
      [second, third],
    ]) {
      assert.equal(after.retry_of, before.id);
      assert.equal(after.root_job_id, root);
      assert.deepEqual(before.retried_as, [after.id]);
      assert.deepEqual(
        before.timeline.map((entry) => entry.event),
        ["submitted", "acknowledged", "started", "failed", "retried"],
      );
      const retried = before.timeline.at(-1);
      assert.match(retried.message, new RegExp(`^Job retried automatically as ${after.id} after `));
      // The wait is the policy's, and no claim handed the next attempt out before it.
      const wait = Date.parse(after.not_before) - Date.parse(after.created);
      assert.ok(Math.abs(wait - 1000) <= 1, `waited ${wait} ms`);
      const handedOut = after.timeline.find((entry) => entry.event === "acknowledged");
      assert.ok(Date.parse(handedOut.timestamp) >= Date.parse(after.not_before));
    }
    // The agent may also have run `_any` jobs other tests left behind.
    const lines = agent.output().stdout.split("\n");
    assert.deepEqual(
      chain.map((job) => lines.find((line) => line.includes(job.id))),
      [
        `${hostname} ${first.id} echo: failed: attempt 1 failed on purpose (--fail-first 2:echo) (job failed)`,
        `${hostname} ${second.id} echo: failed: attempt 2 failed on purpose (--fail-first 2:echo) (job failed)`,
        `${hostname} ${third.id} echo: completed (job completed)`,
      ],
    );

    const listed = await runScript("jobs-cli.mjs", ["job", "list", "--root", root]);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = listed.stdout.split("\n").filter((line) => line.includes(hostname));
    assert.equal(rows.length, 3, listed.stdout);
    assert.match(rows[0], new RegExp(`^${third.id}\\s+completed\\s+${hostname}\\s+echo\\s+3/3\\s`));
    assert.match(rows[2], new RegExp(`^${root}\\s+failed\\s+${hostname}\\s+echo\\s+1/3\\s+-\\s`));
  } finally {
    await agent.stop();
  }
});

test("an automatic attempt waiting for its time is cancelled from the CLI, and the chain stops there", async () => {
  const { hostname, key } = await agentKey("cancel-wait");
  const runOnce = () =>
    run("agent.mjs", ["--hostname", hostname, "--once", "--fail-first", "1:echo"], key);
  assert.equal((await runOnce()).code, 0);
  const { job_id: root } = await api("POST", "/job", {
    operation: { type: "echo", data: "never" },
    target_hostname: hostname,
    retry_policy: { ...FIXED_1S, delay_seconds: 600 },
  });
  const failed = await runOnce();
  assert.equal(failed.code, 0, failed.stderr);
  const [first, second] = await chainOf(root);
  assert.equal(first.status, "failed");
  assert.equal(second.retried_by, "automatic");

  const waiting = await runScript("jobs-cli.mjs", [
    "job",
    "list",
    "--due",
    "false",
    "--root",
    root,
  ]);
  assert.equal(waiting.code, 0, waiting.stderr);
  assert.match(
    waiting.stdout,
    new RegExp(`^${second.id}\\s+unprocessed\\s+${hostname}\\s+echo\\s+2/3\\s+\\d{4}-`, "m"),
  );
  const cancelled = await runScript("jobs-cli.mjs", ["job", "cancel", second.id]);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  assert.match(cancelled.stdout, new RegExp(`^cancelled ${second.id} `));

  assert.equal((await runOnce()).code, 0);
  const chain = await chainOf(root);
  assert.deepEqual(
    chain.map((job) => [job.attempt, job.status]),
    [
      [1, "failed"],
      [2, "cancelled"],
    ],
  );
  assert.deepEqual(
    chain[1].timeline.map((entry) => entry.event),
    ["submitted", "cancelled"],
  );
});

test("a job the agent holds is cancelled: the agent stops it, says so in one line, and goes on", async () => {
  const { hostname, key } = await agentKey("cancel-held");
  const agent = startAgent(["--hostname", hostname, "--lease", "6"], key);
  try {
    assert.ok(await until(() => agent.output().stderr.includes("registered"), 10));
    const { job_id: id } = await api("POST", "/job", {
      operation: { type: "sleep", seconds: 60 },
      target_hostname: hostname,
    });
    const started = async () =>
      (await api("GET", `/job/${id}`)).timeline.some((entry) => entry.event === "started");
    assert.ok(await until(started, 10));
    const asked = await runScript("jobs-cli.mjs", ["job", "cancel", id]);
    assert.equal(asked.code, 0, asked.stderr);
    assert.match(asked.stdout, new RegExp(`^cancel requested for ${id}: an agent holds it`));
    assert.equal((await api("GET", `/job/${id}`)).status, "processing");

    const line = `${hostname} ${id} sleep: stopped: the job was cancelled`;
    assert.ok(
      await until(() => agent.output().stdout.includes(line), 10),
      `${agent.output().stdout}\n${agent.output().stderr}`,
    );
    const job = await api("GET", `/job/${id}`);
    assert.equal(job.status, "cancelled");
    assert.deepEqual(job.timeline.map((entry) => entry.event).slice(-3), [
      "cancel_requested",
      "skipped",
      "cancelled",
    ]);
    assert.equal(agent.output().stderr.trim().split("\n").length, 1, agent.output().stderr);

    const { job_id: next } = await api("POST", "/job", {
      operation: { type: "echo", data: "still here" },
      target_hostname: hostname,
    });
    assert.ok(await until(() => agent.output().stdout.includes(`${next} echo: completed`), 10));
  } finally {
    await agent.stop();
  }
});
