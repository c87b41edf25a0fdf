// What the browser tests share: Debian's Chromium with one page, axe-core run on the page, and a
// failed job to act on.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";
import { ADMIN, api, BASE } from "../e2e/helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/**
 * A headless browser and one page in it, `height` pixels tall and with `permissions` granted to
 * the service's origin; `pageErrors` collects the page's uncaught errors.
 */
export async function openPage({ height = 800, permissions = [] } = {}) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height } });
  if (permissions.length > 0)
    await context.grantPermissions(permissions, { origin: process.env.E2E_URL });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  return { browser, page, pageErrors };
}

/** Opens the console and signs in with `key`; waits for the header to name the key as `shown`. */
export async function signIn(page, key = ADMIN, shown = "e2e-admin (admin)") {
  await page.goto(`${BASE}/console/#/jobs`);
  await page.getByLabel("API key").fill(key);
  await page.keyboard.press("Enter");
  await page.getByText(`Signed in as ${shown}`).waitFor();
}

/** A job with `operation` for `hostname`, which that agent claimed and reported failed with `error`. */
export async function failedJobOn(hostname, operation, error) {
  return (await claimedJobs(hostname, [operation], error))[0];
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
