import { useEffect, useState } from "hono/jsx/dom";
import { ApiError, call, type KeyList, session } from "./api";

const prefixOf = (key: string) => /^(jobs_[a-z0-9]+)_/.exec(key)?.[1] ?? "this key";

/** The signed-in key: its name and scopes when it may list keys (admin), else its prefix. */
export function KeyBadge() {
  const prefix = prefixOf(session.key() ?? "");
  const [label, setLabel] = useState(prefix);
  useEffect(() => {
    call<KeyList>("/keys?limit=100")
      .then(({ body }) => {
        const own = body.items.find((key) => key.prefix === prefix);
        setLabel(own ? `${own.name} (${own.scopes.join(", ")})` : `${prefix} (admin)`);
      })
      .catch((error) => {
        if (error instanceof ApiError && error.status === 403) setLabel(`${prefix} (not admin)`);
      });
  }, [prefix]);
  return <p class="key">Signed in as {label}</p>;
}
