import { useRef, useState } from "hono/jsx/dom";
import { message } from "./api";

/**
 * One request at a time for a form: `busy` while it runs, `error` in plain words if it failed.
 * `run` sends nothing while a request is on its way: two clicks before a render (a double click)
 * make one request, though the disabled button comes a render too late to stop the second.
 */
export function useRequest() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const sending = useRef(false);
  /** The request's answer; null when it failed (see `error`) or another was on its way. */
  const run = async <T>(request: () => Promise<T>): Promise<T | null> => {
    if (sending.current) return null;
    sending.current = true;
    setBusy(true);
    setError("");
    try {
      return await request();
    } catch (failure) {
      setError(message(failure));
      return null;
    } finally {
      sending.current = false;
      setBusy(false);
    }
  };
  return { busy, error, run };
}
