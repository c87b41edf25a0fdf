import { useEffect, useRef, useState } from "hono/jsx/dom";
import { call, type JobList, message } from "./api";
import { BulkRetry } from "./bulk-retry";
import { JobFilterForm } from "./job-filter-form";
import { type JobFilters, jobsHref, queryOf, UUID } from "./job-filters";
import { JobTable, pickable } from "./job-table";
import { useCan } from "./own-key";
import { Pager, useCursor } from "./pager";
import { useScopedState } from "./scoped-state";
import { StatusChips } from "./status-chips";
import { useVisibleInterval } from "./visible-interval";

const PAGE_SIZE = 25;
const REFRESH_SECONDS = 5;

type Shown = { path: string; list: JobList; etag: string | null };

/** Picks that belong to one view: other filters start with none. */
function usePicks(scope: string) {
  const [ids, setIds] = useScopedState<string[]>(scope, () => []);
  const pick = (some: string[], on: boolean) =>
    setIds(on ? [...new Set([...ids, ...some])] : ids.filter((id) => !some.includes(id)));
  return { ids, pick, clear: () => setIds([]) };
}

export function JobsPage({ filters }: { filters: JobFilters }) {
  const scope = queryOf(filters).toString();
  const pages = useCursor(scope);
  const picks = usePicks(scope);
  const [shown, setShown] = useState<Shown | null>(null);
  const [checkedAt, setCheckedAt] = useState<Date | null>(null);
  const [error, setError] = useState("");
  const [search, setSearch] = useState("");
  const [reloads, setReloads] = useState(0);
  const can = useCan();

  const query = queryOf(filters);
  query.set("limit", String(PAGE_SIZE));
  if (pages.cursor) query.set("cursor", pages.cursor);
  const path = `/job?${query}`;
  const latest = useRef({ path, shown });
  latest.current = { path, shown };

  /** Reads the page; `conditional`: with the ETag of the page shown, so no change costs a 304. */
  const load = async (conditional: boolean) => {
    const held = latest.current.shown;
    const etag = conditional && held?.path === path ? held.etag : null;
    try {
      const answer = await call<JobList>(path, etag ? { headers: { "If-None-Match": etag } } : {});
      if (latest.current.path !== path) return;
      if (answer.status !== 304) setShown({ path, list: answer.body, etag: answer.etag });
      setCheckedAt(new Date());
      setError("");
    } catch (failure) {
      if (latest.current.path === path) setError(message(failure));
    }
  };
  useEffect(() => {
    load(false);
  }, [path, reloads]);
  const live = useVisibleInterval(REFRESH_SECONDS, () => load(true));

  const filter = (status: string | null) => {
    location.hash = jobsHref({ ...filters, status: status ?? undefined });
  };
  const find = (event: Event) => {
    event.preventDefault();
    const id = search.trim();
    if (UUID.test(id)) location.hash = `#/job/${id.toLowerCase()}`;
    else setError("A job id is a UUID, like 5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10.");
  };
  const list = shown?.list;
  const onPage = list?.items.filter(pickable).map((job) => job.id) ?? [];
  const allPicked = onPage.length > 0 && onPage.every((id) => picks.ids.includes(id));
  const status = filters.status ?? null;
  const failedStatus = status === "failed" || status === "partial_failure";

  return (
    <>
      <h1>Jobs</h1>
      <form class="search" onSubmit={find}>
        <label for="job-id">Job id</label>
        <input
          id="job-id"
          value={search}
          onInput={(event: Event) => setSearch((event.target as HTMLInputElement).value)}
        />
        <button type="submit">Open</button>
      </form>
      <JobFilterForm filters={filters} />
      {list && <StatusChips counts={list.status_counts} selected={status} onSelect={filter} />}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list && (
        <>
          <div class="actions">
            <p aria-live="polite">Matching jobs: {list.total_items}</p>
            {checkedAt && (
              <p class="hint">
                {live ? "Live" : "Paused while the tab is hidden"}, updated{" "}
                <time datetime={checkedAt.toISOString()}>{checkedAt.toLocaleTimeString()}</time>
              </p>
            )}
            {can("job:write") && onPage.length > 0 && (
              <label>
                <input
                  type="checkbox"
                  checked={allPicked}
                  onChange={(event: Event) =>
                    picks.pick(onPage, (event.target as HTMLInputElement).checked)
                  }
                />{" "}
                Pick all failed jobs on this page
              </label>
            )}
          </div>
          <JobTable
            jobs={list.items}
            picked={picks.ids}
            onPick={can("job:write") ? picks.pick : undefined}
          />
          <Pager pages={pages} nextCursor={list.next_cursor}>
            <button type="button" onClick={() => setReloads(reloads + 1)}>
              Refresh
            </button>
          </Pager>
          {can("job:write") &&
            (onPage.length > 0 ||
              picks.ids.length > 0 ||
              (failedStatus && list.total_items > 0)) && (
              <BulkRetry
                status={status}
                picked={picks.ids}
                onRetried={() => {
                  picks.clear();
                  setReloads(reloads + 1);
                }}
              />
            )}
        </>
      )}
    </>
  );
}
