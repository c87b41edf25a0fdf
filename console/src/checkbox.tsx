import type { PropsWithChildren } from "hono/jsx";

type Props = PropsWithChildren<{ checked: boolean; onChange: (checked: boolean) => void }>;

/** A checkbox inside its label. */
export function Checkbox({ checked, onChange, children }: Props) {
  return (
    <label>
      <input
        type="checkbox"
        checked={checked}
        onChange={(event: Event) => onChange((event.target as HTMLInputElement).checked)}
      />{" "}
      {children}
    </label>
  );
}
