/**
 * The recommendation as markdown (the answer first, then the rules that fired, the Pareto set and
 * every cell with its memory and constraints) and as JSON.
 *
 * @module
 */
import { markdownTable } from "../core/markdown_table.ts";
import { type Candidate, formatBytes, type Recommendation } from "./recommend.ts";

function name(c: Candidate): string {
  return `${c.model} ${c.method}/${c.format} on ${c.backend}`;
}

/** Renders a recommendation as markdown. */
export function renderRecommendationMarkdown(r: Recommendation): string {
  const out: string[] = ["# Recommendation", ""];
  if (r.choice) {
    out.push(
      `**${name(r.choice)}** — objective ${r.objective}` +
        (r.hardware ? `, hardware ${r.hardware}` : "") +
        (r.choice.emulated ? " (emulated on the target)" : ""),
      "",
    );
  } else out.push(`**No recipe meets the constraints** (objective ${r.objective}).`, "");
  for (const line of r.evidence) out.push(`- ${line}`);
  out.push("");
  if (r.rules.length > 0) {
    out.push("## Checklist", "");
    for (const f of r.rules) out.push(`- **${f.rule}**: ${f.advice}`);
    out.push("");
  }
  out.push("## Cells", "");
  const header = ["cell", "bits/w", "memory", "speed (tok/s)", "quality loss", "pareto", "verdict"];
  const rows = r.candidates.map((c) => [
    name(c),
    c.bits_per_weight === null ? "" : String(c.bits_per_weight),
    c.memory ? formatBytes(c.memory.total) : "unknown",
    c.speed === null ? (c.emulated ? "emulated" : "") : c.speed.toFixed(0),
    c.loss === null ? "" : c.loss.toPrecision(3),
    c.pareto ? "yes" : "",
    c.excluded.length === 0 ? "eligible" : `excluded: ${c.excluded.join("; ")}`,
  ]);
  out.push(markdownTable(header, rows), "");
  return out.join("\n");
}

/** The recommendation as JSON (2-space indented, newline-terminated). */
export function recommendationToJson(r: Recommendation): string {
  return JSON.stringify(r, (_k, v) => v === Infinity ? null : v, 2) + "\n";
}
