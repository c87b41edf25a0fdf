// The runnable blocks of a Markdown page and the check of their output; used by docs-test.mjs.
const EXPECT = /^\s*# => ?(.*)$/;
const PLACEHOLDER = /<[a-z][a-z0-9-]*>/;

/** The runnable blocks of one page: each a list of steps, code with the lines expected after it. */
export function parsePage(text) {
  const blocks = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash|shell) +runnable\s*$/.test(lines[i])) continue;
    const block = { line: i + 1, steps: [], placeholder: null };
    let step = { line: i + 2, code: [], expect: [] };
    for (i++; i < lines.length && !lines[i].startsWith("```"); i++) {
      const line = lines[i];
      const expected = EXPECT.exec(line);
      if (expected) {
        step.expect.push(expected[1].trimEnd());
        continue;
      }
      if (step.expect.length > 0) {
        block.steps.push(step);
        step = { line: i + 1, code: [], expect: [] };
      }
      if (!block.placeholder && PLACEHOLDER.test(line.replace(/#.*$/, ""))) {
        block.placeholder = `line ${i + 1}: ${line.trim()}`;
      }
      step.code.push(line);
    }
    if (step.code.some((line) => line.trim()) || step.expect.length > 0) block.steps.push(step);
    blocks.push(block);
  }
  return blocks;
}

/** `…` matches any run of characters; the rest is literal; the whole line must match. */
function matcher(expected) {
  const pattern = expected
    .split("…")
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${pattern}$`);
}

/** The expected lines, in order, each matching a line of the output; the first one missing, or null. */
export function missingLine(output, expected) {
  const lines = output.split("\n").map((line) => line.trimEnd());
  let at = 0;
  for (const want of expected) {
    const re = matcher(want);
    while (at < lines.length && !re.test(lines[at])) at++;
    if (at === lines.length) return want;
    at++;
  }
  return null;
}
