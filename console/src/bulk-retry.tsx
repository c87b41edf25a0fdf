import { useState } from "hono/jsx/dom";
import { type BulkRetryResult, call, message } from "./api";
import { jobHref } from "./route";
import { TargetSelect } from "./target-select";

const LIMIT = 100;

type Props = { status: string; onRetried: () => void };

/** The oldest jobs in a status: a dry run first, then a retry of exactly the jobs it listed. */
export function BulkRetry({ status, onRetried }: Props) {
  const [target, setTarget] = useState("_any");
  const [preview, setPreview] = useState<string[] | null>(null);
  const [result, setResult] = useState<BulkRetryResult | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const send = async (body: object, idempotent: boolean) => {
    setBusy(true);
    setError("");
    try {
      const headers: Record<string, string> = idempotent
        ? { "Idempotency-Key": crypto.randomUUID() }
        : {};
      return (
        await call<BulkRetryResult>("/job/retry", {
          method: "POST",
          body: { ...body, target_hostname: target },
          headers,
        })
      ).body;
    } catch (failure) {
      setError(message(failure));
      return null;
    } finally {
      setBusy(false);
    }
  };
  const dryRun = async () => {
    setResult(null);
    const answer = await send({ status, limit: LIMIT, dry_run: true }, false);
    if (answer)
      setPreview(
        answer.results.filter((r) => r.outcome === "would_retry").map((r) => r.source_job_id),
      );
  };
  const retry = async () => {
    if (!preview?.length) return;
    const answer = await send({ job_ids: preview }, true);
    if (answer) {
      setPreview(null);
      setResult(answer);
      onRetried();
    }
  };

  return (
    <section class="bulk" aria-labelledby="bulk-heading">
      <h2 id="bulk-heading">Retry {status} jobs</h2>
      <div class="actions">
        <TargetSelect id="bulk-target" label="Retry on" value={target} onChange={setTarget} />
        <button type="button" disabled={busy} onClick={dryRun}>
          Dry run
        </button>
        {preview && (
          <button type="button" disabled={busy || preview.length === 0} onClick={retry}>
            Retry {preview.length} jobs
          </button>
        )}
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {preview && (
        <p role="status">
          Dry run: {preview.length} of the oldest {status} jobs (up to {LIMIT}) would be retried on{" "}
          {target}. Nothing was written.
        </p>
      )}
      {result && (
        <>
          <p role="status">
            Retried {result.results.filter((r) => r.outcome === "retried").length} jobs.
          </p>
          <ul class="results">
            {result.results.map((r) => (
              <li>
                <a href={jobHref(r.source_job_id)}>{r.source_job_id}</a>{" "}
                {r.job_id ? (
                  <>
                    → <a href={jobHref(r.job_id)}>{r.job_id}</a>
                  </>
                ) : (
                  `${r.outcome}${r.error ? `: ${r.error}` : ""}`
                )}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
