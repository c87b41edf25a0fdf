// What the console's browser tests share: Debian's Chromium, and axe-core on the page shown.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";
import { api } from "../e2e/helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/** A headless Chromium and a page in it; page errors are pushed onto `pageErrors`. */
export async function openBrowser(viewport, pageErrors) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(error.message));
  return { browser, page };
}

/** Fails on any axe-core violation on the page as it is now. */
export async function noAxeViolations(page, what) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const { violations } = await window.axe.run(document);
    return violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  assert.deepEqual(violations, [], `axe on ${what}`);
}

/**
 * A job per operation for `hostname`, each claimed by its agent and, when `error` is given,
 * reported failed with it; their ids, oldest first.
 */
export async function claimedJobs(hostname, operations, error) {
  const ids = [];
  for (const operation of operations)
    ids.push((await api("POST", "/job", { operation, target_hostname: hostname })).job_id);
  const { jobs } = await api("POST", `/agent/${hostname}/claim`, { limit: 100 });
  for (const id of ids) {
    const lease = jobs.find((job) => job.id === id)?.lease_token;
    assert.ok(lease, `the agent claimed ${id}`);
    if (error !== undefined)
      await api("POST", `/agent/${hostname}/job/${id}/event`, {
        event: "failed",
        lease_token: lease,
        error,
      });
  }
  return ids;
}
