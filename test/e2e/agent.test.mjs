// The agent walkthrough of README.md and docs/agents.md, against the running Worker: an admin
// makes a key for one hostname, the reference agent registers with it (another key is refused),
// fails a job, the operator retries it with the CLI, and the agent completes the retry.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { api, BASE, runScript } from "./helpers.mjs";

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
  const file = fileURLToPath(new URL("../../scripts/agent.mjs", import.meta.url));
  const agent = spawn(process.execPath, [file, "--hostname", hostname], {
    env: { PATH: process.env.PATH, JOBS_URL: BASE, JOBS_API_KEY: key },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  agent.stdout.on("data", (chunk) => {
    stdout += chunk;
  });
  agent.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((resolve) => agent.once("exit", resolve));
  const until = async (what, seconds) => {
    for (let i = 0; i < seconds * 20; i++) {
      if (what()) return true;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return false;
  };
  try {
    assert.ok(await until(() => stderr.includes("registered"), 10), stderr);
    // Registered, then waiting in its claim: give the claim a moment to reach the object.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sent = Date.now();
    const { job_id } = await api("POST", "/job", {
      operation: { type: "echo", data: "woken" },
      target_hostname: hostname,
    });
    assert.ok(await until(() => stdout.includes(job_id), 5), `${stdout}\n${stderr}`);
    const ran = Date.now() - sent;
    assert.ok(ran < 3000, `the job ran ${ran} ms after it was submitted`);
    const job = await api("GET", `/job/${job_id}`);
    assert.equal(job.status, "completed");
    assert.equal(job.result, "woken");

    const stopped = Date.now();
    agent.kill("SIGINT");
    await exited;
    assert.ok(Date.now() - stopped < 3000, "a stop does not wait out the long claim");
  } finally {
    agent.kill("SIGKILL");
  }
});
