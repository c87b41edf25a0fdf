import { useEffect, useState } from "hono/jsx/dom";
import { AgentsPage } from "./agents-page";
import { session, signOutReason } from "./api";
import { JobPage } from "./job-page";
import { JobsPage } from "./jobs-page";
import { KeyBadge } from "./key-badge";
import { KeysPage } from "./keys-page";
import { Needs, OwnKey, useCan, useOwnKeyQuery } from "./own-key";
import { type Route, useRoute } from "./route";
import { SignIn } from "./sign-in";

function Nav({ route }: { route: Route }) {
  const can = useCan();
  const current = (page: Route["page"]) => (route.page === page ? "page" : undefined);
  return (
    <nav aria-label="Console">
      <a href="#/jobs" aria-current={current("jobs")}>
        Jobs
      </a>
      {can("agent:read") && (
        <a href="#/agents" aria-current={current("agents")}>
          Agents
        </a>
      )}
      {can("admin") && (
        <a href="#/keys" aria-current={current("keys")}>
          Keys
        </a>
      )}
    </nav>
  );
}

export function App() {
  const [signedIn, setSignedIn] = useState(session.key() !== null);
  const [notice, setNotice] = useState("");
  const route = useRoute();
  const own = useOwnKeyQuery(signedIn);
  useEffect(() => {
    const signedOut = (reason: string) => {
      setNotice(reason);
      setSignedIn(false);
    };
    const listener = (event: Event) => signedOut((event as CustomEvent<string>).detail);
    window.addEventListener("signed-out", listener);
    // A 401 answered before this effect ran (pages ask the API from their own, earlier effects).
    if (signedIn && session.key() === null) signedOut(signOutReason());
    return () => window.removeEventListener("signed-out", listener);
  }, []);

  if (!signedIn) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={() => {
          setNotice("");
          setSignedIn(true);
        }}
      />
    );
  }
  return (
    <OwnKey.Provider value={own}>
      <header>
        <Nav route={route} />
        <KeyBadge />
        <button
          type="button"
          onClick={() => {
            session.signOut();
            setSignedIn(false);
          }}
        >
          Sign out
        </button>
      </header>
      <main>
        {route.page === "job" && <JobPage id={route.id} />}
        {route.page === "agents" && (
          <Needs scope="agent:read">
            <AgentsPage />
          </Needs>
        )}
        {route.page === "keys" && (
          <Needs scope="admin">
            <KeysPage />
          </Needs>
        )}
        {route.page === "jobs" && <JobsPage filters={route.filters} />}
      </main>
    </OwnKey.Provider>
  );
}
