/**
 * Finding the JSON value in a model's answer: inside the first Markdown code fence when there is
 * one (closed or not), the first `{` or `[` whose balanced span parses as JSON (up to 32 starts are
 * tried, so prose such as "[note]" before the value does not hide it); when the text has no `{`
 * or `[` at all, the whole trimmed text as a scalar JSON value.
 *
 * @module
 */

/** The outcome of extraction. */
export type Extracted =
  | {
    ok: true;
    value: unknown;
    /** The JSON text that was parsed. */
    text: string;
    /** Whether the value was a balanced `{…}`/`[…]` span (not a bare scalar). */
    bracketed: boolean;
  }
  | { ok: false; code: "no_json" | "parse_error"; message: string };

const MAX_STARTS = 32;

/** The text inside the first code fence (to its closing fence or the end), else the text. */
export function stripCodeFence(output: string): string {
  const open = /```[^\n`]*\n?/.exec(output);
  if (!open) return output;
  const body = output.slice(open.index + open[0].length);
  const close = body.indexOf("```");
  return close < 0 ? body : body.slice(0, close);
}

/** The end (exclusive) of the balanced bracket span starting at `start`, or -1. */
export function balancedEnd(text: string, start: number): number {
  const stack: string[] = [];
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{" || c === "[") stack.push(c === "{" ? "}" : "]");
    else if (c === "}" || c === "]") {
      if (stack.pop() !== c) return -1;
      if (stack.length === 0) return i + 1;
    }
  }
  return -1;
}

/** Extracts the JSON value of a model answer (see the module documentation). */
export function extractJson(output: string): Extracted {
  const text = stripCodeFence(output);
  let firstError: string | undefined;
  let starts = 0;
  for (let i = 0; i < text.length && starts < MAX_STARTS; i++) {
    const c = text[i];
    if (c !== "{" && c !== "[") continue;
    starts++;
    const end = balancedEnd(text, i);
    if (end < 0) {
      firstError ??= `the ${c} at character ${i} is never closed`;
      continue;
    }
    const span = text.slice(i, end);
    try {
      return { ok: true, value: JSON.parse(span), text: span, bracketed: true };
    } catch (e) {
      firstError ??= (e as Error).message;
    }
  }
  if (starts > 0) return { ok: false, code: "parse_error", message: firstError! };
  const trimmed = text.trim();
  try {
    return { ok: true, value: JSON.parse(trimmed), text: trimmed, bracketed: false };
  } catch {
    return { ok: false, code: "no_json", message: "no JSON value in the output" };
  }
}
