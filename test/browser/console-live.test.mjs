// The console's live job page, driven in Debian's Chromium: it follows a job's event stream while an
// agent (driven through the API) works on it, keeps the retry form as typed, pauses while the tab
// is hidden; a retry with a changed operation (a replacement or a merge patch; invalid JSON sends
// nothing) and the new job seen finishing where the retry answered. axe-core finds no violation.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { ADMIN, api, BASE, until, useOwnAdminKey } from "../e2e/helpers.mjs";
import { assertNoAxeViolations, openPage, signIn } from "./helpers.mjs";

const hostname = `live-${randomUUID().slice(0, 8)}`;
const restart = { type: "service.restart", data: { unit: "nginx", timeout: 30 } };

let browser;
let page;
let pageErrors;
/** Every request the page sent: method, path and search, headers; and whether it is still open. */
const requests = [];

async function submit(operation = restart) {
  const { job_id } = await api("POST", "/job", { operation, target_hostname: hostname });
  return job_id;
}

/** The agent claims its jobs; the lease for `id`. */
async function claim(id) {
  const { jobs } = await api("POST", `/agent/${hostname}/claim`, { limit: 100 });
  const lease = jobs.find((job) => job.id === id)?.lease_token;
  assert.ok(lease, `the agent claimed ${id}`);
  return lease;
}

async function report(id, lease, event, extra = {}) {
  await api("POST", `/agent/${hostname}/job/${id}/event`, { event, lease_token: lease, ...extra });
}

async function failedJob() {
  const id = await submit();
  await report(id, await claim(id), "failed", { error: "unit nginx.service not found" });
  return id;
}

/** A job nobody has taken yet, its page open and following its stream. */
async function watchNewJob() {
  const id = await submit();
  await openJob(id);
  await badge()
    .filter({ hasText: /^live$/ })
    .waitFor();
  return id;
}

async function openJob(id) {
  await page.goto(`${BASE}/console/#/job/${id}`);
  await page.getByRole("heading", { name: `Job ${id}` }).waitFor();
}

const badge = () => page.locator("p[role=status] .live");
const pageStatus = () => page.locator(".facts .status");
const openStreams = () => requests.filter((r) => r.path.includes("/events") && r.open);

/** As the browser does when the tab is hidden or shown again. */
function setVisibility(state) {
  return page.evaluate((value) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => value });
    document.dispatchEvent(new Event("visibilitychange"));
  }, state);
}

before(async () => {
  assert.ok(BASE && ADMIN, "run through scripts/e2e-test.mjs (E2E_URL, E2E_ADMIN_KEY)");
  await useOwnAdminKey("e2e-console-live");
  await api("PUT", `/agent/${hostname}`, { labels: { group: "console-live.test" } });
  ({ browser, page, pageErrors } = await openPage());
  page.on("request", (request) => {
    const url = new URL(request.url());
    requests.push({
      request,
      method: request.method(),
      path: url.pathname + url.search,
      headers: request.headers(),
      open: true,
    });
  });
  const closed = (request) => {
    const entry = requests.find((r) => r.request === request);
    if (entry) entry.open = false;
  };
  page.on("requestfinished", closed);
  page.on("requestfailed", closed);
  await signIn(page);
});

after(async () => {
  await browser?.close();
});

test("a job's page follows the agent's reports without reloading, and keeps the typed retry form", async () => {
  const id = await watchNewJob();
  assert.equal(await pageStatus().textContent(), "unprocessed");
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  await page.getByText("Change the operation").click();
  const typed = '{"type": "service.restart", "data": {"unit": "apache2"}}';
  await page.getByLabel("Operation (JSON)").fill(typed);
  await page.getByLabel("Retry on").selectOption(hostname);

  const lease = await claim(id);
  await report(id, lease, "started");
  await pageStatus().filter({ hasText: "processing" }).waitFor();
  await page
    .locator(".timeline li", { hasText: /started/i })
    .first()
    .waitFor();
  await page.locator("tbody td", { hasText: "started" }).waitFor();

  await report(id, lease, "completed", { result: { active: true } });
  await pageStatus().filter({ hasText: "completed" }).waitFor();
  await page
    .locator(".timeline li", { hasText: `Job completed successfully on ${hostname}` })
    .waitFor();
  await badge().filter({ hasText: "final, checked every 10 s" }).waitFor();
  await until(async () => openStreams().length === 0, 5);
  assert.deepEqual(openStreams(), [], "the stream closed with the job's end");

  assert.equal(await page.evaluate(() => window.notReloaded), true, "the page was not reloaded");
  assert.equal(await page.getByLabel("Operation (JSON)").inputValue(), typed);
  assert.equal(await page.getByLabel("Retry on").inputValue(), hostname);
  const reads = requests.filter((r) => r.method === "GET" && r.path === `/job/${id}`);
  assert.ok(
    reads.slice(1).every((r) => r.headers["if-none-match"]?.startsWith('"r')),
    "every re-read is conditional",
  );
});

test("retry a failed job with a changed operation; invalid JSON shows an error and sends nothing", async () => {
  const id = await failedJob();
  await openJob(id);
  await page.getByText("unit nginx.service not found").first().waitFor();
  await page.getByText("Change the operation").click();
  const editor = page.getByLabel("Operation (JSON)");
  assert.deepEqual(JSON.parse(await editor.inputValue()), restart);
  const retries = () => requests.filter((r) => r.method === "POST" && r.path.endsWith("/retry"));

  await editor.fill('{"type": "service.restart", "data": {"unit": "apache2"');
  await page.getByRole("button", { name: "Retry", exact: true }).click();
  await page.getByRole("alert").filter({ hasText: "The operation is not valid JSON" }).waitFor();
  assert.equal(await editor.getAttribute("aria-invalid"), "true");
  assert.equal(retries().length, 0, "nothing was sent");

  await editor.fill('{"data": {"unit": "apache2"}}');
  await page.getByRole("button", { name: "Retry", exact: true }).click();
  const refusal = await page
    .getByRole("alert")
    .filter({ hasNotText: "not valid JSON" })
    .filter({ hasText: "operation" })
    .textContent();
  assert.equal(retries().length, 1, "the server judged the operation");
  assert.match(refusal, /^invalid request body: operation\.type/, `plain words: ${refusal}`);

  const edited = { type: "service.restart", data: { unit: "apache2", timeout: 60 } };
  await editor.fill(JSON.stringify(edited, null, 2));
  await page.getByLabel("Retry on").selectOption(hostname);
  await page.getByLabel("Count attempts from 1 again").check();
  await page.getByRole("button", { name: "Retry", exact: true }).click();
  const link = page.getByRole("status").getByRole("link");
  await link.waitFor();
  const newId = await link.textContent();
  await page.getByRole("link", { name: `retried as ${newId} →` }).waitFor();
  await assertNoAxeViolations(page, "job page with the operation editor open and a retry answered");

  const job = await api("GET", `/job/${newId}`);
  assert.deepEqual(job.operation, edited);
  assert.equal(job.operation_changed, true);
  assert.equal(job.attempt, 1);
  assert.equal(job.target_hostname, hostname);
  await link.click();
  await page.getByRole("heading", { name: `Job ${newId}` }).waitFor();
  await page.getByText("Operation changed from the original").waitFor();
  assert.deepEqual(JSON.parse(await page.getByLabel("Operation (JSON)").inputValue()), edited);
});

test("a retry sent as a merge patch changes only what the patch names", async () => {
  const id = await failedJob();
  await openJob(id);
  await page.getByText("Change the operation").click();
  await page.getByLabel("Operation (JSON)").fill('{"data": {"timeout": null, "unit": "haproxy"}}');
  await page.getByLabel(/Send as a merge patch/).check();
  await page.getByRole("button", { name: "Retry", exact: true }).click();
  const link = page.getByRole("status").getByRole("link");
  await link.waitFor();
  const job = await api("GET", `/job/${await link.textContent()}`);
  assert.deepEqual(job.operation, { type: "service.restart", data: { unit: "haproxy" } });
  assert.equal(job.operation_changed, true);
  const sent = requests.filter((r) => r.method === "POST" && r.path === `/job/${id}/retry`);
  assert.deepEqual(JSON.parse(sent.at(-1).request.postData()).operation_patch, {
    data: { timeout: null, unit: "haproxy" },
  });
});

test("retry, then the new job completes through the API: the answer shows it finish", async () => {
  const id = await failedJob();
  await openJob(id);
  await page.getByLabel("Retry on").selectOption(hostname);
  await page.getByRole("button", { name: "Retry", exact: true }).click();
  const answer = page.getByRole("status").filter({ hasText: "Retried as" });
  await answer.getByText("live", { exact: true }).waitFor();
  const newId = await answer.getByRole("link").textContent();
  assert.equal(await answer.locator(".status").textContent(), "unprocessed");
  await page.getByRole("link", { name: `retried as ${newId} →` }).waitFor();
  const lease = await claim(newId);
  await report(newId, lease, "completed");
  await answer.locator(".status-completed").waitFor();
  await answer.getByText("final, checked every 10 s").waitFor();
  await page.getByRole("link", { name: newId }).first().click();
  await page.getByRole("heading", { name: `Job ${newId}` }).waitFor();
  await pageStatus().filter({ hasText: "completed" }).waitFor();
});

test("a job that has ended is re-read now and then: a retry made elsewhere shows up", async () => {
  const id = await failedJob();
  await openJob(id);
  await badge().filter({ hasText: "final, checked every 10 s" }).waitFor();
  const { job_id: elsewhere } = await api("POST", `/job/${id}/retry`, {});
  await page.getByRole("link", { name: `retried as ${elsewhere} →` }).waitFor({ timeout: 15_000 });
  const reads = requests.filter((r) => r.method === "GET" && r.path === `/job/${id}`);
  assert.ok(
    reads.slice(1).every((r) => r.headers["if-none-match"]),
    "every re-read is conditional",
  );
});

test("a hidden tab stops the stream; shown again, it resumes after the last event", async () => {
  const id = await watchNewJob();
  const streams = () => requests.filter((r) => r.path.startsWith(`/job/${id}/events`));
  assert.equal(streams().length, 1);

  await setVisibility("hidden");
  await badge().filter({ hasText: "paused while the tab is hidden" }).waitFor();
  assert.ok(await until(async () => openStreams().length === 0, 5), "the stream was closed");
  const sentBefore = requests.length;
  await report(id, await claim(id), "started");
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.deepEqual(
    requests.slice(sentBefore).map((r) => r.path),
    [],
    "nothing is asked while hidden",
  );
  assert.equal(await pageStatus().textContent(), "unprocessed");

  await setVisibility("visible");
  await pageStatus().filter({ hasText: "processing" }).waitFor();
  await badge()
    .filter({ hasText: /^live$/ })
    .waitFor();
  assert.equal(streams().length, 2);
  assert.match(streams()[1].headers["last-event-id"] ?? "", /^[0-9]+$/, "resumed after an event");
});

test("a stream refused with 401 signs out and returns to sign-in with the reason", async () => {
  const id = await watchNewJob();
  await setVisibility("hidden");
  await badge().filter({ hasText: "paused while the tab is hidden" }).waitFor();
  await page.evaluate(() => sessionStorage.setItem("jobs-console-key", "jobs_revokedrevoked_x"));
  const sentBefore = requests.length;
  await setVisibility("visible");
  await page.getByLabel("API key").waitFor();
  await page.getByRole("alert").filter({ hasText: "invalid API key" }).waitFor();
  assert.deepEqual(
    requests.slice(sentBefore).map((r) => r.path),
    [`/job/${id}/events`],
    "the stream was the only request",
  );
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.deepEqual(pageErrors, []);
});
