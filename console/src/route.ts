import { useEffect, useState } from "hono/jsx/dom";
import { filtersOf, type JobFilters } from "./job-filters";

export type Route =
  | { page: "jobs"; filters: JobFilters }
  | { page: "agents" }
  | { page: "keys" }
  | { page: "job"; id: string };

const JOB = /^#\/job\/([0-9a-fA-F-]{36})$/;

function parse(hash: string): Route {
  const id = JOB.exec(hash)?.[1];
  if (id) return { page: "job", id: id.toLowerCase() };
  if (hash === "#/agents") return { page: "agents" };
  if (hash === "#/keys") return { page: "keys" };
  return { page: "jobs", filters: filtersOf(hash.startsWith("#/jobs?") ? hash.slice(7) : "") };
}

export const jobHref = (id: string) => `#/job/${id}`;

/** The page the location's hash names: `#/job/<id>`, `#/agents`, `#/keys` or the jobs table (`#/jobs?…`). */
export function useRoute(): Route {
  const [route, setRoute] = useState(parse(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parse(location.hash));
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}
