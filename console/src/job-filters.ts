/** What the jobs table shows, as `GET /job` takes it and as the location's hash keeps it. */
export type JobFilters = {
  status?: string;
  target?: string;
  root_job_id?: string;
  retry_of?: string;
  held_by?: string;
};

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

const NAMES = ["status", "target", "root_job_id", "retry_of", "held_by"] as const;

export function filtersOf(search: string): JobFilters {
  const params = new URLSearchParams(search);
  const filters: JobFilters = {};
  for (const name of NAMES) {
    const value = params.get(name)?.trim();
    if (value) filters[name] = value;
  }
  return filters;
}

/** The filters as query parameters, in one order, so equal filters are equal strings. */
export function queryOf(filters: JobFilters): URLSearchParams {
  const params = new URLSearchParams();
  for (const name of NAMES) {
    const value = filters[name];
    if (value) params.set(name, value);
  }
  return params;
}

/** The jobs table with these filters: a link that can be shared, and a step Back returns from. */
export function jobsHref(filters: JobFilters = {}): string {
  const query = queryOf(filters).toString();
  return query ? `#/jobs?${query}` : "#/jobs";
}
