import { useState } from "hono/jsx/dom";
import { HOSTNAME, type JobFilters, jobsHref, queryOf, UUID } from "./job-filters";
import { useScopedState } from "./scoped-state";
import { TargetSelect } from "./target-select";

type Draft = Required<Pick<JobFilters, "target" | "root_job_id" | "retry_of" | "held_by">>;

const draftOf = (filters: JobFilters): Draft => ({
  target: filters.target ?? "",
  root_job_id: filters.root_job_id ?? "",
  retry_of: filters.retry_of ?? "",
  held_by: filters.held_by ?? "",
});

function problem(draft: Draft): string {
  for (const [name, label] of [
    ["root_job_id", "A root job id"],
    ["retry_of", "A “retries of” job id"],
  ] as const) {
    const id = draft[name].trim();
    if (id && !UUID.test(id))
      return `${label} is a UUID, like 5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10.`;
  }
  const host = draft.held_by.trim();
  if (host && !HOSTNAME.test(host)) return "“Held by” is an agent's hostname.";
  return "";
}

/** Target, lineage and holder: applied to the location's hash, so the view is a link. */
export function JobFilterForm({ filters }: { filters: JobFilters }) {
  const applied = queryOf(filters).toString();
  const [draft, setDraft] = useScopedState(applied, () => draftOf(filters));
  const [error, setError] = useState("");
  const edit = (name: keyof Draft, value: string) => setDraft({ ...draft, [name]: value });
  const input = (name: keyof Draft, id: string, label: string) => (
    <>
      <label for={id}>{label}</label>
      <input
        id={id}
        value={draft[name]}
        onInput={(event: Event) => edit(name, (event.target as HTMLInputElement).value)}
      />
    </>
  );
  const apply = (event: Event) => {
    event.preventDefault();
    const wrong = problem(draft);
    setError(wrong);
    if (wrong) return;
    location.hash = jobsHref({
      status: filters.status,
      target: draft.target,
      root_job_id: draft.root_job_id.trim().toLowerCase(),
      retry_of: draft.retry_of.trim().toLowerCase(),
      held_by: draft.held_by.trim(),
    });
  };
  return (
    <form class="filters" aria-label="Filters" onSubmit={apply}>
      <TargetSelect
        id="filter-target"
        label="Target"
        value={draft.target}
        blank="any target"
        extra={filters.target}
        onChange={(target) => edit("target", target)}
      />
      {input("root_job_id", "filter-root", "Root job id")}
      {input("retry_of", "filter-retry-of", "Retries of")}
      {input("held_by", "filter-held-by", "Held by")}
      <button type="submit">Apply filters</button>
      {applied && <a href={jobsHref()}>Clear filters</a>}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
