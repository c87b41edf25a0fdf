import type { Child } from "hono/jsx";
import { useState } from "hono/jsx/dom";

/** Cursor paging: the cursor of the page shown (undefined: the first), and moves. */
export function useCursor() {
  const [cursors, setCursors] = useState<string[]>([]);
  return {
    cursor: cursors.at(-1),
    first: () => setCursors([]),
    next: (cursor: string) => setCursors([...cursors, cursor]),
  };
}

type Props = {
  pages: ReturnType<typeof useCursor>;
  nextCursor: string | null;
  children?: Child;
};

export function Pager({ pages, nextCursor, children }: Props) {
  return (
    <nav class="pages" aria-label="Pages">
      <button type="button" disabled={!pages.cursor} onClick={pages.first}>
        First page
      </button>
      {children}
      <button
        type="button"
        disabled={!nextCursor}
        onClick={() => nextCursor && pages.next(nextCursor)}
      >
        Next page
      </button>
    </nav>
  );
}
