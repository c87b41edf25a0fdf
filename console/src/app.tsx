import { useEffect, useState } from "hono/jsx/dom";
import { AgentsPage } from "./agents-page";
import { session } from "./api";
import { JobPage } from "./job-page";
import { JobsPage } from "./jobs-page";
import { KeyBadge } from "./key-badge";
import { useRoute } from "./route";
import { SignIn } from "./sign-in";

export function App() {
  const [signedIn, setSignedIn] = useState(session.key() !== null);
  const [notice, setNotice] = useState("");
  const route = useRoute();
  useEffect(() => {
    const signedOut = (event: Event) => {
      setNotice((event as CustomEvent<string>).detail);
      setSignedIn(false);
    };
    window.addEventListener("signed-out", signedOut);
    return () => window.removeEventListener("signed-out", signedOut);
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
    <>
      <header>
        <nav aria-label="Console">
          <a href="#/jobs" aria-current={route.page === "jobs" ? "page" : undefined}>
            Jobs
          </a>
          <a href="#/agents" aria-current={route.page === "agents" ? "page" : undefined}>
            Agents
          </a>
        </nav>
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
        {route.page === "agents" && <AgentsPage />}
        {route.page === "jobs" && <JobsPage filters={route.filters} />}
      </main>
    </>
  );
}
