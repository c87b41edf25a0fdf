// The document the running Worker serves, checked against the OpenAPI 3.1 JSON Schema.
import assert from "node:assert/strict";
import { test } from "node:test";
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
