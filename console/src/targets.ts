import { useEffect, useState } from "hono/jsx/dom";
import { type AgentList, call } from "./api";

/** What a retry may target: `_any`, `_all`, the given ones and every registered agent. */
export function useTargets(...given: string[]): string[] {
  const [agents, setAgents] = useState<string[]>([]);
  useEffect(() => {
    call<AgentList>("/agent?limit=100")
      .then(({ body }) => setAgents(body.items.map((agent) => agent.hostname)))
      .catch(() => setAgents([]));
  }, []);
  return [...new Set(["_any", "_all", ...given, ...agents])];
}
