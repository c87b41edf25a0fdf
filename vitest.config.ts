import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// wrangler, inside the plugin, says "Using secrets defined in .dev.vars" once per test file: only
// its warnings and errors are shown, unless WRANGLER_LOG is set.
process.env.WRANGLER_LOG ??= "warn";

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            KEY_CACHE_SECONDS: "0",
            WEBHOOK_ALLOW_HOSTS: "127.0.0.1,receiver.test",
            WEBHOOK_SECRET_KEY: "ZGV2LW9ubHktd2ViaG9vay1rZXktMzItYnl0ZXMhISE=",
            AUTH_FAILURES_PER_MINUTE: "0",
          },
          ratelimits: {
            READ_LIMITER: { namespace_id: "1001", simple: { limit: 1_000_000, period: 60 } },
            WRITE_LIMITER: { namespace_id: "1002", simple: { limit: 1_000_000, period: 60 } },
            TEST_TIGHT_LIMITER: { namespace_id: "1003", simple: { limit: 3, period: 60 } },
          },
        },
      }),
    ],
    test: {
      // The request log (one line per request) is shown for failing tests only, or with LOG_LEVEL=debug.
      silent: process.env.LOG_LEVEL === "debug" ? false : ("passed-only" as const),
      setupFiles: ["./test/setup.ts"],
      // One fresh worker (and storage) per test file, as the plugin does by default; said here so
      // vitest does not suggest `isolate: false` after every run.
      isolate: true,
      include: ["test/**/*.test.ts"],
    },
  };
});
