// The document the running Worker serves, checked against the OpenAPI 3.1 JSON Schema and linted
// with redocly's recommended rules.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Validator } from "@seriousme/openapi-schema-validator";

const BASE = process.env.E2E_URL;

// With Ajv's strict mode on, compiling the official OAS 3.1 schema itself logs about a hundred
// strict-mode notes (keywords without "type", the components object's properties overlapping its
// patternProperties). They are about that schema, not about this document: these two shapes.
const ABOUT_THE_OAS_SCHEMA = [
  /at "https:\/\/spec\.openapis\.org\/oas\/3\.1\/schema\//,
  /^strict mode: property \w+ matches pattern \^\(\?:schemas\|responses\|parameters\|examples\|requestBodies\|headers\|securitySchemes\|links\|callbacks\|pathItems\)\$/,
];

test("/openapi.json validates against the OpenAPI 3.1 schema, and no warning is about it", async () => {
  assert.ok(BASE, "run through scripts/e2e-test.mjs (E2E_URL)");
  const response = await fetch(`${BASE}/openapi.json`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("Content-Type") ?? "", /^application\/json/);
  const document = await response.json();
  const warnings = [];
  const collect = (...args) => warnings.push(args.join(" "));
  const logger = { log: collect, warn: collect, error: collect };
  const result = await new Validator({ strict: "log", logger }).validate(document);
  assert.deepEqual(result.errors ?? [], []);
  assert.equal(result.valid, true);
  assert.equal(document.openapi, "3.1.0");
  const unexplained = warnings.filter((w) => !ABOUT_THE_OAS_SCHEMA.some((shape) => shape.test(w)));
  assert.deepEqual(unexplained, []);
});

test("a broken document is refused, so the check above can fail", async () => {
  const document = await (await fetch(`${BASE}/openapi.json`)).json();
  const [path] = Object.keys(document.paths);
  document.paths[path].get = { responses: { 200: { content: "not a media type map" } } };
  delete document.info;
  const result = await new Validator().validate(document);
  assert.equal(result.valid, false);
});

const redocly = fileURLToPath(new URL("../../node_modules/.bin/redocly", import.meta.url));

/** `redocly lint` with its recommended rules; its problems as `rule at pointer: message`. */
async function lint(document) {
  const file = join(mkdtempSync(join(tmpdir(), "jobs-redocly-")), "openapi.json");
  writeFileSync(file, JSON.stringify(document));
  const env = { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" };
  const args = ["lint", file, "--extends", "recommended", "--format", "json"];
  const { stdout } = await promisify(execFile)(redocly, args, { env }).catch((error) => error);
  const report = JSON.parse(stdout);
  return report.problems.map(
    (p) => `${p.severity} ${p.ruleId} at ${p.location?.[0]?.pointer}: ${p.message}`,
  );
}

test("/openapi.json passes redocly lint's recommended rules: no error, no warning", async () => {
  const document = await (await fetch(`${BASE}/openapi.json`)).json();
  assert.deepEqual(await lint(document), []);
});

test("redocly lint finds a problem in a document that has one, so the check above can fail", async () => {
  const document = await (await fetch(`${BASE}/openapi.json`)).json();
  delete document.servers;
  const problems = await lint(document);
  assert.ok(
    problems.some((p) => p.includes("no-empty-servers")),
    problems.join("\n"),
  );
});
