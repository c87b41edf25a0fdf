// The console's keys page and what it hides, driven in Debian's Chromium: the header names the key
// and its scopes; an admin creates a key (its secret shown once, copied, and working), rotates it,
// revokes keys (its own too, which signs out); a job:read key sees no action it may not take.
// axe-core finds no violation on the keys page.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { ADMIN, api, BASE, useOwnAdminKey } from "../e2e/helpers.mjs";
import { assertNoAxeViolations, failedJobOn, openPage, signIn } from "./helpers.mjs";

const run = randomUUID().slice(0, 8);
const hostname = `console-keys-${run}`;
const SECRET = /^jobs_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/;

let browser;
let page;
let failedId;
let pageErrors;
/** The key made on the page, then its successor: `{ id, prefix, key }`. */
let made;
let successor;

/** A request with `key`: its status and JSON body. */
async function as(key, method, path) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}` },
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

const noAxeViolations = (what) => assertNoAxeViolations(page, what);

async function signOut() {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key").waitFor();
}

/** The secret in the read-only field, which has the focus, with the warning that it is shown once. */
async function shownSecret() {
  await page.getByText("it will not be shown again").waitFor();
  await page.waitForFunction(() => document.activeElement?.id === "secret");
  const secret = await page.getByLabel(/^Secret of/).inputValue();
  assert.match(secret, SECRET);
  return secret;
}

const row = (text) => page.locator("tbody tr", { hasText: text });

/** Accepts the next confirm() and returns its text. */
function confirmNext() {
  return new Promise((resolve) =>
    page.once("dialog", async (dialog) => {
      resolve(dialog.message());
      await dialog.accept();
    }),
  );
}

before(async () => {
  assert.ok(BASE && ADMIN, "run through scripts/e2e-test.mjs (E2E_URL, E2E_ADMIN_KEY)");
  await useOwnAdminKey("e2e-console-keys");
  await api("PUT", `/agent/${hostname}`, { labels: {} });
  failedId = await failedJobOn(hostname, { type: "keys.test" }, "keys test failure");
  ({ browser, page, pageErrors } = await openPage({
    height: 900,
    permissions: ["clipboard-read", "clipboard-write"],
  }));
});

after(async () => {
  await browser?.close();
});

test("an admin key: its name and scopes in the header, the Keys and Agents links, every action", async () => {
  await signIn(page);
  await page.getByRole("link", { name: "Agents", exact: true }).waitFor();
  await page.getByRole("button", { name: /^failed \d+$/ }).click();
  await page.getByRole("button", { name: "Dry run" }).waitFor();
  await page.goto(`${BASE}/console/#/job/${failedId}`);
  for (const name of ["Retry", "Cancel job", "Delete job"])
    await page.getByRole("button", { name, exact: true }).waitFor();
  await page.getByRole("link", { name: "Keys", exact: true }).click();
  await page.getByRole("heading", { name: "Keys", exact: true }).waitFor();
  await page.locator("tbody tr").first().waitFor();
  await noAxeViolations("keys page");
});

test("create a key: the secret is shown once, copied, and works against the API", async () => {
  const name = `ci-${run}`;
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("job:read").check();
  await page.getByLabel("job:write").check();
  await page.getByLabel(/^Expires in days/).fill("30");
  await page.getByRole("button", { name: "Create key" }).click();
  await page.getByRole("heading", { name: `New key ${name}` }).waitFor();
  const key = await shownSecret();
  await noAxeViolations("keys page with a new secret");

  await page.getByRole("button", { name: "Copy", exact: true }).click();
  await page.getByRole("status").filter({ hasText: "Copied." }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);

  const self = await as(key, "GET", "/keys/self");
  assert.equal(self.status, 200);
  assert.equal(self.body.name, name);
  assert.deepEqual(self.body.scopes, ["job:read", "job:write"]);
  made = { id: self.body.id, prefix: self.body.prefix, key };
  assert.match(await row(made.prefix).textContent(), /job:read, job:write.*active/);

  await page.getByRole("button", { name: "Done" }).click();
  await page.getByText("it will not be shown again").waitFor({ state: "detached" });
  await page.reload();
  await row(made.prefix).waitFor();
  assert.ok(!(await page.content()).includes(key), "the secret is not on the page again");
});

test("an agent key for some hostnames: it may act as those and no other", async () => {
  const name = `agents-${run}`;
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("agent:read").check();
  await page.getByLabel("agent:write").check();
  await page.getByLabel(/^Agent hostnames/).fill(`kiosk-${run}-*, edge-${run}`);
  await page.getByRole("button", { name: "Create key" }).click();
  await page.getByRole("heading", { name: `New key ${name}` }).waitFor();
  const key = await shownSecret();
  const self = await as(key, "GET", "/keys/self");
  assert.deepEqual(self.body.agent_hostnames, [`kiosk-${run}-*`, `edge-${run}`]);
  assert.match(
    await row(self.body.prefix).textContent(),
    new RegExp(`agents: kiosk-${run}-\\*, edge-${run}`),
  );
  const register = (hostname) =>
    fetch(`${BASE}/agent/${hostname}`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: "{}",
    });
  assert.equal((await register(`kiosk-${run}-7`)).status, 200);
  assert.equal((await register(`db-${run}`)).status, 403);
  await page.getByRole("button", { name: "Done" }).click();
});

test("rotate it: the new secret shown once; the old key keeps working for the grace period", async () => {
  await row(made.prefix)
    .getByRole("button", { name: /^Rotate/ })
    .click();
  await page.getByLabel("The old key keeps working for").selectOption({ label: "10 minutes" });
  await noAxeViolations("rotate form");
  await page.getByRole("button", { name: "Rotate", exact: true }).click();
  const key = await shownSecret();
  assert.notEqual(key, made.key);

  const fresh = await as(key, "GET", "/keys/self");
  assert.equal(fresh.status, 200);
  assert.equal(fresh.body.name, `ci-${run}`);
  assert.deepEqual(fresh.body.scopes, ["job:read", "job:write"]);
  successor = { id: fresh.body.id, prefix: fresh.body.prefix, key };
  const old = await as(made.key, "GET", "/keys/self");
  assert.equal(old.status, 200, "the old key works during its grace period");
  assert.equal(old.body.replaced_by, successor.id);
  const left = (Date.parse(old.body.expires_at) - Date.now()) / 1000;
  assert.ok(left > 540 && left <= 600, `the old key expires in 10 minutes, not ${left} s`);
  await row(made.prefix).filter({ hasText: "active, rotated" }).waitFor();
  assert.equal(
    await row(made.prefix)
      .getByRole("button", { name: /^Rotate/ })
      .count(),
    0,
  );

  await page.evaluate(() =>
    Object.defineProperty(navigator, "clipboard", {
      value: { writeText: () => Promise.reject(new Error("denied")) },
    }),
  );
  await page.getByRole("button", { name: "Copy", exact: true }).click();
  await page.getByRole("status").filter({ hasText: "the secret is selected" }).waitFor();
  const selected = await page.evaluate(() => {
    const field = document.activeElement;
    return field.value.slice(field.selectionStart, field.selectionEnd);
  });
  assert.equal(selected, key, "without a clipboard, the whole secret is selected to copy by hand");
});

test("revoke a key after confirming: it is refused from then on", async () => {
  // A key no request has used yet: no instance has it cached (KEY_CACHE_SECONDS), so the refusal
  // is immediate.
  const spare = await api("POST", "/keys", { name: `spare-${run}`, scopes: ["job:read"] });
  await page.reload();
  const asked = confirmNext();
  await row(spare.prefix)
    .getByRole("button", { name: /^Revoke/ })
    .click();
  const question = await asked;
  assert.match(question, new RegExp(`^Revoke spare-${run} \\(${spare.prefix}\\)\\?`));
  assert.doesNotMatch(question, /signed in with/);
  await row(spare.prefix).filter({ hasText: "revoked" }).waitFor();
  assert.equal(await row(spare.prefix).getByRole("button").count(), 0);
  const refused = await as(spare.key, "GET", "/keys/self");
  assert.equal(refused.status, 401);
  assert.equal(refused.body.type, "invalid_api_key");
});

test("revoking the key you are signed in with says so, and signs out", async () => {
  const own = await api("POST", "/keys", { name: `own-${run}`, scopes: ["admin"] });
  await signOut();
  await signIn(page, own.key, `own-${run} (admin)`);
  await page.getByRole("link", { name: "Keys", exact: true }).click();
  const asked = confirmNext();
  await row("(this key)")
    .getByRole("button", { name: /^Revoke/ })
    .click();
  assert.match(await asked, /the key you are signed in with/);
  await page
    .getByRole("alert")
    .filter({ hasText: "You revoked the key you were signed in with." })
    .waitFor();
  await page.getByLabel("API key").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  const { items } = await api("GET", "/keys?limit=100");
  assert.equal(items.find((key) => key.id === own.id)?.state, "revoked");
});

test("a job:read key: its scopes in the header; no Retry, Cancel, Delete, bulk retry, Keys or Agents", async () => {
  const reader = await api("POST", "/keys", { name: `reader-${run}`, scopes: ["job:read"] });
  await signIn(page, reader.key, `reader-${run} (job:read)`);
  const nav = page.getByRole("navigation", { name: "Console" });
  await nav.getByRole("link", { name: "Jobs" }).waitFor();
  assert.deepEqual(await nav.getByRole("link").allTextContents(), ["Jobs"]);

  await page.getByRole("button", { name: /^failed \d+$/ }).click();
  await row(failedId).waitFor();
  assert.equal(await page.getByRole("button", { name: "Dry run" }).count(), 0);
  assert.equal(await page.getByRole("heading", { name: /^Retry failed jobs/ }).count(), 0);

  await row(failedId).getByRole("link", { name: failedId }).click();
  await page.getByText("keys test failure").first().waitFor();
  for (const name of ["Retry", "Cancel job", "Delete job"])
    assert.equal(await page.getByRole("button", { name, exact: true }).count(), 0, name);
  assert.equal(await page.getByLabel("Retry on").count(), 0);

  for (const [hash, scope] of [
    ["#/keys", "admin"],
    ["#/agents", "agent:read"],
  ]) {
    await page.goto(`${BASE}/console/${hash}`);
    await page.getByText(`This key may not see this page: it needs the scope ${scope}.`).waitFor();
    assert.equal(await page.locator("table").count(), 0, hash);
  }
  assert.deepEqual(pageErrors, []);
});
