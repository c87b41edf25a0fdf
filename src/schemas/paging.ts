import { z } from "@hono/zod-openapi";

const DECIMAL = /^[0-9]{1,15}$/;

/** An integer query parameter: plain decimal digits only (no `0x10`, `1e1`, ` 10` or empty value). */
export function queryInteger(min: number, max: number) {
  return z.preprocess(
    (value) => (typeof value === "string" && DECIMAL.test(value) ? Number(value) : value),
    z.number({ error: "must be a plain decimal integer" }).int().min(min).max(max),
  );
}

/** `limit`, as every list takes it. */
export function limitParameter(defaultLimit: number) {
  return queryInteger(1, 100)
    .default(defaultLimit)
    .openapi({ description: `Page size, 1–100 (default ${defaultLimit})` });
}

/** `cursor`, as every list takes it: the `next_cursor` of the page before. */
export function cursorParameter(pattern: RegExp, example: string) {
  return z
    .string()
    .regex(pattern, "must be a next_cursor this service returned")
    .optional()
    .openapi({
      description:
        "The `next_cursor` of the previous page (same filters): the items after it, at the cost of one page however deep, and unshifted by items created meanwhile",
      example,
    });
}

export const NextCursorSchema = z.string().nullable().openapi({
  description: "Send as `cursor` for the next page; null when this page is the last",
  example: "1042",
});

/** One more row than the page, so the page knows whether it is the last. */
export function pageOf<T>(rows: T[], limit: number, cursorOf: (row: T) => string) {
  const items = rows.slice(0, limit);
  const last = rows.length > limit ? items.at(-1) : undefined;
  return { items, next_cursor: last === undefined ? null : cursorOf(last) };
}
