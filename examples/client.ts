// The typed client end to end: create a job, retry it, and watch the retry until it finishes or
// the timeout passes. JOBS_URL (default http://127.0.0.1:$PORT, PORT 8787) and JOBS_API_KEY (a
// key with job:read and job:write). Exit codes: 0 finished, 1 the API refused, 3 timed out.
import { createClient } from "../src/client";

const FINISHED = new Set(["completed", "failed", "partial_failure", "skipped"]);

const timeoutFlag = process.argv.indexOf("--timeout");
const timeoutSeconds = Number(timeoutFlag === -1 ? 30 : process.argv[timeoutFlag + 1]);
const url = process.env.JOBS_URL?.trim() || `http://127.0.0.1:${process.env.PORT?.trim() || 8787}`;
const key = process.env.JOBS_API_KEY?.trim();
if (!key || !(timeoutSeconds > 0)) {
  console.error("usage: JOBS_API_KEY=<key> npm run example:client [-- --timeout SECONDS]");
  process.exit(2);
}

const api = createClient(url, key);

function refused(what: string, status: number, body: unknown): never {
  console.error(`${what}: ${status} ${JSON.stringify(body)}`);
  process.exit(1);
}

const created = await api.job.$post({
  header: {},
  json: { operation: { type: "echo", data: "hello from the typed client" } },
});
if (created.status !== 201) refused("create", created.status, await created.json());
const job = await created.json();
console.log(`created ${job.job_id} (revision ${job.revision})`);

const retried = await api.job[":id"].retry.$post({
  param: { id: job.job_id },
  header: {},
  json: { target_hostname: "_any" },
});
if (retried.status !== 201) refused("retry", retried.status, await retried.json());
const retry = await retried.json();

const deadline = Date.now() + timeoutSeconds * 1000;
let shown = false;
while (true) {
  const got = await api.job[":id"].$get({ param: { id: retry.job_id }, header: {} });
  if (got.status !== 200) refused("get", got.status, await got.json());
  const current = await got.json();
  if (!shown) {
    console.log(`retried as ${current.id} (attempt ${current.attempt})`);
    shown = true;
  }
  if (FINISHED.has(current.status)) {
    const detail = current.error ?? JSON.stringify(current.result ?? null);
    console.log(`${current.id} attempt ${current.attempt}: ${current.status}, ${detail}`);
    break;
  }
  if (Date.now() >= deadline) {
    console.log(
      `${current.id} still ${current.status} after ${timeoutSeconds} s: no agent took it`,
    );
    process.exit(3);
  }
  await new Promise((resolve) => setTimeout(resolve, 250));
}
