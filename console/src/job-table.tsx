import type { JobList } from "./api";
import { jobHref } from "./route";
import { TableHead } from "./table-head";

export const when = (timestamp: string) => new Date(timestamp).toLocaleString();

export function JobTable({ jobs }: { jobs: JobList["items"] }) {
  if (jobs.length === 0) return <p>No jobs.</p>;
  return (
    <table>
      <caption class="visually-hidden">Jobs, newest first</caption>
      <TableHead columns={["Id", "Operation", "Target", "Status", "Attempt", "Created"]} />
      <tbody>
        {jobs.map((job) => (
          <tr>
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
