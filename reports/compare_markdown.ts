/**
 * Markdown for a comparison: a compact pull-request comment (regressions first, every row folded
 * into `<details>`) and a short `$GITHUB_STEP_SUMMARY` section.
 *
 * Text from the results (model names, protocol strings) may come from an untrusted pull request:
 * `&`, `<`, `>` and `@` are written as character references so a name can neither open HTML
 * elements nor mention people, and `|` is escaped so it cannot break a table.
 *
 * @module
 */
import { type Align, type MarkdownCell, markdownTable } from "../core/markdown_table.ts";
import { formatSignificant, showBidiControls } from "./format.ts";
import {
  changeText,
  type Comparison,
  type ComparisonEntry,
  countVerdicts,
  FAILING,
  MARKERS,
  type Verdict,
  VERDICT_TEXT,
  VERDICTS,
} from "./compare.ts";
import type { RunMeta } from "../core/row.ts";

/** Options of {@linkcode renderComparisonMarkdown}. */
export interface MarkdownOptions {
  /** Longest output; rows of the folded table are dropped to fit (GitHub comments hold 65,536). */
  maxChars?: number;
  /** A link to the full reports (e.g. the workflow run's artifacts), shown at the end. */
  reportUrl?: string;
}

/** Verdicts listed in the always-visible table. */
const ATTENTION: readonly Verdict[] = [
  "regression",
  "broken",
  "improvement",
  "notable",
  "not-comparable",
];

/**
 * The pull-request comment: a headline saying whether the comparison fails, both runs, any
 * environment warnings, the verdict counts, a table of the rows that need attention (regressions
 * first), then — folded — every compared row and the rows present on one side only, and a legend.
 */
export function renderComparisonMarkdown(c: Comparison, options: MarkdownOptions = {}): string {
  const maxChars = options.maxChars ?? 60_000;
  const attention = c.entries.filter((e) => ATTENTION.includes(e.verdict));
  const compared = c.entries.filter((e) => e.verdict !== "base-only" && e.verdict !== "head-only");
  const oneSided = c.entries.filter((e) => e.verdict === "base-only" || e.verdict === "head-only");
  const render = (shown: number) => {
    const lines = [...header(c), ""];
    if (attention.length > 0) lines.push(entryTable(attention, false));
    else lines.push("No significant changes.", "");
    if (compared.length > 0) {
      lines.push(
        `<details><summary>All ${compared.length} compared rows</summary>`,
        "",
        entryTable(compared.slice(0, shown), true),
      );
      if (shown < compared.length) {
        lines.push(`… ${compared.length - shown} more rows in the HTML and JSON reports.`, "");
      }
      lines.push("</details>", "");
    }
    if (oneSided.length > 0) {
      lines.push(
        `<details><summary>${oneSided.length} rows on one side only</summary>`,
        "",
        oneSidedTable(oneSided),
        "</details>",
        "",
      );
    }
    lines.push(legend(c));
    if (options.reportUrl) lines.push("", `Full reports: ${options.reportUrl}`);
    return lines.join("\n") + "\n";
  };
  let shown = compared.length;
  let text = render(shown);
  while (text.length > maxChars && shown > 0) {
    shown = Math.floor(shown / 2);
    text = render(shown);
  }
  return text;
}

/**
 * A short section for `$GITHUB_STEP_SUMMARY`: the headline, the counts and at most `limit` rows
 * that need attention.
 */
export function renderStepSummary(c: Comparison, limit = 15): string {
  const attention = c.entries.filter((e) => ATTENTION.includes(e.verdict));
  const lines = [...header(c), ""];
  if (attention.length > 0) {
    lines.push(entryTable(attention.slice(0, limit), false));
    if (attention.length > limit) lines.push(`… and ${attention.length - limit} more.`, "");
  } else {
    lines.push("No significant changes.", "");
  }
  return lines.join("\n") + "\n";
}

function header(c: Comparison): string[] {
  const counts = countVerdicts(c);
  const failing = FAILING.reduce((n, v) => n + counts[v], 0);
  const headline = failing > 0
    ? `❌ ${plural(counts.regression, "regression")}${
      counts.broken > 0 ? `, ${counts.broken} newly failing` : ""
    }`
    : "✅ no regressions";
  const tally = VERDICTS.filter((v) => counts[v] > 0)
    .map((v) => `\`${MARKERS[v]}\` ${VERDICT_TEXT[v]}: ${counts[v]}`)
    .join(" · ");
  const lines = [
    `## quantbench compare: ${headline}`,
    "",
    `**Base** ${runText(c.base)} → **Head** ${runText(c.head)}`,
    "",
    tally === "" ? "No rows." : tally,
  ];
  for (const warning of c.warnings) lines.push("", `⚠️ ${text(warning)}`);
  return lines;
}

function runText(m: RunMeta): string {
  const git = m.git_sha ? `, git \`${m.git_sha.slice(0, 12)}\`` : "";
  return `\`${text(m.run_id)}\` (suite ${text(m.suite)}${git})`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function entryTable(entries: ComparisonEntry[], withTest: boolean): string {
  const headers = [
    "",
    "cell",
    "task",
    "metric",
    "base",
    "head",
    "change [95% CI]",
    ...(withTest ? ["test"] : []),
    "why",
  ];
  const align: Align[] = headers.map((h) =>
    ["base", "head", "change [95% CI]"].includes(h) ? "right" : "left"
  );
  const rows: MarkdownCell[][] = entries.map((e) => [
    `\`${MARKERS[e.verdict]}\``,
    cellText(e),
    taskText(e),
    metricText(e),
    valueText(e.base, e.base_status),
    valueText(e.head, e.head_status),
    changeText(e),
    ...(withTest ? [e.stat ? `${e.stat.test} (${e.stat.pairs})` : ""] : []),
    text(e.reason),
  ]);
  return markdownTable(headers, rows, align);
}

function oneSidedTable(entries: ComparisonEntry[]): string {
  const headers = ["", "cell", "task", "metric", "value", "status"];
  const rows: MarkdownCell[][] = entries.map((e) => {
    const isBase = e.verdict === "base-only";
    const status = isBase ? e.base_status : e.head_status;
    return [
      `\`${MARKERS[e.verdict]}\``,
      cellText(e),
      taskText(e),
      metricText(e),
      valueText(isBase ? e.base : e.head, status),
      `${status ?? ""}, ${VERDICT_TEXT[e.verdict]}`,
    ];
  });
  return markdownTable(headers, rows, headers.map((h) => (h === "value" ? "right" : "left")));
}

function legend(c: Comparison): string {
  const markers = VERDICTS.map((v) => `\`${MARKERS[v]}\` ${VERDICT_TEXT[v]}`).join(", ");
  const { confidence, resamples, seed } = c.settings;
  return `<sub>Markers: ${markers}. Intervals: ${
    formatSignificant(confidence * 100)
  }% paired bootstrap over windows/documents (${resamples} resamples, seed ${seed}), or McNemar's ` +
    "exact test for 0/1 outcomes. A regression is significantly worse and beyond its threshold " +
    "when one is set.</sub>";
}

function cellText(e: ComparisonEntry): string {
  return text(`${e.model} ${e.method}/${e.format} ${e.backend}`);
}

function taskText(e: ComparisonEntry): string {
  return text(e.dataset ? `${e.task} · ${e.dataset}` : e.task);
}

function metricText(e: ComparisonEntry): string {
  const arrow = e.higher_is_better === null ? "" : e.higher_is_better ? " ↑" : " ↓";
  return text(e.metric) + arrow;
}

function valueText(value: number | null, status: string | null): string {
  return status === "ok" ? formatSignificant(value, 5) : status ?? "";
}

/** Text made inert in GitHub markdown: no HTML, no @-mentions. */
function text(s: string): string {
  return showBidiControls(s).replace(/[&<>@]/g, (c) => `&#${c.charCodeAt(0)};`);
}
