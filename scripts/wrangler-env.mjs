// How the scripts run wrangler: node_modules/.bin/wrangler with node_modules/.bin first on PATH, so
// its `#!/usr/bin/env node` finds the Node 22 of the `node` devDependency (wrangler needs Node 22)
// whichever Node started the script; npm scripts and npx do the same. No telemetry, no request.cf.
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("..", import.meta.url));
export const bin = path.join(root, "node_modules", ".bin");
export const wrangler = path.join(bin, "wrangler");

/** The environment for a wrangler child process: `base` (process.env by default) and the above. */
export function wranglerEnv(base = process.env) {
  return {
    ...base,
    PATH: base.PATH ? `${bin}${path.delimiter}${base.PATH}` : bin,
    WRANGLER_SEND_METRICS: "false",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
  };
}
