// The console's jobs table in Debian's Chromium: filters by target and lineage kept in the URL
// (Back works), picking failed jobs for a bulk retry after its dry run, the refresh that finds new
// jobs without a reload and stops while the tab is hidden, and the agents' held jobs as a link to
// the table; axe-core finds no violation on the filtered table or the picked dry run.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { ADMIN, api, BASE, useOwnAdminKey } from "../e2e/helpers.mjs";
import { assertNoAxeViolations, claimedJobs, openPage, signIn } from "./helpers.mjs";

const REFRESH_MS = 5000;
const agent = (name) => `${name}-${randomUUID().slice(0, 8)}`;

let browser;
let page;
let pageErrors;

async function register(hostname, labels = {}) {
  await api("PUT", `/agent/${hostname}`, { labels });
  return hostname;
}

async function createJob(target, type = "console.jobs") {
  return (await api("POST", "/job", { operation: { type }, target_hostname: target })).job_id;
}

const jobsFor = (hostname, n, error) =>
  claimedJobs(
    hostname,
    Array.from({ length: n }, () => ({ type: "console.jobs" })),
    error,
  );

/** The ids of the jobs the table shows, once it shows exactly `expected` (in any order). */
async function expectRows(expected) {
  const rows = () =>
    page.locator("tbody tr a.mono").evaluateAll((links) => links.map((a) => a.textContent));
  for (let i = 0; i < 100; i++) {
    const shown = await rows();
    if (shown.length === expected.length && expected.every((id) => shown.includes(id))) return;
    await page.waitForTimeout(100);
  }
  assert.deepEqual((await rows()).sort(), [...expected].sort());
}

const hash = () => page.evaluate(() => decodeURIComponent(location.hash));

/** Makes the tab hidden or visible again, as switching tabs does. */
async function setVisibility(state) {
  await page.evaluate((value) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => value });
    document.dispatchEvent(new Event("visibilitychange"));
  }, state);
}

before(async () => {
  assert.ok(BASE && ADMIN, "run through scripts/e2e-test.mjs (E2E_URL, E2E_ADMIN_KEY)");
  await useOwnAdminKey("e2e-console-jobs");
  ({ browser, page, pageErrors } = await openPage({ height: 900 }));
  await signIn(page);
});

after(async () => {
  await browser?.close();
});

test("filter by target and by lineage: the URL hash keeps the filters and Back returns", async () => {
  const web = await register(agent("filter"), { team: "console-jobs" });
  const forWeb = [await createJob(web), await createJob(web)];
  await createJob("_any");
  const root = await createJob("_all");
  const firstRetry = (await api("POST", `/job/${root}/retry`, { target_hostname: "_all" })).job_id;
  const secondRetry = (await api("POST", `/job/${root}/retry`, { target_hostname: "_all" })).job_id;

  // The targets are read when the table opens: open it afresh, now that the agent exists.
  await page.goto(`${BASE}/console/#/jobs`);
  await page.reload();
  await page.locator("#filter-target option", { hasText: web }).waitFor({ state: "attached" });
  await page.getByLabel("Target").selectOption(web);
  await page.getByRole("button", { name: "Apply filters" }).click();
  await expectRows(forWeb);
  assert.equal(await hash(), `#/jobs?target=${web}`);
  await page.getByText("Matching jobs: 2").waitFor();
  await assertNoAxeViolations(page, "the table filtered by target");

  await page.getByLabel("Target").selectOption("");
  await page.getByLabel("Root job id").fill(root.toUpperCase());
  await page.getByRole("button", { name: "Apply filters" }).click();
  await expectRows([root, firstRetry, secondRetry]);
  assert.equal(await hash(), `#/jobs?root_job_id=${root}`);

  await page.getByLabel("Root job id").fill("");
  await page.getByLabel("Retries of").fill(root);
  await page.keyboard.press("Enter");
  await expectRows([firstRetry, secondRetry]);
  assert.equal(await hash(), `#/jobs?retry_of=${root}`);
  await page.getByRole("button", { name: /^unprocessed \d+$/ }).click();
  await expectRows([firstRetry, secondRetry]);
  assert.equal(await hash(), `#/jobs?status=unprocessed&retry_of=${root}`);

  await page.goBack();
  await page.goBack();
  await expectRows([root, firstRetry, secondRetry]);
  assert.equal(await hash(), `#/jobs?root_job_id=${root}`);
  assert.equal(await page.getByLabel("Root job id").inputValue(), root);
  await page.goBack();
  await expectRows(forWeb);
  assert.equal(await page.getByLabel("Target").inputValue(), web);

  await page.getByLabel("Retries of").fill("not-a-job");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.getByRole("alert").filter({ hasText: "is a UUID" }).waitFor();
  assert.equal(await hash(), `#/jobs?target=${web}`);
});

test("pick two failed jobs, dry run them, retry exactly those (a double click retries once); the third is untouched", async () => {
  const db = await register(agent("picks"));
  const [third, second, first] = await jobsFor(db, 3, "disk full");
  await page.goto(`${BASE}/console/#/jobs?target=${db}&status=failed`);
  await expectRows([first, second, third]);

  await page.getByLabel("Pick all failed jobs on this page").check();
  for (const id of [first, second, third])
    assert.equal(await page.getByLabel(`Pick job ${id}`).isChecked(), true);
  await page.getByLabel(`Pick job ${third}`).uncheck();
  assert.equal(await page.getByLabel("Pick all failed jobs on this page").isChecked(), false);

  await page.getByRole("button", { name: "Dry run 2 picked" }).click();
  await page
    .getByRole("status")
    .filter({ hasText: "Dry run: 2 of the 2 picked jobs would be retried on _any." })
    .waitFor();
  for (const id of [first, second])
    await page.locator(".results li", { hasText: id }).filter({ hasText: "would retry" }).waitFor();
  assert.equal((await api("GET", `/job?retry_of=${first}`)).total_items, 0);
  await assertNoAxeViolations(page, "the picked jobs' dry run");

  const retries = [];
  const onRequest = (request) => {
    if (request.method() === "POST" && new URL(request.url()).pathname === "/job/retry")
      retries.push(request);
  };
  page.on("request", onRequest);
  // Two clicks in one task: the second comes before any render could disable the button.
  await page
    .getByRole("button", { name: "Retry 2 jobs" })
    .evaluate((button) => [button.click(), button.click()]);
  // The answer, or the error the page shows instead (so a failure says why).
  const outcome = page
    .getByRole("status")
    .filter({ hasText: "Retried 2 jobs." })
    .or(page.locator(".bulk [role=alert]"));
  await outcome.waitFor();
  assert.equal(await outcome.textContent(), "Retried 2 jobs.");
  page.off("request", onRequest);
  assert.equal(retries.length, 1, "one request for a double click");
  for (const id of [first, second]) {
    const item = page.locator(".results li", { hasText: id });
    const newId = await item.getByRole("link").nth(1).textContent();
    assert.equal((await api("GET", `/job/${newId}`)).retry_of, id);
    assert.equal((await api("GET", `/job?retry_of=${id}`)).total_items, 1);
  }
  assert.equal((await api("GET", `/job?retry_of=${third}`)).total_items, 0);
  assert.equal(await page.getByLabel(`Pick job ${first}`).isChecked(), false);
});

test("the table refreshes by itself, cheaply, and stops while the tab is hidden", async () => {
  const live = await register(agent("live"));
  const old = await createJob(live);
  const lists = [];
  const onRequest = (request) => {
    if (new URL(request.url()).pathname === "/job") lists.push(request);
  };
  page.on("request", onRequest);
  try {
    await page.goto(`${BASE}/console/#/jobs?target=${live}`);
    await expectRows([old]);
    await page.evaluate(() => {
      window.notReloaded = true;
    });
    const updated = await page.locator("time", { hasText: /:/ }).first().textContent();
    const added = await createJob(live);
    await expectRows([added, old]);
    assert.equal(await page.evaluate(() => window.notReloaded), true);
    const conditional = lists.filter((r) => r.headers()["if-none-match"]?.startsWith('"s'));
    assert.ok(conditional.length > 0, "the refresh sends If-None-Match");

    await page.waitForTimeout(REFRESH_MS + 500);
    const statuses = await Promise.all(lists.map(async (r) => (await r.response())?.status()));
    assert.ok(statuses.includes(304), `a refresh with nothing new is a 304: ${statuses}`);
    assert.notEqual(await page.locator("time", { hasText: /:/ }).first().textContent(), updated);

    await setVisibility("hidden");
    await page.getByText("Paused while the tab is hidden").waitFor();
    const before = lists.length;
    await createJob(live);
    await page.waitForTimeout(2 * REFRESH_MS + 500);
    assert.equal(lists.length, before, "no request while hidden");
    await expectRows([added, old]);

    await setVisibility("visible");
    await page.getByText("Live, updated").waitFor();
    await page.waitForTimeout(1000);
    assert.equal(lists.length, before + 1, "one request at once when visible again");
    assert.equal(await page.locator("tbody tr").count(), 3);
  } finally {
    page.off("request", onRequest);
  }
});

test("the agents page shows what each agent holds, and links to those jobs", async () => {
  const holder = await register(agent("holder"));
  const mine = await jobsFor(holder, 2);
  const { items } = await api("GET", "/agent?limit=100");
  const held = items.find((a) => a.hostname === holder).held_jobs;
  assert.ok(held >= 2, `${holder} holds its own jobs (and any _any jobs it claimed): ${held}`);

  await page.goto(`${BASE}/console/#/agents`);
  const link = page.getByRole("link", { name: `${held} jobs held by ${holder}` });
  await link.click();
  assert.equal(await hash(), `#/jobs?held_by=${holder}`);
  await page.getByText(`Matching jobs: ${held}`).waitFor();
  for (const id of mine) await page.locator("tbody tr", { hasText: id }).waitFor();
  assert.equal(await page.getByLabel("Held by").inputValue(), holder);
  await assertNoAxeViolations(page, "the table filtered by holder");
  assert.deepEqual(pageErrors, []);
});
