import { useEffect, useRef } from "hono/jsx/dom";
import { type ApiKey, type CreatedKey, call } from "./api";
import { useRequest } from "./use-request";

const GRACE: [seconds: number, words: string][] = [
  [3600, "1 hour"],
  [600, "10 minutes"],
  [86_400, "1 day"],
  [0, "no longer: refuse it now"],
];

type Props = {
  target: ApiKey;
  signedInWithIt: boolean;
  onRotated: (key: CreatedKey) => void;
  onCancel: () => void;
};

/** `POST /keys/{id}/rotate`, with the old key's grace period. */
export function RotateKeyForm({ target, signedInWithIt, onRotated, onCancel }: Props) {
  const { busy, error, run } = useRequest();
  const grace = useRef<HTMLSelectElement>(null);
  useEffect(() => grace.current?.focus(), [target.id]);

  const submit = (event: Event) => {
    event.preventDefault();
    const seconds = Number(new FormData(event.target as HTMLFormElement).get("grace"));
    return run(async () => {
      const { body } = await call<CreatedKey>(`/keys/${target.id}/rotate`, {
        method: "POST",
        body: { grace_period_seconds: seconds },
      });
      onRotated(body);
    });
  };
  return (
    <section class="panel" aria-labelledby="rotate-heading">
      <h2 id="rotate-heading">
        Rotate {target.name} <span class="mono">{target.prefix}</span>
      </h2>
      <p>
        A new key with the same name, scopes and lifetime takes its place and owns its agents. The
        old key keeps working for the time chosen here, never past its own expiry.
      </p>
      {signedInWithIt && (
        <p class="warning">
          You are signed in with this key: sign in with the new one before the old one stops.
        </p>
      )}
      <form onSubmit={submit}>
        <label for="rotate-grace">The old key keeps working for</label>
        <select id="rotate-grace" name="grace" ref={grace}>
          {GRACE.map(([seconds, words]) => (
            <option value={String(seconds)}>{words}</option>
          ))}
        </select>
        <button type="submit" disabled={busy}>
          Rotate
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
