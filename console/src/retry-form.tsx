import { useRef, useState } from "hono/jsx/dom";
import { call, type Job, type JobAccepted, message } from "./api";
import { Checkbox } from "./checkbox";
import { LiveJobStatus } from "./live-job-status";
import { formatted, OperationEditor, operationChange } from "./operation-editor";
import { jobHref } from "./route";
import { TargetSelect } from "./target-select";

type Props = { job: Job; onRetried: () => void };

/**
 * Retry to `_any`, `_all`, the job's own target or a registered agent, with the operation as it was
 * or changed; one Idempotency-Key per click, and no second request while one is on its way (a
 * double click makes one job: the disabled button comes a render too late to stop the second click).
 */
export function RetryForm({ job, onRetried }: Props) {
  const [target, setTarget] = useState(job.target_hostname);
  const [operation, setOperation] = useState(formatted(job.operation));
  const [asPatch, setAsPatch] = useState(false);
  const [resetAttempts, setResetAttempts] = useState(false);
  const [result, setResult] = useState<{ id?: string; error?: string; invalid?: boolean }>({});
  const [busy, setBusy] = useState(false);
  const sending = useRef(false);

  const retry = async (event: Event) => {
    event.preventDefault();
    if (sending.current) return;
    const change = operationChange(job.operation, operation, asPatch);
    if ("invalid" in change) {
      setResult({ error: change.invalid, invalid: true });
      return;
    }
    setResult({});
    setBusy(true);
    sending.current = true;
    try {
      const { body } = await call<JobAccepted>(`/job/${job.id}/retry`, {
        method: "POST",
        body: {
          target_hostname: target,
          ...change,
          ...(resetAttempts ? { reset_attempts: true } : {}),
        },
        headers: { "Idempotency-Key": crypto.randomUUID() },
      });
      setResult({ id: body.job_id });
      onRetried();
    } catch (failure) {
      setResult({ error: message(failure) });
    } finally {
      sending.current = false;
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
      <Checkbox checked={resetAttempts} onChange={setResetAttempts}>
        Count attempts from 1 again
      </Checkbox>
      <button type="submit" disabled={busy}>
        Retry
      </button>
      <OperationEditor
        text={operation}
        asPatch={asPatch}
        invalid={result.invalid === true}
        errorId="retry-error"
        onText={setOperation}
        onPatch={setAsPatch}
      />
      {result.id && (
        <p role="status">
          Retried as <a href={jobHref(result.id)}>{result.id}</a>: <LiveJobStatus id={result.id} />
        </p>
      )}
      {result.error && (
        <p id="retry-error" class="error" role="alert">
          {result.error}
        </p>
      )}
    </form>
  );
}
