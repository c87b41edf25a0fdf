import { useState } from "hono/jsx/dom";
import { call, type Job, type JobAccepted } from "./api";
import { Checkbox } from "./checkbox";
import { LiveJobStatus } from "./live-job-status";
import { formatted, OperationEditor, operationChange } from "./operation-editor";
import { jobHref } from "./route";
import { TargetSelect } from "./target-select";
import { useRequest } from "./use-request";

type Props = { job: Job; onRetried: () => void };

/**
 * Retry to `_any`, `_all`, the job's own target or a registered agent, with the operation as it was
 * or changed; one Idempotency-Key per click, and no second request while one is on its way (a
 * double click makes one job: useRequest).
 */
export function RetryForm({ job, onRetried }: Props) {
  const [target, setTarget] = useState(job.target_hostname);
  const [operation, setOperation] = useState(formatted(job.operation));
  const [asPatch, setAsPatch] = useState(false);
  const [resetAttempts, setResetAttempts] = useState(false);
  const [retried, setRetried] = useState<string | null>(null);
  const [invalid, setInvalid] = useState("");
  const request = useRequest();
  const error = invalid || request.error;

  const retry = async (event: Event) => {
    event.preventDefault();
    const change = operationChange(job.operation, operation, asPatch);
    setInvalid("invalid" in change ? change.invalid : "");
    if ("invalid" in change) return;
    setRetried(null);
    const answer = await request.run(() =>
      call<JobAccepted>(`/job/${job.id}/retry`, {
        method: "POST",
        body: {
          target_hostname: target,
          ...change,
          ...(resetAttempts ? { reset_attempts: true } : {}),
        },
        headers: { "Idempotency-Key": crypto.randomUUID() },
      }),
    );
    if (answer) {
      setRetried(answer.body.job_id);
      onRetried();
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
      <button type="submit" disabled={request.busy}>
        Retry
      </button>
      <OperationEditor
        text={operation}
        asPatch={asPatch}
        invalid={invalid !== ""}
        errorId="retry-error"
        onText={setOperation}
        onPatch={setAsPatch}
      />
      {retried && (
        <p role="status">
          Retried as <a href={jobHref(retried)}>{retried}</a>: <LiveJobStatus id={retried} />
        </p>
      )}
      {error && (
        <p id="retry-error" class="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
