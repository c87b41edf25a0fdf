/**
 * Where a webhook may send: https to a public host, or any http(s) host listed in
 * WEBHOOK_ALLOW_HOSTS (local development). Names that mean this machine or a private network
 * (loopback, private, link-local, carrier-grade NAT, multicast, unspecified) are refused as
 * literals; a public name that resolves to such an address is Cloudflare's to refuse.
 */
export function webhookUrlProblem(value: string, allowHosts: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "must be an absolute URL";
  }
  if (url.username || url.password) return "must not carry credentials";
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, "");
  const allowed = allowHosts
    .split(",")
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  if (allowed.includes(host)) {
    return url.protocol === "https:" || url.protocol === "http:" ? null : "must be http(s)";
  }
  if (url.protocol !== "https:") return "must be https";
  if (
    host === "localhost" ||
    host.endsWith(".localhost") ||
    host.endsWith(".local") ||
    host.endsWith(".internal") ||
    (!host.includes(".") && !host.includes(":")) ||
    privateIPv4(host) ||
    privateIPv6(host)
  )
    return `must not name a loopback, private or link-local host (${host})`;
  return null;
}

function privateIPv4(host: string): boolean {
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p))) return false;
  const [a, b] = parts.map(Number) as [number, number];
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    (a === 100 && b >= 64 && b < 128) ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b < 32) ||
    (a === 192 && b === 168) ||
    a >= 224
  );
}

function privateIPv6(host: string): boolean {
  if (!host.includes(":")) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
  if (mapped) return privateIPv4(mapped[1] as string);
  return (
    host === "::" ||
    host === "::1" ||
    /^f[cd][0-9a-f]{0,2}:/.test(host) ||
    /^fe[89ab][0-9a-f]?:/.test(host) ||
    /^ff/.test(host) ||
    host.startsWith("::ffff:")
  );
}
