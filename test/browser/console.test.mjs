// The operator console at /console, driven in Debian's Chromium: sign in, filter to failed, open a
// job, retry it to an agent, follow the lineage to the new job, bulk retry with its dry run, cancel
// and delete, a 401 back to sign-in; axe-core finds no violation on any page. SCREENSHOTS_DIR
// (npm run screenshots: docs) takes the pictures.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ADMIN, api, BASE, useOwnAdminKey } from "../e2e/helpers.mjs";
import { assertNoAxeViolations, claimedJobs, failedJobOn, openPage } from "./helpers.mjs";

const shots =
  process.env.SCREENSHOTS_DIR ?? fileURLToPath(new URL("../../test-results/", import.meta.url));
const hostname = `console-${randomUUID().slice(0, 8)}`;
/** Another agent, on another host: where the failed job is retried. */
const other = `console-other-${randomUUID().slice(0, 8)}`;

let browser;
let page;
let failedId;
let pageErrors;

const failedJob = () =>
  failedJobOn(
    hostname,
    { type: "service.restart", data: { unit: "nginx" } },
    "unit nginx.service not found",
  );
const noAxeViolations = (what) => assertNoAxeViolations(page, what);

async function screenshot(name) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, name) });
}

before(async () => {
  assert.ok(BASE && ADMIN, "run through scripts/e2e-test.mjs (E2E_URL, E2E_ADMIN_KEY)");
  await useOwnAdminKey("e2e-console");
  await api("PUT", `/agent/${hostname}`, { labels: { group: "console.test" } });
  await api("PUT", `/agent/${other}`, { labels: { group: "console.other" } });
  // A few jobs around the one the tests act on, so the table (and its screenshot) has company.
  await api("POST", "/job", { operation: { type: "node.uptime.get" }, target_hostname: "_any" });
  await claimedJobs(other, [{ type: "node.disk.get", data: { path: "/var" } }]);
  await failedJobOn(
    other,
    { type: "package.install", data: { name: "nginx-extras" } },
    "E: Unable to locate package nginx-extras",
  );
  failedId = await failedJob();
  ({ browser, page, pageErrors } = await openPage());
});

after(async () => {
  await browser?.close();
});

test("/console is served without a key and asks for one", async () => {
  const response = await page.goto(`${BASE}/console`);
  assert.equal(response?.status(), 200);
  assert.equal(await page.title(), "Job console");
  await page.getByLabel("API key").waitFor();
  await noAxeViolations(page, "sign-in");
});

test("a wrong key is refused in plain words and nothing is kept", async () => {
  await page.getByLabel("API key").fill("jobs_wrongwrongwron_notakey");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "invalid API key" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
});

test("sign in, filter to failed, open the failed job, retry it on another agent, follow the lineage", async () => {
  await page.getByLabel("API key").fill(ADMIN);
  await page.keyboard.press("Enter");
  await page.getByText("Signed in as e2e-admin (admin)").waitFor();
  assert.equal(await page.evaluate(() => document.cookie), "");
  assert.equal(await page.evaluate(() => localStorage.length), 0);

  const { total_items: failed } = await api("GET", "/job?status=failed&limit=1");
  await page.getByRole("button", { name: /^failed \d+$/ }).click();
  await page.getByText(`Matching jobs: ${failed}`).waitFor();
  const row = page.locator("tbody tr", { hasText: failedId });
  await row.waitFor();
  assert.equal(await page.locator("tbody tr").filter({ hasNotText: "failed" }).count(), 0);
  await noAxeViolations(page, "jobs table");
  await screenshot("console-jobs.png");

  await row.getByRole("link", { name: failedId }).click();
  await page.getByRole("heading", { name: `Job ${failedId}` }).waitFor();
  await page.getByText("unit nginx.service not found").first().waitFor();
  assert.match(await page.locator("pre.json").textContent(), /"unit": "nginx"/);

  await page.getByLabel("Retry on").selectOption(other);
  await page.getByRole("button", { name: "Retry", exact: true }).click();
  const link = page.getByRole("status").getByRole("link");
  await link.waitFor();
  const newId = await link.textContent();
  assert.notEqual(newId, failedId);
  await page.getByRole("link", { name: `retried as ${newId} →` }).waitFor();
  await noAxeViolations(page, "job page");
  await screenshot("console-job.png");

  await link.click();
  await page.getByRole("heading", { name: `Job ${newId}` }).waitFor();
  await page.getByRole("link", { name: `← retry of ${failedId}` }).waitFor();
  const job = await api("GET", `/job/${newId}`);
  assert.equal(job.retry_of, failedId);
  assert.equal(job.target_hostname, other);
  assert.equal(job.attempt, 2);
});

test("a double click on Retry sends one request and makes one job", async () => {
  const id = await failedJob();
  await page.goto(`${BASE}/console/#/job/${id}`);
  await page.getByRole("heading", { name: `Job ${id}` }).waitFor();
  const posts = [];
  const onRequest = (request) => {
    if (request.method() === "POST" && new URL(request.url()).pathname === `/job/${id}/retry`)
      posts.push(request);
  };
  page.on("request", onRequest);
  // Two clicks in one task: the second comes before any render could disable the button.
  await page
    .getByRole("button", { name: "Retry", exact: true })
    .evaluate((button) => [button.click(), button.click()]);
  await page.getByRole("status").getByRole("link").waitFor();
  await page.waitForTimeout(500);
  page.off("request", onRequest);
  assert.equal(posts.length, 1);
  assert.equal((await api("GET", `/job/${id}`)).retried_as.length, 1);
});

test("bulk retry of the failed jobs: the dry run first, then a result per job", async () => {
  const more = [await failedJob(), await failedJob()];
  const { total_items } = await api("GET", "/job?status=failed&limit=1");
  const expected = Math.min(total_items, 100);
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await page.getByRole("button", { name: /^failed \d+$/ }).click();
  await page.getByRole("button", { name: "Dry run" }).click();
  await page
    .getByRole("status")
    .filter({ hasText: `Dry run: ${expected} of the oldest failed jobs` })
    .waitFor();
  assert.equal((await api("GET", "/job?status=failed&limit=1")).total_items, total_items);
  await noAxeViolations(page, "bulk retry dry run");

  await page.getByRole("button", { name: `Retry ${expected} jobs` }).click();
  await page
    .getByRole("status")
    .filter({ hasText: `Retried ${expected} jobs.` })
    .waitFor();
  for (const id of [failedId, ...more]) {
    const item = page.locator(".results li", { hasText: id });
    await item.waitFor();
    const newId = await item.getByRole("link").nth(1).textContent();
    assert.equal((await api("GET", `/job/${newId}`)).retry_of, id);
  }
});

test("the agents page lists the agent with its state and labels; labels are retry targets", async () => {
  await page.getByRole("link", { name: "Agents", exact: true }).click();
  await page.getByRole("heading", { name: "Agents" }).waitFor();
  const row = page.locator("tbody tr", { hasText: hostname });
  await row.waitFor();
  assert.match(await row.textContent(), /ready.*group:console\.test/);
  await noAxeViolations(page, "agents page");
  await page.goto(`${BASE}/console/#/job/${failedId}`);
  await page.locator("#retry-target option", { hasText: "group:console.test" }).waitFor({
    state: "attached",
  });
});

test("cancel and delete (confirmed, with If-Match) from the job page", async () => {
  const { job_id } = await api("POST", "/job", {
    operation: { type: "node.hostname.get" },
    target_hostname: hostname,
  });
  await page.goto(`${BASE}/console/#/job/${job_id}`);
  await page.getByRole("button", { name: "Cancel job" }).click();
  await page.getByRole("status").filter({ hasText: "Cancelled." }).waitFor();
  await page.locator(".status-cancelled").first().waitFor();
  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Delete job" }).click();
  await page.getByRole("heading", { name: "Jobs" }).waitFor();
  const response = await fetch(`${BASE}/job/${job_id}`, {
    headers: { Authorization: `Bearer ${ADMIN}` },
  });
  assert.equal(response.status, 404);
});

/**
 * Opens the console with `key` kept in the tab. The key is put there from another page of the same
 * origin: a console page still open could be refused with it and forget it before a reload.
 */
async function openWithKey(key) {
  await page.goto(`${BASE}/health`);
  await page.evaluate((k) => sessionStorage.setItem("jobs-console-key", k), key);
  await page.goto(`${BASE}/console/#/jobs`);
}

test("a key that stops working (401) returns to sign-in with the reason", async () => {
  await openWithKey("jobs_revokedrevoked_x");
  await page.getByLabel("API key").waitFor();
  // Should the reason not show, the failure says what the page shows instead.
  await page
    .getByRole("alert")
    .filter({ hasText: "invalid API key" })
    .waitFor({ timeout: 10_000 })
    .catch(async () =>
      assert.fail(`no reason shown; the page says: ${await page.locator("body").textContent()}`),
    );
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.deepEqual(pageErrors, []);
});

test("the first reason to sign out stands: a call refused later for want of a key does not replace it", async () => {
  // GET /keys/self is held back until the console has signed out, then sent without a key.
  await page.route("**/keys/self", async (route) => {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const { authorization, ...headers } = route.request().headers();
    await route.continue({ headers });
  });
  try {
    await openWithKey("jobs_revokedrevoked_x");
    await page.getByRole("alert").filter({ hasText: "invalid API key" }).waitFor();
    await page.waitForTimeout(2_000);
    assert.match(await page.getByRole("alert").textContent(), /invalid API key/);
  } finally {
    await page.unroute("**/keys/self");
  }
});
