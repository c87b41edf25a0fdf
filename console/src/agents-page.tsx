import { useEffect, useState } from "hono/jsx/dom";
import { type AgentList, call, message } from "./api";
import { when } from "./job-table";

export function AgentsPage() {
  const [cursors, setCursors] = useState<string[]>([]);
  const [list, setList] = useState<AgentList | null>(null);
  const [error, setError] = useState("");
  const cursor = cursors.at(-1);

  useEffect(() => {
    const query = new URLSearchParams({ limit: "50" });
    if (cursor) query.set("cursor", cursor);
    call<AgentList>(`/agent?${query}`)
      .then(({ body }) => {
        setList(body);
        setError("");
      })
      .catch((failure) => setError(message(failure)));
  }, [cursor]);

  return (
    <>
      <h1>Agents</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list && list.items.length === 0 && <p>No agent is registered.</p>}
      {list && list.items.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Hostname</th>
              <th scope="col">State</th>
              <th scope="col">Labels</th>
              <th scope="col">Last seen</th>
              <th scope="col">Owner key</th>
            </tr>
          </thead>
          <tbody>
            {list.items.map((agent) => (
              <tr>
                <td class="mono">{agent.hostname}</td>
                <td>{agent.state}</td>
                <td class="mono">
                  {Object.entries(agent.labels)
                    .map(([key, value]) => `${key}:${value}`)
                    .join(", ")}
                </td>
                <td>
                  <time datetime={agent.last_seen}>{when(agent.last_seen)}</time>
                </td>
                <td class="mono">{agent.owner_key_prefix ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list && (
        <nav class="pages" aria-label="Pages">
          <button type="button" disabled={!cursor} onClick={() => setCursors([])}>
            First page
          </button>
          <button
            type="button"
            disabled={!list.next_cursor}
            onClick={() => list.next_cursor && setCursors([...cursors, list.next_cursor])}
          >
            Next page
          </button>
        </nav>
      )}
    </>
  );
}
