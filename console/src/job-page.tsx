import { useState } from "hono/jsx/dom";
import { call, message } from "./api";
import { when } from "./job-table";
import { LiveBadge } from "./live-badge";
import { useLiveJob } from "./live-job";
import { useCan } from "./own-key";
import { RetryForm } from "./retry-form";
import { jobHref } from "./route";
import { TableHead } from "./table-head";

export function JobPage({ id }: { id: string }) {
  const { job, etag, error: readError, live, refresh: reload } = useLiveJob(id);
  const [error, setError] = useState("");
  const [done, setDone] = useState("");
  const can = useCan();

  const cancel = async () => {
    try {
      const { status } = await call(`/job/${id}/cancel`, { method: "POST" });
      setDone(status === 202 ? "Cancel requested: an agent holds the job." : "Cancelled.");
      reload();
    } catch (failure) {
      setError(message(failure));
    }
  };
  const remove = async () => {
    if (!confirm(`Delete job ${id} and its events? This cannot be undone.`)) return;
    try {
      await call(`/job/${id}`, { method: "DELETE", headers: etag ? { "If-Match": etag } : {} });
      location.hash = "#/jobs";
    } catch (failure) {
      setError(message(failure));
    }
  };

  return (
    <>
      <h1>
        Job <span class="mono">{id}</span>
      </h1>
      <p role="status">
        Updates: <LiveBadge live={live} />
      </p>
      {(error || readError) && (
        <p class="error" role="alert">
          {error || readError}
        </p>
      )}
      {done && <p role="status">{done}</p>}
      {job && (
        <>
          <dl class="facts">
            <dt>Status</dt>
            <dd>
              <span class={`status status-${job.status}`}>{job.status}</span>
              {job.cancel_requested && " (cancel requested)"}
            </dd>
            <dt>Target</dt>
            <dd class="mono">{job.target_hostname}</dd>
            <dt>Attempt</dt>
            <dd>{job.attempt}</dd>
            <dt>Created</dt>
            <dd>{when(job.created)}</dd>
            {job.error && (
              <>
                <dt>Error</dt>
                <dd>{job.error}</dd>
              </>
            )}
          </dl>
          <nav class="lineage" aria-label="Lineage">
            {job.retry_of ? (
              <a href={jobHref(job.retry_of)} rel="prev">
                ← retry of {job.retry_of}
              </a>
            ) : (
              <span>original</span>
            )}
            <span aria-current="page"> this job </span>
            {job.retried_as.map((next) => (
              <a href={jobHref(next)} rel="next">
                retried as {next} →
              </a>
            ))}
          </nav>
          {can("job:write") && (
            <div class="actions">
              <RetryForm key={job.id} job={job} onRetried={reload} />
              <button type="button" onClick={cancel}>
                Cancel job
              </button>
              <button type="button" class="danger" onClick={remove}>
                Delete job
              </button>
            </div>
          )}
          <h2>Operation</h2>
          {job.operation_changed && job.retry_of && (
            <p class="hint">
              Operation changed from the original (
              <a href={jobHref(job.retry_of)} class="mono">
                {job.retry_of}
              </a>
              ).
            </p>
          )}
          <pre class="json" tabindex={0}>
            {JSON.stringify(job.operation, null, 2)}
          </pre>
          <h2>Agents</h2>
          {Object.keys(job.agent_states).length === 0 ? (
            <p>No agent has taken it yet.</p>
          ) : (
            <table>
              <TableHead columns={["Agent", "State", "Duration", "Error"]} />
              <tbody>
                {Object.entries(job.agent_states).map(([hostname, state]) => (
                  <tr>
                    <td class="mono">{hostname}</td>
                    <td>{state.status}</td>
                    <td>{state.duration ?? ""}</td>
                    <td>{state.error ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <h2>Timeline</h2>
          <ol class="timeline">
            {job.timeline.map((entry) => (
              <li>
                <time datetime={entry.timestamp}>{when(entry.timestamp)}</time> {entry.message}
                {entry.error ? `: ${entry.error}` : ""}
              </li>
            ))}
          </ol>
        </>
      )}
    </>
  );
}
