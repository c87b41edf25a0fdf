import { LiveBadge } from "./live-badge";
import { useLiveJob } from "./live-job";

/** A job's status, kept current from its event stream until it is final. */
export function LiveJobStatus({ id }: { id: string }) {
  const { job, live } = useLiveJob(id);
  return (
    <span class="live-status">
      {job && <span class={`status status-${job.status}`}>{job.status}</span>}{" "}
      <LiveBadge live={live} />
    </span>
  );
}
