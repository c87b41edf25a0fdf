import type { Child } from "hono/jsx";
import { useScopedState } from "./scoped-state";

/**
 * Cursor paging: the cursor of the page shown (undefined: the first), and moves. A new `scope`
 * (other filters) starts again at the first page.
 */
export function useCursor(scope = "") {
  const [cursors, setCursors] = useScopedState<string[]>(scope, () => []);
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
