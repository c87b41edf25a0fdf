#!/usr/bin/env node
// A minimal webhook receiver: node examples/webhook-receiver/receiver.mjs, with WEBHOOK_SECRET (the
// whsec_… from POST /webhooks) and PORT (default 8788). It verifies each delivery the Standard
// Webhooks way, drops repeats by Webhook-Id, prints one line per event and answers 204; a bad or
// stale signature gets 401. Plain Node, no dependencies.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

const SECRET = process.env.WEBHOOK_SECRET ?? "";
const PORT = Number(process.env.PORT ?? 8788);
const TOLERANCE_SECONDS = 5 * 60;
const MAX_BODY_BYTES = 1024 * 1024;
const REMEMBERED_IDS = 10_000;

if (!SECRET.startsWith("whsec_")) {
  console.error("receiver: set WEBHOOK_SECRET to the webhook's secret (whsec_…)");
  process.exit(2);
}
const key = Buffer.from(SECRET.slice("whsec_".length), "base64");
const seen = new Set();

/** Why the delivery is not to be trusted, or null when it is. */
function problem(id, timestamp, signatures, body) {
  if (!id || !timestamp || !signatures) return "missing Webhook-Id, -Timestamp or -Signature";
  const age = Math.floor(Date.now() / 1000) - Number(timestamp);
  if (!/^\d+$/.test(timestamp) || Math.abs(age) > TOLERANCE_SECONDS) return "stale timestamp";
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest();
  // The header may hold several space-separated signatures (during a secret rotation, say).
  for (const signature of signatures.split(" ")) {
    const [version, value = ""] = signature.split(",");
    const given = Buffer.from(value, "base64");
    if (version === "v1" && given.length === expected.length && timingSafeEqual(given, expected))
      return null;
  }
  return "bad signature";
}

function remember(id) {
  seen.add(id);
  if (seen.size > REMEMBERED_IDS) seen.delete(seen.values().next().value);
}

const server = createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) req.destroy();
    else chunks.push(chunk);
  });
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const id = req.headers["webhook-id"];
    const why = problem(
      id,
      req.headers["webhook-timestamp"],
      req.headers["webhook-signature"],
      body,
    );
    if (why) {
      console.error(`rejected ${id ?? "a request"}: ${why}`);
      res.writeHead(401).end();
      return;
    }
    if (!seen.has(id)) {
      remember(id);
      const event = JSON.parse(body);
      console.log(`${event.type} ${id} ${JSON.stringify(event.data)}`);
    }
    res.writeHead(204).end();
  });
});

server.listen(PORT, "127.0.0.1", () => {
  console.log(`receiver listening on http://127.0.0.1:${PORT}/`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
