import { useEffect, useState } from "hono/jsx/dom";
import { type AgentList, call } from "./api";

/** What a retry may target: `_any`, `_all`, the given ones, each registered agent and label. */
export function useTargets(...given: string[]): string[] {
  const [agents, setAgents] = useState<AgentList["items"]>([]);
  useEffect(() => {
    call<AgentList>("/agent?limit=100")
      .then(({ body }) => setAgents(body.items))
      .catch(() => setAgents([]));
  }, []);
  const hostnames = agents.map((agent) => agent.hostname);
  const labels = agents.flatMap((agent) =>
    Object.entries(agent.labels).map(([key, value]) => `${key}:${value}`),
  );
  return [...new Set(["_any", "_all", ...given, ...hostnames, ...labels.sort()])];
}
