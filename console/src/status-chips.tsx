import type { JobList } from "./api";

type Props = {
  counts: JobList["status_counts"];
  selected: string | null;
  onSelect: (status: string | null) => void;
};

/** `status_counts` as toggle buttons: one pressed filters the table to that status. */
export function StatusChips({ counts, selected, onSelect }: Props) {
  const total = Object.values(counts).reduce((sum, count) => sum + count, 0);
  const chip = (status: string | null, label: string, count: number) => (
    <button
      type="button"
      class="chip"
      aria-pressed={selected === status ? "true" : "false"}
      onClick={() => onSelect(status)}
    >
      {label} <span class="count">{count}</span>
    </button>
  );
  return (
    <fieldset class="chips">
      <legend class="visually-hidden">Filter by status</legend>
      {chip(null, "all", total)}
      {Object.entries(counts).map(([status, count]) => chip(status, status, count))}
    </fieldset>
  );
}
