/**
 * Number formatting shared by the human-facing writers (markdown, HTML, compare). The CSV and JSON
 * writers keep full precision and do not use these.
 *
 * @module
 */

/**
 * `n` rounded to `digits` significant digits, written without trailing zeros or a `+` in the
 * exponent: `formatSignificant(5.67891)` is `"5.679"`, `formatSignificant(1.5e-7)` is `"1.5e-7"`.
 * Null is written as `""`; NaN and infinities as `NaN`, `∞` and `-∞`.
 */
export function formatSignificant(n: number | null, digits = 4): string {
  if (n === null) return "";
  if (Number.isNaN(n)) return "NaN";
  if (!Number.isFinite(n)) return n > 0 ? "∞" : "-∞";
  // Number(...) drops the padding zeros toPrecision adds ("0.9800" → 0.98).
  return String(Number(n.toPrecision(digits)));
}

/**
 * A ratio as a signed percentage with `digits` significant digits: `formatPercent(0.02134)` is
 * `"+2.134%"`, `formatPercent(-0.5)` is `"-50%"`, zero is `"0%"`, null is `""`.
 */
export function formatPercent(ratio: number | null, digits = 4): string {
  if (ratio === null) return "";
  const text = formatSignificant(ratio * 100, digits);
  return ratio > 0 ? `+${text}%` : `${text}%`;
}

/** Unicode's bidirectional controls (embeddings, overrides, isolates, marks). */
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

/**
 * Text with bidirectional control characters written out as `[U+202E]`, so that untrusted text
 * (model output, names from datasets) cannot reorder what a report shows around it.
 */
export function showBidiControls(text: string): string {
  return text.replace(
    BIDI_CONTROLS,
    (c) => `[U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}]`,
  );
}
