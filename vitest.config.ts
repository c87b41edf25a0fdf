import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

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
            AUTH_FAILURES_PER_MINUTE: "0",
          },
          ratelimits: {
            READ_LIMITER: { simple: { limit: 1_000_000, period: 60 } },
            WRITE_LIMITER: { simple: { limit: 1_000_000, period: 60 } },
            TEST_TIGHT_LIMITER: { simple: { limit: 3, period: 60 } },
          },
        },
      }),
    ],
    test: {
      setupFiles: ["./test/setup.ts"],
      include: ["test/**/*.test.ts"],
    },
  };
});
