#!/usr/bin/env node
// End-to-end tests against a real `wrangler dev`: the OpenAPI document validated and linted, the
// operator CLI, the reference agent's walkthrough, npm run retention, Swagger UI and the console in
// Debian's Chromium. Starts and stops its own server; prints `N passed, N failed` last. E2E_PORT
// (default: a free port) and E2E_STATE (default: a fresh temp folder). Arguments: only these files.
import { existsSync } from "node:fs";
import { run } from "node:test";
import { spec } from "node:test/reporters";
import { fileURLToPath } from "node:url";
import { startServer } from "../test/e2e/server.mjs";
import { freePort } from "./free-port.mjs";

const files = [
  "test/e2e/openapi-document.test.mjs",
  "test/e2e/jobs-cli.test.mjs",
  "test/e2e/agent.test.mjs",
  "test/e2e/retention.test.mjs",
  "test/e2e/docs-blocks.test.mjs",
  "test/browser/swagger-ui.test.mjs",
  "test/browser/console.test.mjs",
  "test/browser/console-keys.test.mjs",
  "test/browser/console-live.test.mjs",
  "test/browser/console-jobs.test.mjs",
]
  .filter((file) => process.argv.length <= 2 || process.argv.slice(2).includes(file))
  .map((file) => fileURLToPath(new URL(`../${file}`, import.meta.url)));

const chromium = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
if (!existsSync(chromium)) {
  console.error(
    `e2e: no Chromium at ${chromium}: apt-get install -y chromium (or set CHROMIUM_PATH)`,
  );
  console.log("0 passed, 1 failed");
  process.exit(1);
}

let passed = 0;
let failed = 0;
const server = await startServer({
  port: Number(process.env.E2E_PORT || (await freePort())),
  state: process.env.E2E_STATE,
}).catch((error) => {
  console.error(`e2e: ${error.message}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
});
process.env.E2E_URL = server.url;
process.env.E2E_ADMIN_KEY = server.adminKey;
process.env.E2E_STATE_DIR = server.stateDir;
try {
  const stream = run({ files, concurrency: 1, timeout: 180_000 });
  stream.on("test:pass", (event) => {
    if (event.details?.type !== "suite" && !event.skip) passed++;
  });
  stream.on("test:fail", (event) => {
    if (event.details?.type !== "suite") failed++;
  });
  await new Promise((resolve, reject) => {
    stream.compose(spec).pipe(process.stdout);
    stream.on("end", resolve);
    stream.on("error", reject);
  });
} finally {
  await server.stop();
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
