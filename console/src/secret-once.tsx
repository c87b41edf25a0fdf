import { useEffect, useRef, useState } from "hono/jsx/dom";
import type { CreatedKey } from "./api";

type Props = { heading: string; created: CreatedKey; onDone: () => void };

/** A new key's secret, the one time the API shows it: read-only, with Copy and a warning. */
export function SecretOnce({ heading, created, onDone }: Props) {
  const field = useRef<HTMLInputElement>(null);
  const [copied, setCopied] = useState("");
  useEffect(() => {
    setCopied("");
    field.current?.focus();
  }, [created.key]);

  const copy = async () => {
    try {
      await navigator.clipboard.writeText(created.key);
      setCopied("Copied.");
    } catch {
      field.current?.focus();
      field.current?.select();
      setCopied("The browser would not copy it: the secret is selected, press Ctrl+C to copy it.");
    }
  };
  return (
    <section class="panel" aria-labelledby="secret-heading">
      <h2 id="secret-heading">{heading}</h2>
      <p class="warning">
        Copy the secret now: it will not be shown again. The service keeps only its hash.
      </p>
      <div class="actions">
        <label for="secret">
          Secret of {created.name} ({created.scopes.join(", ")})
        </label>
        <input
          id="secret"
          ref={field}
          class="mono secret"
          readonly
          value={created.key}
          onFocus={(event: Event) => (event.target as HTMLInputElement).select()}
        />
        <button type="button" onClick={copy}>
          Copy
        </button>
        <button type="button" onClick={onDone}>
          Done
        </button>
      </div>
      <p role="status">{copied}</p>
    </section>
  );
}
