// npm run retention against the e2e server's database: the cron's handler, run by hand.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { wrangler, wranglerEnv } from "../../scripts/wrangler-env.mjs";
import { api, BASE } from "./helpers.mjs";

const root = fileURLToPath(new URL("../..", import.meta.url));
const state = process.env.E2E_STATE_DIR;

function retention() {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["scripts/retention.mjs"],
      { cwd: root, env: { ...process.env, JOBS_STATE_DIR: state }, timeout: 120_000 },
      (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr }),
    );
  });
}

test("npm run retention runs the scheduled handler on the local database", async () => {
  const old = await api("POST", "/job", { operation: { type: "retention-e2e" } });
  const fresh = await api("POST", "/job", { operation: { type: "retention-e2e" } });
  execFileSync(
    wrangler,
    [
      "d1",
      "execute",
      "DB",
      "--local",
      "--persist-to",
      state,
      "--command",
      `UPDATE jobs SET created_at = '2000-01-01T00:00:00.000Z' WHERE id = '${old.job_id}'`,
    ],
    { cwd: root, env: wranglerEnv(), stdio: "pipe" },
  );

  const run = await retention();
  assert.equal(run.code, 0, run.stderr);
  const line = JSON.parse(run.stdout.trim());
  assert.equal(line.event, "retention");
  assert.ok(line.jobs >= 1, run.stdout);

  const gone = await fetch(`${BASE}/job/${old.job_id}`, {
    headers: { Authorization: `Bearer ${process.env.E2E_ADMIN_KEY}` },
  });
  assert.equal(gone.status, 404);
  assert.equal((await api("GET", `/job/${fresh.job_id}`)).id, fresh.job_id);
});
