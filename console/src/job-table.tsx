import type { JobList } from "./api";
import { jobHref } from "./route";
import { TableHead } from "./table-head";

export const when = (timestamp: string) => new Date(timestamp).toLocaleString();

type Job = JobList["items"][number];

/** A job a bulk retry may pick: one that ended failed or partly failed. */
export const pickable = (job: Job) => job.status === "failed" || job.status === "partial_failure";

type Props = {
  jobs: Job[];
  /** The picked job ids, and how to pick or unpick some: a checkbox on each pickable row. */
  picked?: string[];
  onPick?: (ids: string[], picked: boolean) => void;
};

export function JobTable({ jobs, picked = [], onPick }: Props) {
  if (jobs.length === 0) return <p>No jobs.</p>;
  const picking = onPick !== undefined && jobs.some(pickable);
  const columns = ["Id", "Operation", "Target", "Status", "Attempt", "Created"];
  return (
    <table>
      <caption class="visually-hidden">Jobs, newest first</caption>
      <TableHead columns={picking ? ["Pick", ...columns] : columns} />
      <tbody>
        {jobs.map((job) => (
          <tr>
            {picking && (
              <td>
                {pickable(job) && (
                  <input
                    type="checkbox"
                    aria-label={`Pick job ${job.id}`}
                    checked={picked.includes(job.id)}
                    onChange={(event: Event) =>
                      onPick?.([job.id], (event.target as HTMLInputElement).checked)
                    }
                  />
                )}
              </td>
            )}
            <td>
              <a href={jobHref(job.id)} class="mono">
                {job.id}
              </a>
            </td>
            <td class="mono">{job.operation.type}</td>
            <td class="mono">{job.target_hostname}</td>
            <td>
              <span class={`status status-${job.status}`}>{job.status}</span>
            </td>
            <td>{job.attempt}</td>
            <td>
              <time datetime={job.created}>{when(job.created)}</time>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
