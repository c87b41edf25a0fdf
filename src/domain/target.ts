export type Target =
  | { kind: "any" }
  | { kind: "all" }
  | { kind: "hostname"; hostname: string }
  | { kind: "label"; key: string; value: string };

const HOST = "[A-Za-z0-9][A-Za-z0-9._-]{0,252}";
const KEY = "[A-Za-z0-9_-]{1,63}";
const VALUE = "(?=.{1,253}$)[A-Za-z0-9_-]+(?:\\.[A-Za-z0-9_-]+)*";

export const HOSTNAME = new RegExp(`^${HOST}$`);
/** A label key: 1–63 letters, digits, `_` and `-`. */
export const LABEL_KEY = new RegExp(`^${KEY}$`);
/** A label value: up to 253 characters of dot-separated segments of letters, digits, `_` and `-`. */
export const LABEL_VALUE = new RegExp(`^${VALUE}$`);
/** What `parseTarget` accepts, as one pattern for the document. */
export const TARGET = new RegExp(`^(?:_any|_all|${HOST}|${KEY}:${VALUE})$`);

export function isLabelValue(value: string): boolean {
  return LABEL_VALUE.test(value);
}

export function isLabelKey(key: string): boolean {
  return LABEL_KEY.test(key);
}

/** Parses a target_hostname; null when it is malformed. */
export function parseTarget(value: string): Target | null {
  if (value === "_any") return { kind: "any" };
  if (value === "_all") return { kind: "all" };
  const colon = value.indexOf(":");
  if (colon >= 0) {
    const key = value.slice(0, colon);
    const labelValue = value.slice(colon + 1);
    return isLabelKey(key) && isLabelValue(labelValue)
      ? { kind: "label", key, value: labelValue }
      : null;
  }
  return HOSTNAME.test(value) ? { kind: "hostname", hostname: value } : null;
}

/** A hostname pattern of a restricted key: the hostname grammar, where `*` stands for any run of it. */
export const HOSTNAME_PATTERN = /^[A-Za-z0-9*][A-Za-z0-9._*-]{0,252}$/;

function patternRegExp(pattern: string): RegExp {
  const body = pattern
    .split("*")
    .map((part) => part.replaceAll(".", "\\."))
    .join("[A-Za-z0-9._-]*");
  return new RegExp(`^${body}$`);
}

/** Whether a key restricted to these patterns may act as the hostname (null: unrestricted). */
export function hostnameAllowed(patterns: readonly string[] | null, hostname: string): boolean {
  return patterns === null || patterns.some((pattern) => patternRegExp(pattern).test(hostname));
}

/**
 * Whether a job for this target is meant for the agent: `_any`, `_all`, its hostname, or a label
 * target at or above one of its labels (`group:web` for `group=web.dev`). The claim's SQL
 * (`NEW_FOR_AGENT` in src/db/agents.ts) applies the same rule.
 */
export function concerns(
  target: string,
  agent: { hostname: string; labels: Record<string, string> },
): boolean {
  const parsed = parseTarget(target);
  if (parsed === null) return false;
  if (parsed.kind === "any" || parsed.kind === "all") return true;
  if (parsed.kind === "hostname") return parsed.hostname === agent.hostname;
  const have = agent.labels[parsed.key];
  return have !== undefined && (have === parsed.value || have.startsWith(`${parsed.value}.`));
}
