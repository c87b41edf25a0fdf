import type { JobList } from "./api";
import { jobHref } from "./route";

export const when = (timestamp: string) => new Date(timestamp).toLocaleString();

export function JobTable({ jobs }: { jobs: JobList["items"] }) {
  if (jobs.length === 0) return <p>No jobs.</p>;
  return (
    <table>
      <caption class="visually-hidden">Jobs, newest first</caption>
      <thead>
        <tr>
          <th scope="col">Id</th>
          <th scope="col">Operation</th>
          <th scope="col">Target</th>
          <th scope="col">Status</th>
          <th scope="col">Attempt</th>
          <th scope="col">Created</th>
        </tr>
      </thead>
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
