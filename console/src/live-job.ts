import { useEffect, useRef, useState } from "hono/jsx/dom";
import { watchJob } from "../../src/watch-job";
import { call, type Job, message, refused, session } from "./api";
import { useVisibleInterval } from "./visible-interval";

/** How often the page of a job that has ended (no stream left) re-reads it, conditionally. */
export const ENDED_RECHECK_SECONDS = 10;

/** Where a job's live updates stand. */
export type Live =
  | { state: "connecting" | "live" | "paused" | "ended" }
  | { state: "stopped"; error: string };

/** Runs `task`, never twice at a time: a call while it runs asks for one more run after it. */
function coalesced(task: () => Promise<void>) {
  let running = false;
  let again = false;
  return async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await task();
      } while (again);
    } finally {
      running = false;
    }
  };
}

/**
 * A job kept current while it is shown: read once, then re-read (If-None-Match) on each event of
 * its stream. The stream stops when the job ends, when the page goes and while the tab is hidden;
 * it resumes after the last event seen.
 */
export function useLiveJob(id: string) {
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState("");
  const [live, setLive] = useState<Live>({ state: "connecting" });
  const etag = useRef<string | null>(null);
  const refresh = useRef(async () => {});

  useEffect(() => {
    let gone = false;
    let ended = false;
    let stream: AbortController | null = null;
    let last: string | undefined;
    etag.current = null;
    setJob(null);

    const read = coalesced(async () => {
      try {
        const answer = await call<Job>(`/job/${id}`, {
          headers: etag.current ? { "If-None-Match": etag.current } : {},
        });
        if (gone) return;
        if (answer.status !== 304) {
          etag.current = answer.etag;
          setJob(answer.body);
        }
        setError("");
      } catch (failure) {
        if (!gone) setError(message(failure));
      }
    });
    refresh.current = read;

    const follow = async () => {
      const controller = new AbortController();
      stream = controller;
      setLive({ state: "connecting" });
      const send: typeof fetch = async (input, init) => {
        const response = await fetch(input, init);
        if (response.ok) {
          setLive({ state: "live" });
          return response;
        }
        // A refusal ends this watch: aborting keeps watchJob from retrying it as a dropped stream.
        const failure = await refused(response);
        controller.abort(failure);
        throw failure;
      };
      try {
        const events = watchJob(location.origin, session.key() ?? "", id, {
          signal: controller.signal,
          fetch: send,
          ...(last === undefined ? {} : { after: last }),
        });
        for (let next = await events.next(); !next.done; next = await events.next()) {
          last = next.value.id;
          void read();
        }
        ended = true;
        setLive({ state: "ended" });
        void read();
      } catch (failure) {
        if (gone || stream !== controller) return;
        stream = null;
        setLive({ state: "stopped", error: message(failure) });
      }
    };

    const visibility = () => {
      if (ended) return;
      if (document.visibilityState === "hidden") {
        stream?.abort();
        stream = null;
        setLive({ state: "paused" });
      } else if (!stream) {
        void follow();
      }
    };

    void read();
    visibility();
    document.addEventListener("visibilitychange", visibility);
    return () => {
      gone = true;
      stream?.abort();
      document.removeEventListener("visibilitychange", visibility);
    };
  }, [id]);

  // A job that has ended streams no more, yet it may be retried elsewhere (another operator, the
  // CLI): while the tab is visible its page re-reads it now and then, a 304 when nothing changed.
  useVisibleInterval(ENDED_RECHECK_SECONDS, () => {
    if (live.state === "ended") void refresh.current();
  });

  return { job, etag: etag.current, error, live, refresh: () => refresh.current() };
}
