import { useEffect, useState } from "hono/jsx/dom";
import { type ApiKey, type CreatedKey, call, type KeyList, message, signOut } from "./api";
import { CreateKeyForm } from "./create-key-form";
import { when } from "./job-table";
import { useOwnKey } from "./own-key";
import { Pager, useCursor } from "./pager";
import { RotateKeyForm } from "./rotate-key-form";
import { SecretOnce } from "./secret-once";
import { TableHead } from "./table-head";

const PAGE_SIZE = 25;

type Shown = { heading: string; created: CreatedKey };

const at = (timestamp: string | null, otherwise: string) =>
  timestamp ? <time datetime={timestamp}>{when(timestamp)}</time> : otherwise;

const stateOf = (key: ApiKey) =>
  key.state === "active" && key.replaced_by ? "active, rotated" : key.state;

function revokeQuestion(key: ApiKey, mine: boolean) {
  const which = `${key.name} (${key.prefix})`;
  return mine
    ? `Revoke ${which}? It is the key you are signed in with: the console will sign out, and the key will be refused from now on.`
    : `Revoke ${which}? It will be refused from now on. This cannot be undone.`;
}

/** `#/keys`, for admin keys: every key, newest first; create, rotate and revoke. */
export function KeysPage() {
  const own = useOwnKey();
  const pages = useCursor();
  const [list, setList] = useState<KeyList | null>(null);
  const [error, setError] = useState("");
  const [reloads, setReloads] = useState(0);
  const [rotating, setRotating] = useState<ApiKey | null>(null);
  const [shown, setShown] = useState<Shown | null>(null);
  const cursor = pages.cursor;

  useEffect(() => {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    call<KeyList>(`/keys?${query}`)
      .then(({ body }) => {
        setList(body);
        setError("");
      })
      .catch((failure) => setError(message(failure)));
  }, [cursor, reloads]);

  const reload = () => setReloads((n) => n + 1);
  const show = (heading: string, created: CreatedKey) => {
    setShown({ heading, created });
    setRotating(null);
    pages.first();
    reload();
  };
  const revoke = async (key: ApiKey) => {
    const mine = key.id === own?.id;
    if (!confirm(revokeQuestion(key, mine))) return;
    try {
      await call(`/keys/${key.id}`, { method: "DELETE" });
      if (mine) return signOut("You revoked the key you were signed in with.");
      if (rotating?.id === key.id) setRotating(null);
      reload();
    } catch (failure) {
      setError(message(failure));
    }
  };

  return (
    <>
      <h1>Keys</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {shown && (
        <SecretOnce heading={shown.heading} created={shown.created} onDone={() => setShown(null)} />
      )}
      <CreateKeyForm onCreated={(created) => show(`New key ${created.name}`, created)} />
      <h2>All keys</h2>
      {list && <p>Keys, revoked and expired ones too: {list.total_items}</p>}
      {list && list.items.length > 0 && (
        <table>
          <caption class="visually-hidden">API keys, newest first</caption>
          <TableHead
            columns={[
              "Name",
              "Prefix",
              "Scopes",
              "State",
              "Created",
              "Expires",
              "Last used",
              "Actions",
            ]}
          />
          <tbody>
            {list.items.map((key) => (
              <tr>
                <td>
                  {key.name}
                  {key.id === own?.id && <strong> (this key)</strong>}
                </td>
                <td class="mono">{key.prefix}</td>
                <td>
                  {key.scopes.join(", ")}
                  {key.agent_hostnames && (
                    <span class="hint"> (agents: {key.agent_hostnames.join(", ")})</span>
                  )}
                </td>
                <td>{stateOf(key)}</td>
                <td>{at(key.created_at, "")}</td>
                <td>{at(key.expires_at, "never")}</td>
                <td>{at(key.last_used_at, "never")}</td>
                <td>
                  {key.state === "active" && (
                    <div class="row-actions">
                      {!key.replaced_by && (
                        <button type="button" onClick={() => setRotating(key)}>
                          Rotate<span class="visually-hidden"> {key.prefix}</span>
                        </button>
                      )}
                      <button type="button" class="danger" onClick={() => revoke(key)}>
                        Revoke<span class="visually-hidden"> {key.prefix}</span>
                      </button>
                    </div>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {rotating && (
        <RotateKeyForm
          target={rotating}
          signedInWithIt={rotating.id === own?.id}
          onRotated={(created) => show(`Rotated: the new key for ${created.name}`, created)}
          onCancel={() => setRotating(null)}
        />
      )}
      {list && <Pager pages={pages} nextCursor={list.next_cursor} />}
    </>
  );
}
