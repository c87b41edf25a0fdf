import { message } from "./api";
import { Checkbox } from "./checkbox";

/** What a retry sends for the edited text: nothing when it is the original's operation. */
export type OperationChange =
  | { operation?: unknown; operation_patch?: unknown }
  | { invalid: string };

export const formatted = (operation: unknown) => JSON.stringify(operation, null, 2);

export function operationChange(
  original: unknown,
  text: string,
  asPatch: boolean,
): OperationChange {
  let edited: unknown;
  try {
    edited = JSON.parse(text);
  } catch (failure) {
    return { invalid: `The operation is not valid JSON (${message(failure)}). Nothing was sent.` };
  }
  if (JSON.stringify(edited) === JSON.stringify(original)) return {};
  if (!asPatch) return { operation: edited };
  if (edited === null || typeof edited !== "object" || Array.isArray(edited))
    return { invalid: "A merge patch must be a JSON object. Nothing was sent." };
  return { operation_patch: edited };
}

type Props = {
  text: string;
  asPatch: boolean;
  invalid: boolean;
  errorId: string;
  onText: (text: string) => void;
  onPatch: (asPatch: boolean) => void;
};

/** "Change the operation": the operation as JSON to edit, sent as a replacement or a merge patch. */
export function OperationEditor({ text, asPatch, invalid, errorId, onText, onPatch }: Props) {
  return (
    <details class="operation-editor">
      <summary>Change the operation</summary>
      <label for="retry-operation">Operation (JSON)</label>
      <textarea
        id="retry-operation"
        class="mono"
        rows={Math.min(20, text.split("\n").length + 1)}
        spellcheck={false}
        value={text}
        aria-invalid={invalid ? "true" : undefined}
        aria-describedby={invalid ? errorId : undefined}
        onInput={(event: Event) => onText((event.target as HTMLTextAreaElement).value)}
      />
      <Checkbox checked={asPatch} onChange={onPatch}>
        Send as a merge patch (RFC 7396: <code>null</code> removes a key, objects merge)
      </Checkbox>
    </details>
  );
}
