import { useEffect, useState } from "hono/jsx/dom";
import { call, type JobList, message } from "./api";
import { BulkRetry } from "./bulk-retry";
import { JobTable } from "./job-table";
import { useCan } from "./own-key";
import { Pager, useCursor } from "./pager";
import { StatusChips } from "./status-chips";

const PAGE_SIZE = 25;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function JobsPage() {
  const [status, setStatus] = useState<string | null>(null);
  const pages = useCursor();
  const [list, setList] = useState<JobList | null>(null);
  const [error, setError] = useState("");
  const [search, setSearch] = useState("");
  const [reloads, setReloads] = useState(0);
  const cursor = pages.cursor;
  const can = useCan();

  useEffect(() => {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (status) query.set("status", status);
    if (cursor) query.set("cursor", cursor);
    call<JobList>(`/job?${query}`)
      .then(({ body }) => {
        setList(body);
        setError("");
      })
      .catch((failure) => setError(message(failure)));
  }, [status, cursor, reloads]);

  const filter = (next: string | null) => {
    setStatus(next);
    pages.first();
  };
  const find = (event: Event) => {
    event.preventDefault();
    const id = search.trim();
    if (UUID.test(id)) location.hash = `#/job/${id.toLowerCase()}`;
    else setError("A job id is a UUID, like 5b0e2a52-7a4b-4c1e-9d07-4a3b1f7c2e10.");
  };

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
      {list && <StatusChips counts={list.status_counts} selected={status} onSelect={filter} />}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list && (
        <>
          <p aria-live="polite">Matching jobs: {list.total_items}</p>
          <JobTable jobs={list.items} />
          <Pager pages={pages} nextCursor={list.next_cursor}>
            <button type="button" onClick={() => setReloads(reloads + 1)}>
              Refresh
            </button>
          </Pager>
          {can("job:write") &&
            (status === "failed" || status === "partial_failure") &&
            list.total_items > 0 && (
              <BulkRetry status={status} onRetried={() => setReloads(reloads + 1)} />
            )}
        </>
      )}
    </>
  );
}
