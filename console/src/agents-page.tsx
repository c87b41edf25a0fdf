import { useEffect, useState } from "hono/jsx/dom";
import { type AgentList, call, message } from "./api";
import { jobsHref } from "./job-filters";
import { when } from "./job-table";
import { Pager, useCursor } from "./pager";
import { TableHead } from "./table-head";

export function AgentsPage() {
  const pages = useCursor();
  const [list, setList] = useState<AgentList | null>(null);
  const [error, setError] = useState("");
  const cursor = pages.cursor;

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
          <TableHead
            columns={["Hostname", "State", "Held jobs", "Labels", "Last seen", "Owner key"]}
          />
          <tbody>
            {list.items.map((agent) => (
              <tr>
                <td class="mono">{agent.hostname}</td>
                <td>{agent.state}</td>
                <td>
                  <a
                    href={jobsHref({ held_by: agent.hostname })}
                    aria-label={`${agent.held_jobs} jobs held by ${agent.hostname}`}
                  >
                    {agent.held_jobs}
                  </a>
                </td>
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
      {list && <Pager pages={pages} nextCursor={list.next_cursor} />}
    </>
  );
}
