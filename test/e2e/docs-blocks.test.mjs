// The docs runner's reading of a page: which blocks run, where a step ends, what `# =>` demands.
import assert from "node:assert/strict";
import { test } from "node:test";
import { missingLine, parsePage } from "../../scripts/docs-blocks.mjs";

const page = [
  "# Page",
  "```sh",
  "echo shown, never run",
  "```",
  "```sh runnable",
  "KEY=$(make-key)",
  "echo $KEY",
  "# => jobs_…",
  "curl -s $URL/job/<job-id>   # <not-a-placeholder> in a comment",
  '# => {"status":"ok"}',
  "# => done",
  "rm -r scratch",
  "```",
].join("\n");

test("only ```sh runnable blocks run, split into steps at each group of # => lines", () => {
  const [block, ...rest] = parsePage(page);
  assert.equal(rest.length, 0);
  assert.equal(block.line, 5);
  assert.deepEqual(
    block.steps.map((step) => [step.line, step.code, step.expect]),
    [
      [6, ["KEY=$(make-key)", "echo $KEY"], ["jobs_…"]],
      [
        9,
        ["curl -s $URL/job/<job-id>   # <not-a-placeholder> in a comment"],
        ['{"status":"ok"}', "done"],
      ],
      [12, ["rm -r scratch"], []],
    ],
  );
  assert.match(block.placeholder, /^line 9: /);
});

test("each expected line must match a whole output line, in order, … matching anything", () => {
  const output = 'created key 1\njobs_ab12_xyz\n{"status":"ok"}\r\ndone\n';
  assert.equal(missingLine(output, ["jobs_…"]), null);
  assert.equal(missingLine(output, ['{"status":"ok"}', "done"]), null);
  assert.equal(missingLine(output, ["jobs_…", "created key …"]), "created key …");
  assert.equal(missingLine(output, ["ok"]), "ok", "a part of a line is not a match");
  assert.equal(missingLine(output, ["jobs_ab12_xyz."]), "jobs_ab12_xyz.", "only … is a wildcard");
  assert.equal(missingLine(output, []), null);
});
