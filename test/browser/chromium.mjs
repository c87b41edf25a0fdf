// What the browser tests share: Debian's Chromium, headless, and axe-core run on the page.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/** A browser and one page in it; `pageErrors` collects the page's uncaught errors. */
export async function openPage() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  return { browser, page, pageErrors };
}

export async function noAxeViolations(page, what) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const { violations } = await window.axe.run(document);
    return violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  assert.deepEqual(violations, [], `axe on ${what}`);
}
