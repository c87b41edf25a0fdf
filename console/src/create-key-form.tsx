import { SCOPES } from "../../src/auth/api-key";
import { type CreatedKey, call } from "./api";
import { useRequest } from "./use-request";

/**
 * `POST /keys`: a name, its scopes and, optionally, days until it expires and the hostname
 * patterns an agent key may act as (separated by commas or spaces).
 */
export function CreateKeyForm({ onCreated }: { onCreated: (key: CreatedKey) => void }) {
  const { busy, error, run } = useRequest();

  const submit = (event: Event) => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const data = new FormData(form);
    const days = String(data.get("expires_in_days") ?? "").trim();
    const hostnames = String(data.get("agent_hostnames") ?? "")
      .split(/[\s,]+/)
      .filter(Boolean);
    return run(async () => {
      const { body } = await call<CreatedKey>("/keys", {
        method: "POST",
        body: {
          name: String(data.get("name") ?? ""),
          scopes: data.getAll("scopes").map(String),
          ...(days ? { expires_in_days: Number(days) } : {}),
          ...(hostnames.length > 0 ? { agent_hostnames: hostnames } : {}),
        },
      });
      form.reset();
      onCreated(body);
    });
  };
  return (
    <section aria-labelledby="create-key-heading">
      <h2 id="create-key-heading">Create a key</h2>
      <form class="create-key" onSubmit={submit}>
        <label for="key-name">Name</label>
        <input id="key-name" name="name" required maxlength={100} />
        <fieldset class="scopes">
          <legend>Scopes</legend>
          {SCOPES.map((scope) => (
            <label>
              <input type="checkbox" name="scopes" value={scope} /> {scope}
            </label>
          ))}
        </fieldset>
        <label for="key-days">Expires in days (empty: never)</label>
        <input id="key-days" name="expires_in_days" type="number" min={1} max={3650} />
        <label for="key-agents">Agent hostnames (patterns such as web-*; empty: any)</label>
        <input id="key-agents" name="agent_hostnames" placeholder="web-01, db-*" />
        <button type="submit" disabled={busy}>
          Create key
        </button>
      </form>
      <p class="hint">admin may do everything, managing keys included.</p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
