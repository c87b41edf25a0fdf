import { useState } from "hono/jsx/dom";
import { call, type Job, type JobAccepted, message } from "./api";
import { jobHref } from "./route";
import { TargetSelect } from "./target-select";

type Props = { job: Job; onRetried: () => void };

/** Retry to `_any`, `_all`, the job's own target or a registered agent; one Idempotency-Key per click. */
export function RetryForm({ job, onRetried }: Props) {
  const [target, setTarget] = useState(job.target_hostname);
  const [result, setResult] = useState<{ id?: string; error?: string }>({});
  const [busy, setBusy] = useState(false);

  const retry = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    try {
      const { body } = await call<JobAccepted>(`/job/${job.id}/retry`, {
        method: "POST",
        body: { target_hostname: target },
        headers: { "Idempotency-Key": crypto.randomUUID() },
      });
      setResult({ id: body.job_id });
      onRetried();
    } catch (failure) {
      setResult({ error: message(failure) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="retry" onSubmit={retry}>
      <TargetSelect
        id="retry-target"
        label="Retry on"
        value={target}
        extra={job.target_hostname}
        onChange={setTarget}
      />
      <button type="submit" disabled={busy}>
        Retry
      </button>
      {result.id && (
        <p role="status">
          Retried as <a href={jobHref(result.id)}>{result.id}</a>
        </p>
      )}
      {result.error && (
        <p class="error" role="alert">
          {result.error}
        </p>
      )}
    </form>
  );
}
