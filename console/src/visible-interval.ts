import { useEffect, useRef, useState } from "hono/jsx/dom";

const visible = () => document.visibilityState === "visible";

/**
 * Calls `tick` every `seconds` while the tab is visible. Hidden, it stops; visible again, it ticks
 * at once and goes on. Returns whether it is running.
 */
export function useVisibleInterval(seconds: number, tick: () => void): boolean {
  const latest = useRef(tick);
  latest.current = tick;
  const [running, setRunning] = useState(visible());
  useEffect(() => {
    let timer: ReturnType<typeof setInterval> | undefined;
    const start = () => {
      timer = setInterval(() => latest.current?.(), seconds * 1000);
    };
    const changed = () => {
      clearInterval(timer);
      setRunning(visible());
      if (!visible()) return;
      latest.current?.();
      start();
    };
    if (visible()) start();
    document.addEventListener("visibilitychange", changed);
    return () => {
      clearInterval(timer);
      document.removeEventListener("visibilitychange", changed);
    };
  }, [seconds]);
  return running;
}
