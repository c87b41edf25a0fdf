import { z } from "@hono/zod-openapi";
import { SCOPES } from "../auth/api-key";
import { HOSTNAME_PATTERN } from "../domain/target";
import { JobIdParamsSchema } from "./job";
import { cursorParameter, limitParameter, NextCursorSchema, queryInteger } from "./paging";
import { Timestamp } from "./timestamp";

const MAX_GRACE_SECONDS = 30 * 86_400;
export const DEFAULT_GRACE_SECONDS = 3600;

export const KeyIdParamsSchema = z.object({
  id: JobIdParamsSchema.shape.id.openapi({
    description: "The key's id (a UUID, in any letter case), as listed by `GET /keys`",
    example: "0c3e9d1a-6f2b-4b8e-9a41-2d7c5e8f1b30",
  }),
});

export const ScopeSchema = z.enum(SCOPES).openapi("Scope", {
  description:
    "`job:read` (list, get), `job:write` (create, delete, retry), `agent:read`, `agent:write`, `admin` (key management; implies every scope)",
});

const ScopesSchema = z
  .array(ScopeSchema)
  .min(1, "must name at least one scope")
  .transform((scopes) => [...new Set(scopes)]);

const ExpiresInDaysSchema = z
  .number()
  .int()
  .min(1)
  .max(3650)
  .optional()
  .openapi({ description: "Days until the key expires; without it the key never expires" });

export const MAX_AGENT_HOSTNAMES = 32;

const AgentHostnamesSchema = z
  .array(
    z
      .string()
      .regex(
        HOSTNAME_PATTERN,
        "must be a hostname where '*' stands for any run of letters, digits, '.', '_' or '-'",
      ),
  )
  .min(1, "must name at least one pattern")
  .max(MAX_AGENT_HOSTNAMES)
  .transform((patterns) => [...new Set(patterns)]);

export const CreateKeyBodySchema = z
  .strictObject({
    name: z
      .string()
      .trim()
      .min(1, "must not be empty")
      .max(100)
      .openapi({ description: "Who or what uses the key" }),
    scopes: ScopesSchema,
    expires_in_days: ExpiresInDaysSchema,
    agent_hostnames: AgentHostnamesSchema.optional().openapi({
      description: `Up to ${MAX_AGENT_HOSTNAMES} hostname patterns the key may register, claim, report and deregister as (\`*\` matches any run of hostname characters; case matters); without it, any hostname. Agent routes for another hostname answer 403.`,
      example: ["db-*", "web-01"],
    }),
  })
  .openapi("CreateKeyRequest", {
    example: { name: "ci", scopes: ["job:read", "job:write"], expires_in_days: 30 },
  });

export const RotateKeyBodySchema = z
  .strictObject({
    grace_period_seconds: z
      .number()
      .int()
      .min(0)
      .max(MAX_GRACE_SECONDS)
      .optional()
      .openapi({
        description: `How long the old key keeps working, 0 to ${MAX_GRACE_SECONDS} (30 days); default ${DEFAULT_GRACE_SECONDS}. It never outlives its own expiry.`,
      }),
    expires_in_days: ExpiresInDaysSchema.openapi({
      description:
        "Days until the new key expires; without it, the new key lives as long as the old one was made to (and never expires if the old one would not)",
    }),
  })
  .openapi("RotateKeyRequest", { example: { grace_period_seconds: 3600 } });

const KEY_CURSOR = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z~[1-9][0-9]{0,15}$/;

export const ListKeysQuerySchema = z
  .strictObject({
    limit: limitParameter(100),
    offset: queryInteger(0, 1_000_000_000)
      .default(0)
      .openapi({ description: "Keys to skip. Not with `cursor`." }),
    cursor: cursorParameter(KEY_CURSOR, "2026-11-28T10:00:00.123Z~42"),
  })
  .refine((query) => query.cursor === undefined || query.offset === 0, {
    message: "use cursor or offset, not both",
    path: ["cursor"],
  });

export const KEY_STATES = ["active", "expired", "revoked"] as const;

export const ApiKeySchema = z
  .object({
    id: z.uuid(),
    prefix: z.string().openapi({
      description: "The public start of the key, safe to show and log",
      example: "jobs_k3v9x0m2p7qa",
    }),
    name: z.string(),
    scopes: z.array(ScopeSchema),
    state: z.enum(KEY_STATES).openapi({ description: "Whether the key is accepted now" }),
    created_at: Timestamp,
    expires_at: Timestamp.nullable(),
    revoked_at: Timestamp.nullable(),
    last_used_at: Timestamp.nullable().openapi({
      description: "Last accepted use, recorded at most once a minute per key",
    }),
    replaced_by: z
      .uuid()
      .nullable()
      .openapi({ description: "The key this one was rotated to, if it was" }),
    agent_hostnames: z.array(z.string()).nullable().openapi({
      description:
        "The hostname patterns the key may act as an agent for; null when it may act as any hostname",
    }),
  })
  .openapi("ApiKey");

export const CreatedKeySchema = ApiKeySchema.extend({
  key: z.string().openapi({
    description: "The secret. Shown in this response only; the service stores its SHA-256 hash.",
    example: "jobs_k3v9x0m2p7qa_ZXhhbXBsZSBvbmx5OiBub3QgYSByZWFsIGtleS4uLi4",
  }),
}).openapi("CreatedKey");

export const KeyListSchema = z
  .object({
    total_items: z.number().int().openapi({ description: "All keys, revoked and expired too" }),
    items: z.array(ApiKeySchema),
    next_cursor: NextCursorSchema,
  })
  .openapi("KeyList");

export type ApiKey = z.infer<typeof ApiKeySchema>;
export type CreatedKey = z.infer<typeof CreatedKeySchema>;
