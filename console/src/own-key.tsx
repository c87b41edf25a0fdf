import type { Child } from "hono/jsx";
import { createContext, useContext, useEffect, useState } from "hono/jsx/dom";
import type { Scope } from "../../src/auth/api-key";
import { type ApiKey, call, message } from "./api";

type Known = { key: ApiKey | null; error: string };

/** The signed-in key as `GET /keys/self` answers it; `key` is null until it has answered. */
export const OwnKey = createContext<Known>({ key: null, error: "" });

/** Asks `GET /keys/self` once per sign-in. */
export function useOwnKeyQuery(signedIn: boolean): Known {
  const [known, setKnown] = useState<Known>({ key: null, error: "" });
  useEffect(() => {
    setKnown({ key: null, error: "" });
    if (!signedIn) return;
    let current = true;
    call<ApiKey>("/keys/self")
      .then(({ body }) => current && setKnown({ key: body, error: "" }))
      .catch((failure) => current && setKnown({ key: null, error: message(failure) }));
    return () => {
      current = false;
    };
  }, [signedIn]);
  return known;
}

export const useOwnKey = () => useContext(OwnKey).key;

/** Whether the signed-in key has the scope (admin has every scope); false until it is known. */
export function useCan(): (scope: Scope) => boolean {
  const key = useOwnKey();
  return (scope) => key !== null && (key.scopes.includes("admin") || key.scopes.includes(scope));
}

/** The page when the key has the scope; a sentence saying why not when it has not. */
export function Needs({ scope, children }: { scope: Scope; children: Child }) {
  const key = useOwnKey();
  const can = useCan();
  if (key === null) return null;
  if (can(scope)) return <>{children}</>;
  return <p role="status">This key may not see this page: it needs the scope {scope}.</p>;
}
