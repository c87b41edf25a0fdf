// What the console's browser tests share: axe-core run on the page, and a failed job to act on.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { api } from "../e2e/helpers.mjs";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/** A job with `operation` for `hostname`, which that agent claimed and reported failed with `error`. */
export async function failedJobOn(hostname, operation, error) {
  const { job_id } = await api("POST", "/job", { operation, target_hostname: hostname });
  const { jobs } = await api("POST", `/agent/${hostname}/claim`, { limit: 100 });
  const lease = jobs.find((job) => job.id === job_id)?.lease_token;
  assert.ok(lease, "the agent claimed the job");
  await api("POST", `/agent/${hostname}/job/${job_id}/event`, {
    event: "failed",
    lease_token: lease,
    error,
  });
  return job_id;
}

/** Fails on any axe-core violation on the page as it is now. */
export async function assertNoAxeViolations(page, what) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const { violations } = await window.axe.run(document);
    return violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  assert.deepEqual(violations, [], `axe on ${what}`);
}
