import { ENDED_RECHECK_SECONDS, type Live } from "./live-job";

const WORDS = {
  connecting: "connecting…",
  live: "live",
  paused: "paused while the tab is hidden",
  ended: `final, checked every ${ENDED_RECHECK_SECONDS} s`,
};

/** Whether the page follows the job's event stream, in a word. */
export function LiveBadge({ live }: { live: Live }) {
  return (
    <span class={`live live-${live.state}`}>
      {live.state === "stopped" ? `not live: ${live.error}` : WORDS[live.state]}
    </span>
  );
}
