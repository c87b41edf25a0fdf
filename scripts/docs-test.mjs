#!/usr/bin/env node
// npm run test:docs: the shell blocks of README.md and docs/*.md marked ```sh runnable, run in
// order, one bash per page (set -euo pipefail), against a fresh `npm run dev` on PORT (default: a
// free port) with its own state folder. A block fails on a non-zero exit, or when the output of the
// commands before a `# => expected` line has no line matching it (`…` matches anything), in
// order. Runnable blocks may hold no <placeholder>. Also: README.md at most 12,000 characters, no
// table row over 160. Prints `N passed, N failed` last; one block (or check) is one test.
// DOCS_TIMEOUT_SECONDS (120) bounds each step; DOCS_VERBOSE=1 prints every step's output.
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { missingLine, parsePage } from "./docs-blocks.mjs";
import { freePort } from "./free-port.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const PORT = process.env.PORT?.trim() || String(await freePort());
const STEP_TIMEOUT_MS = Number(process.env.DOCS_TIMEOUT_SECONDS ?? 120) * 1000;
const VERBOSE = Boolean(process.env.DOCS_VERBOSE);
const SENTINEL = "__docs_step_done__";
const README_MAX_CHARS = 12_000;
const TABLE_ROW_MAX_CHARS = 160;

const work = mkdtempSync(path.join(os.tmpdir(), "jobs-docs-"));
const env = {
  ...process.env,
  PORT,
  JOBS_STATE_DIR: path.join(work, "state"),
  TMPDIR: work,
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
};
delete env.JOBS_URL;
delete env.JOBS_API_KEY;

class Shell {
  constructor() {
    this.output = "";
    this.exited = null;
    this.child = spawn("bash", ["--noprofile", "--norc"], {
      cwd: root,
      env,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stdout.on("data", (chunk) => {
      this.output += chunk;
      this.wake?.();
    });
    this.child.stderr.on("data", (chunk) => {
      this.output += chunk;
      this.wake?.();
    });
    this.child.on("exit", (code) => {
      this.exited = code ?? 1;
      this.wake?.();
    });
    this.child.stdin.on("error", () => {});
    this.child.stdin.write("exec 2>&1\nset -euo pipefail\n");
    this.steps = 0;
  }

  /** Runs one step's code in this shell; its output, or an error saying why it stopped. */
  async run(code) {
    const file = path.join(work, `step-${++this.steps}.sh`);
    writeFileSync(file, `${code}\n`);
    this.output = "";
    this.child.stdin.write(`source ${file} </dev/null\nprintf '\\n%s\\n' ${SENTINEL}\n`);
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (true) {
      const done = this.output.indexOf(`\n${SENTINEL}\n`);
      if (done !== -1) return { output: this.output.slice(0, done) };
      if (this.exited !== null) {
        return { output: this.output, error: `the shell exited with ${this.exited}` };
      }
      const left = deadline - Date.now();
      if (left <= 0)
        return { output: this.output, error: `no end after ${STEP_TIMEOUT_MS / 1000} s` };
      await new Promise((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, Math.min(left, 1000));
      });
      this.wake = undefined;
    }
  }

  stop() {
    try {
      process.kill(-this.child.pid, "SIGKILL");
    } catch {}
  }
}

async function startDev() {
  const log = [];
  const child = spawn("npm", ["run", "dev"], {
    cwd: root,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (chunk) => log.push(chunk));
  child.stderr.on("data", (chunk) => log.push(chunk));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const stop = async () => {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {}
  };
  for (let i = 0; i < 120 && child.exitCode === null; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${PORT}/health`)).ok) return { stop, log };
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  await stop();
  throw new Error(
    `npm run dev did not answer on port ${PORT}:\n${Buffer.concat(log).toString().slice(-3000)}`,
  );
}

function pages() {
  const docs = readdirSync(path.join(root, "docs"))
    .filter((name) => name.endsWith(".md"))
    .sort()
    .map((name) => `docs/${name}`);
  return ["README.md", ...docs];
}

async function runPage(page, report) {
  const blocks = parsePage(readFileSync(path.join(root, page), "utf8"));
  if (blocks.length === 0) return;
  const shell = new Shell();
  let broken = null;
  try {
    for (const block of blocks) {
      const where = `${page}:${block.line}`;
      if (broken) {
        report(false, where, `not run: ${broken}`);
        continue;
      }
      if (block.placeholder) {
        report(false, where, `a runnable block holds a placeholder, ${block.placeholder}`);
        broken = `an earlier block of ${page} failed`;
        continue;
      }
      let failure = null;
      for (const step of block.steps) {
        const { output, error } = await shell.run(step.code.join("\n"));
        if (VERBOSE) console.log(`--- ${page}:${step.line}\n${output}`);
        const missing = error ? null : missingLine(output, step.expect);
        if (error || missing !== null) {
          const why = error ?? `no output line matches: ${missing}`;
          failure = `step at line ${step.line}: ${why}\n--- its output:\n${output.trimEnd()}`;
          break;
        }
      }
      report(failure === null, where, failure ?? `${block.steps.length} steps`);
      if (failure) broken = `an earlier block of ${page} failed`;
    }
  } finally {
    shell.stop();
  }
}

let passed = 0;
let failed = 0;
const report = (ok, where, detail) => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${where}: ${detail}`);
};

/** The shape checks: a short README, tables that fit a screen. */
function checkShape(report) {
  const readme = readFileSync(path.join(root, "README.md"), "utf8");
  report(
    readme.length <= README_MAX_CHARS,
    "README.md",
    `${readme.length} characters (at most ${README_MAX_CHARS})`,
  );
  const wide = [];
  for (const page of pages()) {
    readFileSync(path.join(root, page), "utf8")
      .split("\n")
      .forEach((line, i) => {
        if (line.trimStart().startsWith("|") && line.length > TABLE_ROW_MAX_CHARS) {
          wide.push(`${page}:${i + 1} (${line.length})`);
        }
      });
  }
  report(
    wide.length === 0,
    "tables",
    wide.length === 0
      ? `no row over ${TABLE_ROW_MAX_CHARS} characters`
      : `rows over ${TABLE_ROW_MAX_CHARS} characters: ${wide.join(", ")}`,
  );
}

let dev;
const cleanup = async () => {
  await dev?.stop();
  rmSync(work, { recursive: true, force: true });
};
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await cleanup();
    process.exit(130);
  });
}
checkShape(report);
try {
  dev = await startDev();
  for (const page of pages()) await runPage(page, report);
} catch (error) {
  console.error(`docs: ${error.message}`);
  failed++;
} finally {
  await cleanup();
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
