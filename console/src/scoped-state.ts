import { useEffect, useState } from "hono/jsx/dom";

/**
 * State that belongs to one view (`scope`: the filters): another view, or a return to this one,
 * starts again from `initial()`.
 */
export function useScopedState<T>(scope: string, initial: () => T): [T, (value: T) => void] {
  const [state, setState] = useState({ scope, value: initial() });
  useEffect(() => {
    if (state.scope !== scope) setState({ scope, value: initial() });
  }, [scope]);
  const value = state.scope === scope ? state.value : initial();
  return [value, (next: T) => setState({ scope, value: next })];
}
