import {
  createExecutionContext,
  createMessageBatch,
  getQueueResult,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type ClaimWaiters, claimWaiters } from "../src/background/wakeups";
import {
  backoffSeconds,
  MAX_ATTEMPTS,
  type WebhookMessage,
  webhookEvents,
} from "../src/background/webhooks";
import worker from "../src/index";
import {
  CreatedWebhookSchema,
  DeliveryListSchema,
  WebhookListSchema,
  WebhookSecretSchema,
} from "../src/schemas/webhook";
import { claim, host, register, reportOk } from "./agents-helpers";
import { buildRequest, call, createKey, expectError, parse } from "./helpers";

type Received = { url: string; headers: Headers; body: string };

/**
 * A receiver in place of the network: the Worker's outgoing fetches (the queue consumer's) come
 * here. `answer` decides each reply.
 */
function receiver(
  answer: (r: Received, n: number) => Promise<Response> | Response = () => new Response("ok"),
) {
  const received: Received[] = [];
  vi.stubGlobal("fetch", async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const r = { url: request.url, headers: request.headers, body: await request.text() };
    received.push(r);
    return answer(r, received.length);
  });
  return received;
}

afterEach(() => {
  vi.unstubAllGlobals();
});

async function until<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("gave up waiting");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function createWebhook(body: Record<string, unknown>) {
  const response = await call("POST", "/webhooks", { body });
  expect(response.status, await response.clone().text()).toBe(201);
  return parse(response, CreatedWebhookSchema);
}

/** Standard Webhooks verification, written apart from the service's signing code. */
async function verify(secret: string, r: Received): Promise<boolean> {
  const id = r.headers.get("webhook-id");
  const timestamp = r.headers.get("webhook-timestamp");
  const signatures = (r.headers.get("webhook-signature") ?? "").split(" ");
  if (!id || !timestamp) return false;
  const raw = Uint8Array.from(atob(secret.replace(/^whsec_/, "")), (ch) => ch.charCodeAt(0));
  const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, [
    "verify",
  ]);
  for (const signature of signatures) {
    const [version, value] = signature.split(",");
    if (version !== "v1" || !value) continue;
    const mac = Uint8Array.from(atob(value), (ch) => ch.charCodeAt(0));
    const signed = new TextEncoder().encode(`${id}.${timestamp}.${r.body}`);
    if (await crypto.subtle.verify("HMAC", key, mac, signed)) return true;
  }
  return false;
}

describe("webhooks: registration", () => {
  it("answers the secret once, lists without it, and deletes", async () => {
    const hook = await createWebhook({
      url: "https://receiver.example.com/jobs",
      events: ["job.completed", "job.failed"],
      filter: { operation_type: "deploy" },
    });
    expect(hook.id).toMatch(/^wh_[0-9a-f]{32}$/);
    expect(hook.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const list = await parse(await call("GET", "/webhooks"), WebhookListSchema);
    const listed = list.items.find((h) => h.id === hook.id);
    expect(listed).toMatchObject({
      url: "https://receiver.example.com/jobs",
      filter: { operation_type: "deploy" },
    });
    expect(JSON.stringify(list)).not.toContain(hook.secret);
    const stored = await env.DB.prepare("SELECT secret_ciphertext AS s FROM webhooks WHERE id = ?1")
      .bind(hook.id)
      .first<{ s: string }>();
    expect(stored?.s).not.toContain(hook.secret.slice(6));
    const rotated = await parse(
      await call("POST", `/webhooks/${hook.id}/rotate-secret`),
      WebhookSecretSchema,
    );
    expect(rotated.secret).not.toBe(hook.secret);
    expect((await call("DELETE", `/webhooks/${hook.id}`)).status).toBe(204);
    await expectError(await call("DELETE", `/webhooks/${hook.id}`), 404);
  });

  it("refuses URLs that are not https or name this machine or a private network", async () => {
    for (const url of [
      "http://receiver.example.com/",
      "https://localhost/x",
      "https://app.localhost/x",
      "https://10.1.2.3/x",
      "https://172.20.0.1/x",
      "https://192.168.1.10/x",
      "https://169.254.169.254/latest/meta-data",
      "https://100.64.0.1/x",
      "https://0.0.0.0/x",
      "https://[::1]/x",
      "https://[fe80::1]/x",
      "https://[fd00::1]/x",
      "https://[::ffff:10.0.0.1]/x",
      "https://intranet/x",
      "https://db.internal/x",
      "https://user:pass@receiver.example.com/x",
      "ftp://receiver.example.com/x",
      "not a url",
    ]) {
      const body = await expectError(
        await call("POST", "/webhooks", { body: { url, events: ["job.completed"] } }),
        400,
      );
      expect(body.details, url).toMatch(/^url: /);
    }
    // Hosts in WEBHOOK_ALLOW_HOSTS may use plain http.
    const local = await createWebhook({
      url: "http://127.0.0.1:9999/hook",
      events: ["job.completed"],
    });
    await call("DELETE", `/webhooks/${local.id}`);
    await expectError(
      await call("POST", "/webhooks", { body: { url: "https://x.example.com", events: [] } }),
      400,
    );
    await expectError(
      await call("POST", "/webhooks", {
        body: { url: "https://x.example.com", events: ["job.begun"] },
      }),
      400,
    );
    const reader = await createKey(["job:read", "job:write"]);
    await expectError(await call("GET", "/webhooks", { key: reader }), 403);
  });
});

describe("webhooks: delivery", () => {
  it("POSTs signed events for what a write did, through the queue, filtered", async () => {
    const received = receiver();
    const agent = host("hooked");
    await register(agent);
    const hook = await createWebhook({
      url: "https://receiver.test/hook",
      events: ["job.created", "job.completed", "job.retried"],
      filter: { target_hostname: agent },
    });
    const created = await call("POST", "/job", {
      body: { operation: { type: "hooked" }, target_hostname: agent },
    });
    const { job_id } = (await created.json()) as { job_id: string };
    await claim(agent);
    await reportOk(agent, job_id, { event: "completed", result: { ok: true } });
    // At least once: a receiver keeps the first of each Webhook-Id.
    const mine = () => [
      ...new Map(
        received
          .filter((r) => r.body.includes(job_id))
          .map((r) => [r.headers.get("webhook-id"), r]),
      ).values(),
    ];
    await until(() => (mine().length >= 2 ? true : undefined));
    const bodies = mine().map(
      (r) => JSON.parse(r.body) as { type: string; data: Record<string, unknown> },
    );
    expect(bodies.map((b) => b.type).sort()).toEqual(["job.completed", "job.created"]);
    const done = bodies.find((b) => b.type === "job.completed");
    expect(done?.data).toMatchObject({
      job_id,
      status: "completed",
      target_hostname: agent,
      operation_type: "hooked",
    });
    for (const r of mine()) {
      expect(await verify(hook.secret, r)).toBe(true);
      expect(r.headers.get("webhook-id")).toMatch(/^msg_/);
      expect(Math.abs(Number(r.headers.get("webhook-timestamp")) - Date.now() / 1000)).toBeLessThan(
        60,
      );
      expect(await verify(hook.secret, { ...r, body: `${r.body} ` })).toBe(false);
    }
    // A job for another target is not sent to this webhook.
    const other = host("unhooked");
    await register(other);
    const skipped = await call("POST", "/job", {
      body: { operation: { type: "hooked" }, target_hostname: other },
    });
    const otherId = ((await skipped.json()) as { job_id: string }).job_id;
    const retried = await call("POST", `/job/${job_id}/retry`, {
      body: { target_hostname: agent },
    });
    expect(retried.status).toBe(201);
    await until(() => (mine().some((r) => r.body.includes("job.retried")) ? true : undefined));
    expect(received.some((r) => r.body.includes(otherId))).toBe(false);
    const deliveries = await parse(
      await call("GET", `/webhooks/${hook.id}/deliveries`),
      DeliveryListSchema,
    );
    expect(
      deliveries.items.filter((d) => d.job_id === job_id).every((d) => d.status === "delivered"),
    ).toBe(true);
    await call("DELETE", `/webhooks/${hook.id}`);
  }, 30_000);

  it("delivers every write made after the webhook's creation answered, even right after", async () => {
    const received = receiver();
    const agent = host("fresh");
    await register(agent);
    for (const hook of (await parse(await call("GET", "/webhooks"), WebhookListSchema)).items)
      await call("DELETE", `/webhooks/${hook.id}`);
    // With nobody listening, this isolate stops telling the fleet object about writes for a moment.
    await call("POST", "/job", { body: { operation: { type: "quiet" }, target_hostname: agent } });
    await createWebhook({ url: "https://receiver.test/fresh", events: ["job.created"] });
    const created = await call("POST", "/job", {
      body: { operation: { type: "fresh" }, target_hostname: agent },
    });
    const { job_id } = (await created.json()) as { job_id: string };
    await until(() =>
      received.find((r) => r.url === "https://receiver.test/fresh" && r.body.includes(job_id)),
    );
  }, 30_000);

  it("delivers a write whose announcement was lost, from the fleet object's sweep of the events", async () => {
    const received = receiver();
    const agent = host("swept");
    await register(agent);
    const hook = await createWebhook({
      url: "https://receiver.test/swept",
      events: ["job.created"],
    });
    const fleet = claimWaiters(env);
    const alarm = await runInDurableObject(fleet, (_: ClaimWaiters, state) =>
      state.storage.getAlarm(),
    );
    expect(alarm, "a sweep is scheduled while a webhook exists").not.toBeNull();
    // The write commits, but every call it makes to the fleet object is lost.
    const lost = {
      idFromName: (name: string) => env.CLAIM_WAITERS.idFromName(name),
      get: () => new Proxy({}, { get: () => () => Promise.reject(new Error("call lost")) }),
    } as unknown as typeof env.CLAIM_WAITERS;
    const ctx = createExecutionContext();
    const request = await buildRequest("POST", "/job", {
      body: { operation: { type: "swept" }, target_hostname: agent },
    });
    const created = await worker.fetch(request, { ...env, CLAIM_WAITERS: lost }, ctx);
    await waitOnExecutionContext(ctx);
    expect(created.status).toBe(201);
    const { job_id } = (await created.json()) as { job_id: string };
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(
      received.some((r) => r.body.includes(job_id)),
      "nobody was told",
    ).toBe(false);
    // The sweep (the object's alarm, here run as if its grace period had passed) finds the change.
    const sweep = () =>
      runInDurableObject(fleet, (object: ClaimWaiters) => object.sweep(Date.now() + 60_000));
    expect(await sweep()).toBeGreaterThanOrEqual(1);
    const delivered = await until(() =>
      received.find((r) => r.url === "https://receiver.test/swept" && r.body.includes(job_id)),
    );
    expect(JSON.parse(delivered.body)).toMatchObject({ type: "job.created", data: { job_id } });
    expect(await verify(hook.secret, delivered)).toBe(true);
    expect(await sweep(), "the sweep moved past what it enqueued").toBe(0);
    // The alarm sweeps and comes back while a webhook exists; with none left it stops.
    const nextAlarm = () =>
      runInDurableObject(fleet, (_: ClaimWaiters, state) => state.storage.getAlarm());
    expect(await runDurableObjectAlarm(fleet)).toBe(true);
    expect(await nextAlarm()).not.toBeNull();
    for (const each of (await parse(await call("GET", "/webhooks"), WebhookListSchema)).items)
      await call("DELETE", `/webhooks/${each.id}`);
    expect(await runDurableObjectAlarm(fleet)).toBe(true);
    expect(await nextAlarm()).toBeNull();
  }, 30_000);

  it("does not hold up writes while a receiver never answers", async () => {
    receiver(() => new Promise<Response>(() => {}));
    const agent = host("slow");
    await register(agent);
    const hook = await createWebhook({
      url: "https://receiver.test/slow",
      events: ["job.created"],
    });
    const started = Date.now();
    for (let i = 0; i < 5; i++) {
      const response = await call("POST", "/job", {
        body: { operation: { type: "slow" }, target_hostname: agent },
      });
      expect(response.status).toBe(201);
    }
    expect(Date.now() - started).toBeLessThan(2_000);
    await call("DELETE", `/webhooks/${hook.id}`);
  });
});

describe("webhooks: the events a write makes", () => {
  it("are derived from the jobs' events at the write's revision, with long texts cut", () => {
    const job = {
      id: "j1",
      target_hostname: "web-01",
      operation_type: "x",
      status: "failed" as const,
      attempt: 1,
      root_job_id: "j1",
      retry_of: null,
    };
    const event = (event: string, revision: number, data: unknown = null) => ({
      job_id: "j1",
      event: event as "failed",
      hostname: event === "submitted" ? "_api" : "web-01",
      created_at: `2026-12-03T10:00:0${revision}.000Z`,
      revision,
      data: data === null ? null : JSON.stringify(data),
    });
    const events = [
      event("submitted", 1),
      event("acknowledged", 2),
      event("failed", 3, { error: "e".repeat(5000) }),
    ];
    expect(webhookEvents([job], events.slice(0, 1), 1).map((e) => e.type)).toEqual(["job.created"]);
    expect(webhookEvents([job], events.slice(0, 2), 2)).toEqual([]);
    const [failed] = webhookEvents([job], events, 3);
    expect(failed?.type).toBe("job.failed");
    expect(String(failed?.data.error).length).toBe(1001);
  });
});

describe("webhooks: the consumer", () => {
  /** A delivery stored as the fan-out stores it, not queued: the test hands it to the consumer. */
  async function storedDelivery(hookId: string) {
    const id = `msg_${crypto.randomUUID().replaceAll("-", "")}`;
    await env.DB.prepare(
      `INSERT INTO webhook_deliveries (id, webhook_id, event_type, job_id, payload, created_at, updated_at)
       VALUES (?1, ?2, 'job.failed', NULL, '{"type":"job.failed","timestamp":"t","data":{}}', 'now', 'now')`,
    )
      .bind(id, hookId)
      .run();
    return id;
  }

  async function consume(id: string, attempts: number) {
    const batch = createMessageBatch<WebhookMessage>("edge-jobs-webhooks", [
      { id: `m-${attempts}`, timestamp: new Date(), attempts, body: { kind: "deliver", id } },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch as MessageBatch, env, ctx);
    return getQueueResult(batch, ctx);
  }

  async function delivery(hookId: string, id: string) {
    const list = await parse(
      await call("GET", `/webhooks/${hookId}/deliveries?limit=100`),
      DeliveryListSchema,
    );
    return list.items.find((d) => d.id === id);
  }

  it("retries a 500 with backoff, then records the success", async () => {
    let flakyCalls = 0;
    const received = receiver(
      (r) =>
        new Response(null, {
          status: r.url.endsWith("/flaky") && ++flakyCalls === 1 ? 500 : 204,
        }),
    );
    const hook = await createWebhook({
      url: "https://receiver.test/flaky",
      events: ["job.failed"],
    });
    const id = await storedDelivery(hook.id);
    const first = await consume(id, 1);
    expect(first.retryMessages.map((m: { msgId: string }) => m.msgId)).toEqual(["m-1"]);
    expect(backoffSeconds(1)).toBe(5);
    expect(await delivery(hook.id, id)).toMatchObject({
      status: "pending",
      attempts: 1,
      last_status: 500,
      last_error: "HTTP 500",
    });
    const second = await consume(id, 2);
    expect(second.explicitAcks).toEqual(["m-2"]);
    expect(await delivery(hook.id, id)).toMatchObject({
      status: "delivered",
      attempts: 2,
      last_status: 204,
      last_error: null,
    });
    // Every attempt is the same message: one Webhook-Id.
    const attempts = received.filter((r) => r.url.endsWith("/flaky"));
    expect(new Set(attempts.map((r) => r.headers.get("webhook-id")))).toEqual(new Set([id]));
  });

  it("does not follow redirects, and records a delivery failed when its attempts run out; it can be sent again", async () => {
    receiver(
      () =>
        new Response(null, {
          status: 302,
          headers: { Location: "https://elsewhere.example.com/" },
        }),
    );
    const hook = await createWebhook({
      url: "https://receiver.test/moved",
      events: ["job.failed"],
    });
    const id = await storedDelivery(hook.id);
    const last = await consume(id, MAX_ATTEMPTS);
    expect(last.explicitAcks).toEqual([`m-${MAX_ATTEMPTS}`]);
    expect(await delivery(hook.id, id)).toMatchObject({
      status: "failed",
      last_status: 302,
      last_error: "redirect not followed (302)",
    });
    const failed = await parse(
      await call("GET", `/webhooks/${hook.id}/deliveries?status=failed`),
      DeliveryListSchema,
    );
    expect(failed.items.map((d) => d.id)).toContain(id);
    const resend = await call("POST", `/webhooks/${hook.id}/deliveries/${id}/resend`);
    expect(resend.status).toBe(202);
    expect((await delivery(hook.id, id))?.status).toBe("pending");
    await expectError(
      await call("POST", `/webhooks/${hook.id}/deliveries/msg_${"0".repeat(32)}/resend`),
      404,
    );
  });

  it("gives up on a receiver that does not answer in time, and tries again later", async () => {
    receiver(
      (r) =>
        new Promise<Response>((_, reject) => {
          void r;
          setTimeout(() => reject(new DOMException("timed out", "TimeoutError")), 50);
        }),
    );
    const hook = await createWebhook({ url: "https://receiver.test/hang", events: ["job.failed"] });
    const id = await storedDelivery(hook.id);
    const result = await consume(id, 1);
    expect(result.retryMessages).toHaveLength(1);
    expect(await delivery(hook.id, id)).toMatchObject({
      status: "pending",
      last_status: null,
      last_error: "no answer within 10 s",
    });
  });

  it("sends a signed test event on request", async () => {
    const received = receiver();
    const hook = await createWebhook({
      url: "https://receiver.test/test",
      events: ["job.completed"],
    });
    await expectError(await call("POST", `/webhooks/wh_${"0".repeat(32)}/test`), 404);
    const queued = await call("POST", `/webhooks/${hook.id}/test`);
    expect(queued.status).toBe(202);
    const r = await until(() => received.find((x) => x.body.includes(hook.id)));
    expect(JSON.parse(r.body)).toMatchObject({
      type: "webhook.test",
      data: { webhook_id: hook.id },
    });
    expect(await verify(hook.secret, r)).toBe(true);
  }, 20_000);
});
