import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// vitest-pool-workers 0.15.1 prints workerd's "WebSocket peer disconnected" when a test file's
// runner closes, after the summary; it is harmless, and the pool already drops its siblings.
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream);
  stream.write = ((chunk: string | Uint8Array, ...rest: never[]) =>
    String(chunk).includes("disconnected: WebSocket peer disconnected")
      ? true
      : write(chunk, ...rest)) as typeof stream.write;
}

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
            READ_LIMITER: { simple: { limit: 1_000_000, period: 60 } },
            WRITE_LIMITER: { simple: { limit: 1_000_000, period: 60 } },
            TEST_TIGHT_LIMITER: { simple: { limit: 3, period: 60 } },
          },
        },
      }),
    ],
    test: {
      // The request log (one line per request) is shown for failing tests only, or with LOG_LEVEL=debug.
      silent: process.env.LOG_LEVEL === "debug" ? false : ("passed-only" as const),
      setupFiles: ["./test/setup.ts"],
      include: ["test/**/*.test.ts"],
    },
  };
});
