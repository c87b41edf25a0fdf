import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { hashKey, keyPrefix, toHex } from "../src/auth/api-key";
import worker from "../src/index";
import { ApiKeySchema, CreatedKeySchema, KeyListSchema } from "../src/schemas/key";
import { call, createKey, expectError, parse } from "./helpers";

type KeyBody = Record<string, unknown>;

async function newKey(body: KeyBody = { name: "test", scopes: ["job:read"] }) {
  const response = await call("POST", "/keys", { body });
  expect(response.status).toBe(201);
  return parse(response, CreatedKeySchema.strict());
}

async function listed(id: string) {
  const list = await parse(await call("GET", "/keys?limit=100"), KeyListSchema);
  const found = list.items.find((item) => item.id === id);
  if (found) return found;
  const row = await env.DB.prepare("SELECT prefix FROM api_keys WHERE id = ?1").bind(id).first();
  throw new Error(`key ${id} (${JSON.stringify(row)}) is not on the first page`);
}

async function storeRevision(): Promise<number> {
  const row = await env.DB.prepare("SELECT revision FROM store_revision").first<{
    revision: number;
  }>();
  return row?.revision ?? -1;
}

async function lastUsed(prefix: string): Promise<string | null> {
  const row = await env.DB.prepare("SELECT last_used_at FROM api_keys WHERE prefix = ?1")
    .bind(prefix)
    .first<{ last_used_at: string | null }>();
  return row?.last_used_at ?? null;
}

const secondsFromNow = (iso: string | null) =>
  ((iso ? Date.parse(iso) : Number.NaN) - Date.now()) / 1000;

describe("POST /keys", () => {
  it("answers 201 with the secret once, in the format of scripts/apikey.mjs; the key works; no store revision is taken", async () => {
    const before = await storeRevision();
    const created = await newKey({ name: "ci", scopes: ["job:read", "job:write", "job:read"] });
    expect(created.key).toMatch(/^jobs_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    expect(keyPrefix(created.key)).toBe(created.prefix);
    expect(created).toMatchObject({
      name: "ci",
      scopes: ["job:read", "job:write"],
      state: "active",
      expires_at: null,
      revoked_at: null,
      last_used_at: null,
      replaced_by: null,
    });
    expect((await call("GET", "/job", { key: created.key })).status).toBe(200);
    const write = await call("POST", "/job", { key: created.key, body: {} });
    expect((await expectError(write, 400)).error).toBe("invalid request body");
    await expectError(await call("GET", "/keys", { key: created.key }), 403);
    expect(await storeRevision()).toBe(before);
  });

  it("stores only the SHA-256 hash: the secret is in no column", async () => {
    const created = await newKey();
    const row = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?1")
      .bind(created.id)
      .first();
    expect(JSON.stringify(row)).not.toContain(created.key.slice(18));
    expect(row?.key_hash).toBe(toHex(await hashKey(created.key)));
  });

  it("sets expires_at from expires_in_days, and the key is refused once it has passed", async () => {
    const created = await newKey({ name: "temp", scopes: ["admin"], expires_in_days: 30 });
    expect(secondsFromNow(created.expires_at)).toBeCloseTo(30 * 86_400, -2);
    await env.DB.prepare("UPDATE api_keys SET expires_at = ?2 WHERE id = ?1")
      .bind(created.id, new Date(Date.now() - 1000).toISOString())
      .run();
    await expectError(await call("GET", "/job", { key: created.key }), 401);
    expect((await listed(created.id)).state).toBe("expired");
  });

  it.each([
    ["no name", { scopes: ["job:read"] }],
    ["an empty name", { name: "  ", scopes: ["job:read"] }],
    ["no scopes", { name: "x", scopes: [] }],
    ["an unknown scope", { name: "x", scopes: ["job:execute"] }],
    ["scopes as a string", { name: "x", scopes: "job:read" }],
    ["a lifetime of 0 days", { name: "x", scopes: ["job:read"], expires_in_days: 0 }],
    ["an unknown field", { name: "x", scopes: ["job:read"], secret: "mine" }],
  ])("answers 400 for %s and stores nothing", async (_, body) => {
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys").first<{
      n: number;
    }>();
    const error = await expectError(await call("POST", "/keys", { body }), 400);
    expect(error.error).toBe("invalid request body");
    const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys").first<{ n: number }>();
    expect(after?.n).toBe(before?.n);
  });

  it("answers 403 to keys without admin, whatever else they may do", async () => {
    const key = await createKey(["job:read", "job:write", "agent:read", "agent:write"]);
    const error = await expectError(
      await call("POST", "/keys", { key, body: { name: "x", scopes: ["admin"] } }),
      403,
    );
    expect(error.details).toBe("requires admin");
  });
});

describe("GET /keys", () => {
  it("lists keys newest first with their state, never a secret or a hash", async () => {
    const older = await newKey({ name: "older", scopes: ["job:read"] });
    const newer = await newKey({ name: "newer", scopes: ["agent:read", "agent:write"] });
    const response = await call("GET", "/keys");
    const text = await response.clone().text();
    const list = await parse(response, KeyListSchema);
    for (const item of list.items) ApiKeySchema.strict().parse(item);
    expect(text).not.toContain(older.key);
    expect(text).not.toContain(newer.key);
    expect(text).not.toContain("key_hash");
    const ids = list.items.map((item) => item.id);
    expect(ids.indexOf(newer.id)).toBeLessThan(ids.indexOf(older.id));
    expect(list.items.find((item) => item.id === newer.id)).toMatchObject({
      prefix: newer.prefix,
      name: "newer",
      scopes: ["agent:read", "agent:write"],
      state: "active",
      created_at: newer.created_at,
    });
    const count = await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys").first<{ n: number }>();
    expect(list.total_items).toBe(count?.n);
  });

  it("pages with limit and offset", async () => {
    await newKey();
    await newKey();
    const all = await parse(await call("GET", "/keys?limit=100"), KeyListSchema);
    const page = await parse(await call("GET", "/keys?limit=1&offset=1"), KeyListSchema);
    expect(page.items).toHaveLength(1);
    expect(page.items[0]?.id).toBe(all.items[1]?.id);
    expect(page.total_items).toBe(all.total_items);
    await expectError(await call("GET", "/keys?limit=0"), 400);
    await expectError(await call("GET", "/keys?limit=101"), 400);
    await expectError(await call("GET", "/keys?sort=name"), 400);
  });

  it("pages with limit and cursor: every key once, next_cursor null on the last page", async () => {
    await newKey();
    await newKey();
    const all = await parse(await call("GET", "/keys?limit=100"), KeyListSchema);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
      const page = await parse(await call("GET", `/keys?limit=2${query}`), KeyListSchema);
      seen.push(...page.items.map((item) => item.id));
      cursor = page.next_cursor;
    } while (cursor !== null && seen.length < 1000);
    expect(seen).toEqual(all.items.map((item) => item.id));
    expect(all.next_cursor).toBeNull();
    await expectError(await call("GET", "/keys?cursor=nonsense"), 400);
    await expectError(await call("GET", "/keys?limit=0x10"), 400);
  });
});

describe("GET /keys/self", () => {
  it("shows any key its own name, scopes and state as GET /keys lists it, never the secret", async () => {
    const reader = await newKey({ name: "dashboard", scopes: ["job:read"], expires_in_days: 7 });
    const response = await call("GET", "/keys/self", { key: reader.key });
    expect(response.status).toBe(200);
    const self = await parse(response, ApiKeySchema.strict());
    expect(self).toMatchObject({
      id: reader.id,
      prefix: reader.prefix,
      name: "dashboard",
      scopes: ["job:read"],
      state: "active",
      expires_at: reader.expires_at,
    });
    const { last_used_at: _, ...listedNow } = await listed(reader.id);
    expect(self).toMatchObject(listedNow);
    expect(JSON.stringify(self)).not.toContain(reader.key.slice(18));
  });

  it("answers 401 to revoked, expired and unknown keys", async () => {
    for (const key of [
      await createKey(["admin"], { revokedAt: new Date().toISOString() }),
      await createKey(["job:read"], { expiresAt: new Date(Date.now() - 1000).toISOString() }),
      `jobs_zzzzzzzzzzzz_${"Z".repeat(43)}`,
    ]) {
      const refused = await call("GET", "/keys/self", { key });
      expect((await expectError(refused, 401)).type).toBe("invalid_api_key");
    }
    await expectError(await call("GET", "/keys/self", { key: null }), 401);
  });

  it("tells a rotated key, still in its grace period, what replaced it and when it expires", async () => {
    const old = await newKey({ name: "rotating", scopes: ["agent:read"] });
    const rotated = await call("POST", `/keys/${old.id}/rotate`, {
      body: { grace_period_seconds: 600 },
    });
    const successor = await parse(rotated, CreatedKeySchema);
    const self = await parse(await call("GET", "/keys/self", { key: old.key }), ApiKeySchema);
    expect(self.replaced_by).toBe(successor.id);
    expect(secondsFromNow(self.expires_at)).toBeCloseTo(600, -1);
  });

  it("is not /keys/{id}: DELETE /keys/self is a bad id, PUT is not allowed", async () => {
    await expectError(await call("DELETE", "/keys/self"), 400);
    const put = await call("PUT", "/keys/self");
    expect(put.headers.get("Allow")).toBe("GET");
    await expectError(put, 405);
  });
});

describe("DELETE /keys/{id}", () => {
  it("revokes the key: 204, then 401 for it, state revoked, and a repeat keeps the first time", async () => {
    const created = await newKey();
    const response = await call("DELETE", `/keys/${created.id.toUpperCase()}`);
    expect(response.status).toBe(204);
    expect(await response.text()).toBe("");
    const refused = await call("GET", "/job", { key: created.key });
    expect(refused.headers.get("WWW-Authenticate")).toContain("invalid_token");
    await expectError(refused, 401);
    const revoked = await listed(created.id);
    expect(revoked.state).toBe("revoked");
    expect(revoked.revoked_at).not.toBeNull();
    expect((await call("DELETE", `/keys/${created.id}`)).status).toBe(204);
    expect((await listed(created.id)).revoked_at).toBe(revoked.revoked_at);
  });

  it("answers 404 for an unknown id and 400 for one that is not a UUID", async () => {
    const id = crypto.randomUUID();
    expect((await expectError(await call("DELETE", `/keys/${id}`), 404)).error).toBe(
      `key not found: ${id}`,
    );
    await expectError(await call("DELETE", "/keys/jobs_abcdefabcdef"), 400);
  });

  it("lets an admin revoke its own key, which then stops working", async () => {
    const admin = await newKey({ name: "self", scopes: ["admin"] });
    expect((await call("DELETE", `/keys/${admin.id}`, { key: admin.key })).status).toBe(204);
    await expectError(await call("GET", "/keys", { key: admin.key }), 401);
  });
});

describe("POST /keys/{id}/rotate", () => {
  it("makes a new key with the same name and scopes; the old one works for the grace period", async () => {
    const old = await newKey({ name: "deployer", scopes: ["job:read", "job:write"] });
    const response = await call("POST", `/keys/${old.id}/rotate`, {
      body: { grace_period_seconds: 600 },
    });
    expect(response.status).toBe(201);
    const rotated = await parse(response, CreatedKeySchema.strict());
    expect(rotated.id).not.toBe(old.id);
    expect(rotated.key).not.toBe(old.key);
    expect(rotated).toMatchObject({
      name: "deployer",
      scopes: ["job:read", "job:write"],
      state: "active",
      expires_at: null,
    });
    expect((await call("GET", "/job", { key: rotated.key })).status).toBe(200);
    expect((await call("GET", "/job", { key: old.key })).status).toBe(200);
    const before = await listed(old.id);
    expect(before.replaced_by).toBe(rotated.id);
    expect(before.state).toBe("active");
    expect(secondsFromNow(before.expires_at)).toBeCloseTo(600, -1);
  });

  it("with a grace period of 0, the old key is refused at once", async () => {
    const old = await newKey();
    const rotated = await parse(
      await call("POST", `/keys/${old.id}/rotate`, { body: { grace_period_seconds: 0 } }),
      CreatedKeySchema,
    );
    await expectError(await call("GET", "/job", { key: old.key }), 401);
    expect((await call("GET", "/job", { key: rotated.key })).status).toBe(200);
    expect((await listed(old.id)).state).toBe("expired");
  });

  it("without a body, gives the old key an hour; never extends an earlier expiry", async () => {
    const plain = await newKey();
    expect((await call("POST", `/keys/${plain.id}/rotate`)).status).toBe(201);
    expect(secondsFromNow((await listed(plain.id)).expires_at)).toBeCloseTo(3600, -1);

    const shortLived = await newKey({ name: "short", scopes: ["job:read"], expires_in_days: 1 });
    const rotated = await parse(
      await call("POST", `/keys/${shortLived.id}/rotate`, {
        body: { grace_period_seconds: 7 * 86_400, expires_in_days: 90 },
      }),
      CreatedKeySchema,
    );
    expect((await listed(shortLived.id)).expires_at).toBe(shortLived.expires_at);
    expect(secondsFromNow(rotated.expires_at)).toBeCloseTo(90 * 86_400, -2);
  });

  it("gives the successor the old key's lifetime unless told otherwise", async () => {
    const expiring = await newKey({ name: "life", scopes: ["job:read"], expires_in_days: 7 });
    const successor = await parse(
      await call("POST", `/keys/${expiring.id}/rotate`),
      CreatedKeySchema,
    );
    expect(secondsFromNow(successor.expires_at)).toBeCloseTo(7 * 86_400, -1);
    const forever = await newKey();
    const next = await parse(await call("POST", `/keys/${forever.id}/rotate`), CreatedKeySchema);
    expect(next.expires_at).toBeNull();
  });

  it("rotates a key once: a second rotation answers 409 and makes no key", async () => {
    const old = await newKey();
    const first = await parse(await call("POST", `/keys/${old.id}/rotate`), CreatedKeySchema);
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys").first<{
      n: number;
    }>();
    const error = await expectError(await call("POST", `/keys/${old.id}/rotate`), 409);
    expect(error).toMatchObject({
      error: "key already rotated",
      details: `it was rotated to ${first.id}`,
    });
    const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys").first<{ n: number }>();
    expect(after?.n).toBe(before?.n);
  });

  it("of many rotations at the same moment, exactly one succeeds", async () => {
    const old = await newKey();
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => call("POST", `/keys/${old.id}/rotate`)),
    );
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses).toEqual([201, ...Array(9).fill(409)]);
    const winner = await parse(
      responses.find((r) => r.status === 201) as Response,
      CreatedKeySchema,
    );
    expect((await listed(old.id)).replaced_by).toBe(winner.id);
    const copies = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM api_keys WHERE id IN (SELECT replaced_by FROM api_keys WHERE id = ?1)",
    )
      .bind(old.id)
      .first<{ n: number }>();
    expect(copies?.n).toBe(1);
  });

  it("answers 409 for revoked and expired keys, 404 for unknown ones, 400 for a bad body", async () => {
    const revoked = await newKey();
    await call("DELETE", `/keys/${revoked.id}`);
    expect(await expectError(await call("POST", `/keys/${revoked.id}/rotate`), 409)).toMatchObject({
      error: "key is revoked",
    });
    const expired = await createKey(["job:read"], {
      expiresAt: new Date(Date.now() - 1000).toISOString(),
      name: "expired",
    });
    const expiredRow = await env.DB.prepare("SELECT id FROM api_keys WHERE prefix = ?1")
      .bind(keyPrefix(expired))
      .first<{ id: string }>();
    expect(
      await expectError(await call("POST", `/keys/${expiredRow?.id}/rotate`), 409),
    ).toMatchObject({
      error: "key is expired",
    });
    await expectError(await call("POST", `/keys/${crypto.randomUUID()}/rotate`), 404);
    const active = await newKey();
    for (const body of [
      { grace_period_seconds: -1 },
      { grace_period_seconds: 31 * 86_400 },
      { grace: 60 },
    ]) {
      await expectError(await call("POST", `/keys/${active.id}/rotate`, { body }), 400);
    }
    expect((await listed(active.id)).replaced_by).toBeNull();
  });
});

describe("last_used_at", () => {
  async function use(key: string) {
    const ctx = createExecutionContext();
    const waitUntil = vi.spyOn(ctx, "waitUntil");
    const response = await worker.fetch(
      new Request("http://jobs.test/job?limit=1", { headers: { "X-API-Key": key } }),
      env,
      ctx,
    );
    expect(response.status).toBe(200);
    await waitOnExecutionContext(ctx);
    return waitUntil.mock.calls.length;
  }

  it("is recorded off the request's path (waitUntil), at most once a minute per key", async () => {
    const created = await newKey();
    expect(await use(created.key)).toBe(1);
    const first = await lastUsed(created.prefix);
    expect(secondsFromNow(first)).toBeCloseTo(0, -1);
    expect((await listed(created.id)).last_used_at).toBe(first);

    expect(await use(created.key)).toBe(0);
    expect(await lastUsed(created.prefix)).toBe(first);

    const halfAMinuteAgo = new Date(Date.now() - 30_000).toISOString();
    await env.DB.prepare("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
      .bind(created.id, halfAMinuteAgo)
      .run();
    expect(await use(created.key)).toBe(0);
    expect(await lastUsed(created.prefix)).toBe(halfAMinuteAgo);

    const twoMinutesAgo = new Date(Date.now() - 120_000).toISOString();
    await env.DB.prepare("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
      .bind(created.id, twoMinutesAgo)
      .run();
    expect(await use(created.key)).toBe(1);
    expect(secondsFromNow(await lastUsed(created.prefix))).toBeCloseTo(0, -1);
  });

  it("is not touched by refused keys", async () => {
    const created = await newKey();
    await call("DELETE", `/keys/${created.id}`);
    await expectError(await call("GET", "/job", { key: created.key }), 401);
    expect(await lastUsed(created.prefix)).toBeNull();
  });
});

describe("D1 round trips", () => {
  const INNER = Symbol("inner");
  type Preparer = Pick<D1Database, "prepare" | "batch">;

  /** The env with a D1 whose every round trip (a statement's first/all/run/raw, a batch) is counted. */
  function counted() {
    const calls: string[] = [];
    const statement = (inner: D1PreparedStatement, sql: string): D1PreparedStatement =>
      new Proxy(inner, {
        get(target, property) {
          if (property === INNER) return target;
          if (property === "bind")
            return (...values: unknown[]) => statement(target.bind(...values), sql);
          const value = Reflect.get(target, property, target);
          if (typeof value !== "function") return value;
          if (["first", "all", "run", "raw"].includes(String(property)))
            return (...args: unknown[]) => {
              calls.push(sql);
              return value.apply(target, args);
            };
          return value.bind(target);
        },
      });
    const preparer = (inner: Preparer): Preparer => ({
      prepare: (sql: string) => statement(inner.prepare(sql), sql),
      batch: (statements: D1PreparedStatement[]) => {
        calls.push(`batch of ${statements.length}`);
        const unwrap = (s: D1PreparedStatement) =>
          (s as unknown as Record<symbol, D1PreparedStatement>)[INNER] ?? s;
        return inner.batch(statements.map(unwrap));
      },
    });
    const db = {
      ...preparer(env.DB),
      withSession: (constraint?: string) => {
        const session = env.DB.withSession(constraint);
        return { ...preparer(session), getBookmark: () => session.getBookmark() };
      },
    } as unknown as D1Database;
    return { env: { ...env, DB: db }, calls };
  }

  it("each key operation makes one D1 call once the caller's key is verified", async () => {
    const admin = await newKey({ name: "counted", scopes: ["admin"] });
    const { env: countingEnv, calls } = counted();
    async function send(method: string, path: string, body?: unknown) {
      calls.length = 0;
      const ctx = createExecutionContext();
      const headers = new Headers({ Authorization: `Bearer ${admin.key}` });
      if (body !== undefined) headers.set("Content-Type", "application/json");
      const request = new Request(`http://jobs.test${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const response = await worker.fetch(request, countingEnv, ctx);
      await waitOnExecutionContext(ctx);
      const lookups = calls.filter((sql) => sql.includes("FROM api_keys WHERE prefix"));
      const touches = calls.filter((sql) => sql.startsWith("UPDATE api_keys SET last_used_at"));
      expect(lookups, `${method} ${path}`).toHaveLength(1);
      return { response, work: calls.length - lookups.length - touches.length };
    }
    const created = await send("POST", "/keys", { name: "x", scopes: ["job:read"] });
    expect(created.response.status).toBe(201);
    expect(created.work).toBe(1);
    const { id } = await parse(created.response, CreatedKeySchema);
    for (const [method, path, body, status] of [
      ["GET", "/keys", undefined, 200],
      ["GET", "/keys/self", undefined, 200],
      ["POST", `/keys/${id}/rotate`, { grace_period_seconds: 60 }, 201],
      ["DELETE", `/keys/${id}`, undefined, 204],
    ] as const) {
      const { response, work } = await send(method, path, body);
      expect(response.status, `${method} ${path}`).toBe(status);
      expect(work, `${method} ${path}`).toBe(1);
    }
  });
});
