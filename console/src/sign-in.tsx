import { useState } from "hono/jsx/dom";
import { call, message, session } from "./api";

type Props = { notice: string; onSignedIn: () => void };

/**
 * The sign-in form; `notice` says why the console came back here (a 401's reason). It is read on
 * every render, not copied into state once: the notice may arrive after the form first renders.
 */
export function SignIn({ notice, onSignedIn }: Props) {
  const [failed, setFailed] = useState("");
  const error = failed || notice;
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const key = String(new FormData(form).get("key") ?? "").trim();
    if (!key) return setFailed("Enter an API key.");
    setBusy(true);
    session.signIn(key);
    try {
      await call("/job?limit=1");
      onSignedIn();
    } catch (failure) {
      session.signOut();
      setFailed(message(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="sign-in">
      <h1>Job console</h1>
      <form onSubmit={submit}>
        <label for="key">API key</label>
        <input id="key" name="key" type="password" autocomplete="off" required />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
      <p class="hint">
        The key stays in this tab only (sessionStorage) and goes nowhere but this API.
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </main>
  );
}
