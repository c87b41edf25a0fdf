import { useTargets } from "./targets";

type Props = {
  id: string;
  label: string;
  value: string;
  extra?: string | undefined;
  /** The words for an empty choice (no target), when one is offered. */
  blank?: string;
  onChange: (target: string) => void;
};

export function TargetSelect({ id, label, value, extra, blank, onChange }: Props) {
  const targets = useTargets(...(extra ? [extra] : []));
  return (
    <>
      <label for={id}>{label}</label>
      <select
        id={id}
        onChange={(event: Event) => onChange((event.target as HTMLSelectElement).value)}
      >
        {blank !== undefined && (
          <option value="" selected={value === ""}>
            {blank}
          </option>
        )}
        {targets.map((name) => (
          <option value={name} selected={name === value}>
            {name}
          </option>
        ))}
      </select>
    </>
  );
}
