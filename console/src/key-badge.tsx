import { useContext } from "hono/jsx/dom";
import { session } from "./api";
import { OwnKey } from "./own-key";

const prefixOf = (key: string) => /^(jobs_[a-z0-9]+)_/.exec(key)?.[1] ?? "this key";

/** The signed-in key: its name and scopes, from `GET /keys/self`; its prefix until then. */
export function KeyBadge() {
  const { key, error } = useContext(OwnKey);
  const label = key
    ? `${key.name} (${key.scopes.join(", ")})`
    : `${prefixOf(session.key() ?? "")}${error ? ` (${error})` : ""}`;
  return <p class="key">Signed in as {label}</p>;
}
