import { useState } from "hono/jsx/dom";
import { type BulkRetryResult, call } from "./api";
import { jobHref } from "./route";
import { TargetSelect } from "./target-select";
import { useRequest } from "./use-request";

const LIMIT = 100;

type Results = BulkRetryResult["results"];

type Props = {
  /** The table's status filter: with `failed` or `partial_failure`, all such jobs may be retried. */
  status: string | null;
  /** The jobs picked in the table. */
  picked: string[];
  onRetried: () => void;
};

type Preview = { scope: string; picked: boolean; results: Results };

const retriable = (results: Results) =>
  results.filter((r) => r.outcome === "would_retry").map((r) => r.source_job_id);

function ResultList({ results }: { results: Results }) {
  return (
    <ul class="results">
      {results.map((r) => (
        <li>
          <a href={jobHref(r.source_job_id)}>{r.source_job_id}</a>{" "}
          {r.job_id ? (
            <>
              → <a href={jobHref(r.job_id)}>{r.job_id}</a>
            </>
          ) : (
            `${r.outcome.replace("_", " ")}${r.error ? `: ${r.error}` : ""}`
          )}
        </li>
      ))}
    </ul>
  );
}

/**
 * A dry run first, of the picked jobs or of the oldest jobs in a failed status, then a retry of
 * exactly the jobs it said would be retried, with a result per job.
 */
export function BulkRetry({ status, picked, onRetried }: Props) {
  const [target, setTarget] = useState("_any");
  const [preview, setPreview] = useState<Preview | null>(null);
  const [result, setResult] = useState<BulkRetryResult | null>(null);
  // One request at a time: a double click retries the jobs once.
  const { busy, error, run } = useRequest();
  const byStatus = status === "failed" || status === "partial_failure" ? status : null;
  // A dry run stands for the picks, status and target it was made with, and for nothing else.
  const scope = `${target} ${status} ${picked.join(",")}`;
  const shown = preview?.scope === scope ? preview : null;

  const send = async (body: object, idempotent: boolean) => {
    const headers: Record<string, string> = idempotent
      ? { "Idempotency-Key": crypto.randomUUID() }
      : {};
    const answer = await run(() =>
      call<BulkRetryResult>("/job/retry", {
        method: "POST",
        body: { ...body, target_hostname: target },
        headers,
      }),
    );
    return answer?.body ?? null;
  };
  const dryRun = async (ofPicked: boolean) => {
    setResult(null);
    const which = ofPicked ? { job_ids: picked } : { status: byStatus, limit: LIMIT };
    const answer = await send({ ...which, dry_run: true }, false);
    if (answer) setPreview({ scope, picked: ofPicked, results: answer.results });
  };
  const retry = async () => {
    const ids = shown ? retriable(shown.results) : [];
    if (ids.length === 0) return;
    const answer = await send({ job_ids: ids }, true);
    if (answer) {
      setPreview(null);
      setResult(answer);
      onRetried();
    }
  };
  const ids = shown ? retriable(shown.results) : [];

  return (
    <section class="bulk" aria-labelledby="bulk-heading">
      <h2 id="bulk-heading">Retry {picked.length > 0 ? "picked" : (byStatus ?? "failed")} jobs</h2>
      {picked.length === 0 && !byStatus && (
        <p class="hint">Pick failed or partial_failure jobs in the table to retry them.</p>
      )}
      <div class="actions">
        <TargetSelect id="bulk-target" label="Retry on" value={target} onChange={setTarget} />
        {picked.length > 0 && (
          <button type="button" disabled={busy} onClick={() => dryRun(true)}>
            Dry run {picked.length} picked
          </button>
        )}
        {byStatus && (
          <button type="button" disabled={busy} onClick={() => dryRun(false)}>
            Dry run all {byStatus}
          </button>
        )}
        {shown && (
          <button type="button" disabled={busy || ids.length === 0} onClick={retry}>
            Retry {ids.length} jobs
          </button>
        )}
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {shown && (
        <>
          <p role="status">
            {shown.picked
              ? `Dry run: ${ids.length} of the ${picked.length} picked jobs would be retried on ${target}.`
              : `Dry run: ${ids.length} of the oldest ${byStatus} jobs (up to ${LIMIT}) would be retried on ${target}.`}{" "}
            Nothing was written.
          </p>
          {shown.picked && <ResultList results={shown.results} />}
        </>
      )}
      {result && (
        <>
          <p role="status">
            Retried {result.results.filter((r) => r.outcome === "retried").length} jobs.
          </p>
          <ResultList results={result.results} />
        </>
      )}
    </section>
  );
}
