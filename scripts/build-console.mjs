#!/usr/bin/env node
// The operator console: console/src bundled by esbuild into public/console/ (git-ignored), with its
// page and stylesheet. Run by postinstall, predev and predeploy; prints the bundle's gzipped size.
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const root = new URL("../", import.meta.url).pathname;
const out = `${root}public/console/`;

mkdirSync(out, { recursive: true });
await build({
  entryPoints: [`${root}console/src/main.tsx`],
  outfile: `${out}app.js`,
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  jsx: "automatic",
  jsxImportSource: "hono/jsx/dom",
  tsconfig: `${root}console/tsconfig.json`,
  logLevel: "warning",
});
for (const file of ["index.html", "console.css"])
  copyFileSync(`${root}console/${file}`, out + file);
const bytes = gzipSync(readFileSync(`${out}app.js`)).byteLength;
console.log(`console: public/console/app.js, ${(bytes / 1024).toFixed(1)} KB gzipped`);
