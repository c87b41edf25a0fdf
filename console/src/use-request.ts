import { useState } from "hono/jsx/dom";
import { message } from "./api";

/** One request at a time for a form: `busy` while it runs, `error` in plain words if it failed. */
export function useRequest() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const run = async (request: () => Promise<void>) => {
    setBusy(true);
    setError("");
    try {
      await request();
    } catch (failure) {
      setError(message(failure));
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run };
}
