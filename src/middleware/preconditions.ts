/** A job's strong ETag: its revision, which changes with every batch that changes the job. */
export function etagOf(revision: number): string {
  return `"r${revision}"`;
}

function tags(header: string): string[] {
  return header
    .split(",")
    .map((tag) => tag.trim())
    .filter(Boolean);
}

/**
 * The revisions If-Match accepts (strong comparison, so weak tags never match, and a tag matches
 * only its own spelling: `"r0793"` is no job's tag), or undefined for no header or `*`, which
 * asks only that the job exists.
 */
export function ifMatchRevisions(header: string | undefined): number[] | undefined {
  if (header === undefined || header.trim() === "*") return undefined;
  return tags(header).flatMap((tag) => {
    const match = /^"r(0|[1-9]\d{0,14})"$/.exec(tag);
    return match?.[1] ? [Number(match[1])] : [];
  });
}

/**
 * A job list's strong ETag: the store revision it was read at. Its own shape, so a list's tag is
 * never taken for a job's.
 */
export function listEtagOf(revision: number): string {
  return `"s${revision}"`;
}

/** Whether If-None-Match matches the current ETag (weak comparison). */
export function noneMatchHits(header: string | undefined, current: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === "*") return true;
  return tags(header).some((tag) => tag.replace(/^W\//, "") === current);
}
