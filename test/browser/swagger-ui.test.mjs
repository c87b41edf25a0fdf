// Swagger UI at /docs, driven in Debian's Chromium: every operation listed, Authorize with a key,
// "Try it out" on create and then on retry with the documented examples, 201 with the new job id.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { openPage } from "./helpers.mjs";

const BASE = process.env.E2E_URL;
const ADMIN = process.env.E2E_ADMIN_KEY;
const results = fileURLToPath(new URL("../../test-results/", import.meta.url));
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

let browser;
let page;
let doc;
let pageErrors;

before(async () => {
  assert.ok(BASE && ADMIN, "run through scripts/e2e-test.mjs (E2E_URL, E2E_ADMIN_KEY)");
  doc = await (await fetch(`${BASE}/openapi.json`)).json();
  ({ browser, page, pageErrors } = await openPage({ height: 1000 }));
  await page.goto(`${BASE}/docs`);
  await page.locator(".opblock").first().waitFor({ timeout: 30_000 });
});

after(async () => {
  await browser?.close();
});

function operations() {
  return Object.entries(doc.paths).flatMap(([path, byMethod]) =>
    Object.entries(byMethod).map(([method, operation]) => ({ path, method, operation })),
  );
}

const block = (operation) =>
  page.locator(`#operations-${operation.tags[0]}-${operation.operationId}`);

async function tryItOut(operationId) {
  const found = operations().find(({ operation }) => operation.operationId === operationId);
  assert.ok(found, `${operationId} is documented`);
  const op = block(found.operation);
  if (!(await op.locator(".try-out__btn").isVisible()))
    await op.locator(".opblock-summary").click();
  await op.locator(".try-out__btn").click();
  return op;
}

async function execute(op) {
  await op.locator("button.execute").click();
  const response = op.locator(".live-responses-table .response").first();
  await response.waitFor({ timeout: 15_000 });
  const status = (await response.locator(".response-col_status").textContent())?.trim();
  const body =
    (await response.locator(".response-col_description pre").first().textContent()) ?? "";
  return { status, body };
}

test("the page loads its own assets and lists every operation of the document", async () => {
  assert.equal(await page.title(), "Job API");
  for (const { path, method, operation } of operations()) {
    const op = block(operation);
    assert.equal(await op.count(), 1, `${method.toUpperCase()} ${path} (${operation.operationId})`);
    const shown = await op.locator(".opblock-summary-path").getAttribute("data-path");
    assert.equal(shown, path);
    const verb = (await op.locator(".opblock-summary-method").textContent())?.trim();
    assert.equal(verb?.toUpperCase(), method.toUpperCase());
  }
  assert.deepEqual(pageErrors, []);
});

test("Authorize with a key, create a job with Try it out, retry it: 201 with the new job ids", async () => {
  await page.locator("button.authorize").first().click();
  const bearer = page.locator(".modal-ux .auth-container").filter({ hasText: "bearerAuth" });
  await bearer.locator("input#auth-bearer-value").fill(ADMIN);
  await bearer.locator('button[type="submit"]').click();
  await bearer.locator("button", { hasText: "Logout" }).waitFor();
  await page.locator(".modal-ux button.close-modal").click();

  const create = await tryItOut("createJob");
  const example = JSON.parse(await create.locator("textarea.body-param__text").inputValue());
  assert.deepEqual(example, {
    operation: { type: "node.hostname.get", data: {} },
    target_hostname: "_any",
  });
  const created = await execute(create);
  assert.equal(created.status, "201", created.body);
  const createdId = JSON.parse(created.body).job_id;
  assert.match(createdId, UUID);

  const retry = await tryItOut("retryJob");
  await retry.locator('tr[data-param-name="id"] input').fill(createdId);
  const retryBody = JSON.parse(await retry.locator("textarea.body-param__text").inputValue());
  assert.deepEqual(retryBody, { target_hostname: "_any" });
  const retried = await execute(retry);
  assert.equal(retried.status, "201", retried.body);
  const newId = JSON.parse(retried.body).job_id;
  assert.match(newId, UUID);
  assert.notEqual(newId, createdId);

  mkdirSync(results, { recursive: true });
  await retry.locator(".live-responses-table").scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(results, "swagger-ui-retry.png") });

  const job = await (
    await fetch(`${BASE}/job/${newId}`, { headers: { Authorization: `Bearer ${ADMIN}` } })
  ).json();
  assert.equal(job.retry_of, createdId);
  assert.equal(job.attempt, 2);
  assert.deepEqual(pageErrors, []);
});
