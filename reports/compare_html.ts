/**
 * The HTML diff report of a comparison: one self-contained page (no scripts, no network; a Content
 * Security Policy forbids both) with the two runs, warnings, verdict counts, an inline SVG forest
 * plot of every change with its 95 % interval, and a table of every entry.
 *
 * The forest plot puts all metrics on one axis — the relative change in the metric's bad
 * direction, so right is worse for perplexity and for accuracy alike — with each row's practical
 * threshold drawn as a dashed tick. Every interpolated string is escaped: names and protocol
 * strings come from result files, which a pull request controls.
 *
 * @module
 */
import { escapeHtml } from "./html.ts";
import { formatPercent, formatSignificant } from "./format.ts";
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

/** Markup that is safe to insert: only {@linkcode markup} makes these. */
class Safe {
  constructor(readonly text: string) {}
}

type Part = Safe | string | number | null | undefined | Part[];

/** Template tag: interpolated values are escaped, arrays joined, null empty; `Safe` kept. */
function markup(strings: TemplateStringsArray, ...values: Part[]): Safe {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += part(value) + strings[i + 1]!;
  });
  return new Safe(out);
}

function part(value: Part): string {
  if (value === null || value === undefined) return "";
  if (value instanceof Safe) return value.text;
  if (Array.isArray(value)) return value.map(part).join("");
  return escapeHtml(String(value));
}

/** The verdict counts, each in its verdict's colour. */
function verdictCounts(c: Comparison): Safe[] {
  const counts = countVerdicts(c);
  return VERDICTS.filter((v) => counts[v] > 0).map((v) =>
    markup`<span class="v-${v}"><code>${MARKERS[v]}</code> ${VERDICT_TEXT[v]}: ${counts[v]}</span> `
  );
}

/** The whole diff page. */
export function renderComparisonHtml(c: Comparison): string {
  const counts = countVerdicts(c);
  const failing = FAILING.reduce((n, v) => n + counts[v], 0);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const headline = failing === 0 ? "no regressions" : [
    counts.regression > 0 ? plural(counts.regression, "regression") : "",
    counts.broken > 0 ? `${counts.broken} newly failing` : "",
  ].filter((t) => t !== "").join(", ");
  const page = markup`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>quantbench compare — ${c.head.suite} — ${headline}</title>
<style>${new Safe(STYLE)}</style>
</head>
<body>
<header>
<h1 class="${failing > 0 ? "v-regression" : "v-improvement"}">quantbench compare: ${headline}</h1>
${runs(c)}
${c.warnings.map((w) => markup`<p class="warning">⚠ ${w}</p>\n`)}
<p class="counts">${verdictCounts(c)}</p>
</header>
<main>
<h2>Changes with 95% intervals</h2>
${forest(c.entries)}
<h2>All rows</h2>
${table(c.entries)}
<p class="note">${legend(c)}</p>
</main>
</body>
</html>
`;
  return page.text;
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #59636e; --line: #d1d9e0;
  --head: #f6f8fa; --bad: #b42318; --warn: #9a6700; --good: #1a7f37; --info: #0969da; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1;
  --line: #3d444d; --head: #151b23; --bad: #ff7b72; --warn: #d29922; --good: #3fb950;
  --info: #4493f8; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); margin: 2rem auto; max-width: 1280px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; } h2 { margin-top: 2rem; border-bottom: 1px solid
  var(--line); }
.runs td, .runs th { font-family: ui-monospace, monospace; }
.note, figcaption { color: var(--muted); } .warning { color: var(--warn); font-weight: 600; }
.counts span { margin-right: 1rem; white-space: nowrap; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left;
  vertical-align: top; }
th { background: var(--head); font-weight: 600; } td.num { text-align: right; white-space: nowrap; }
td.why { min-width: 14rem; max-width: 32rem; } td.verdict { white-space: nowrap; }
.wide { overflow-x: auto; }
.v-regression, .v-broken { color: var(--bad); } .v-improvement { color: var(--good); }
.v-notable, .v-not-comparable { color: var(--warn); } .v-no-change { color: var(--muted); }
.v-base-only, .v-head-only { color: var(--info); }
svg { max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg text { fill: var(--fg); } svg .axis { stroke: var(--muted); } svg .grid { stroke: var(--line); }
svg .zero { stroke: var(--muted); stroke-width: 1.5; }
svg .limit { stroke: var(--warn); stroke-dasharray: 3 2; stroke-width: 1.5; }
svg .ci { stroke-width: 2; }
`;

function runs(c: Comparison): Safe {
  const line = (side: string, m: RunMeta) =>
    markup`
      <tr>
        <th>${side}</th>
        <td>${m.run_id}</td>
        <td>${m.suite}</td>
        <td>${m.git_sha?.slice(0, 12) ?? "unknown"}</td>
        <td>${m.os}</td>
        <td>${
      m.adapter === null
        ? "none"
        : Object.entries(m.adapter).map(([k, v]) => `${k}=${v}`).join(", ")
    }</td>
        <td>${m.deno_version}</td>
      </tr>
    `;
  return markup`
    <table class="runs">
      <thead>
        <tr>
          <th></th>
          <th>run</th>
          <th>suite</th>
          <th>git</th>
          <th>OS</th>
          <th>adapter</th>
          <th>Deno</th>
        </tr>
      </thead>
      <tbody>
    ${line("base", c.base)}
    ${line("head", c.head)}
      </tbody>
    </table>
  `;
}

const COLORS: Record<Verdict, string> = {
  regression: "#d62728",
  broken: "#d62728",
  improvement: "#2ca02c",
  notable: "#ff7f0e",
  "not-comparable": "#ff7f0e",
  "no-change": "#7f7f7f",
  "base-only": "#1f77b4",
  "head-only": "#1f77b4",
};

/** One plotted row: the change in the bad direction (fractions; positive = worse). */
interface Line {
  entry: ComparisonEntry;
  x: number;
  lo: number | null;
  hi: number | null;
  limit: number | null;
}

/** The entry's relative change turned so that positive is worse. */
function worseLine(e: ComparisonEntry): Line | null {
  if (e.relative_delta === null) return null;
  const sign = e.higher_is_better === true ? -1 : 1;
  const ends = e.relative_ci?.map((v) => sign * v).sort((a, b) => a - b) ?? null;
  const limits = e.threshold?.limits;
  const limit = e.higher_is_better === null
    ? null
    : (e.higher_is_better ? limits?.max_relative_decrease : limits?.max_relative_increase) ??
      null;
  return {
    entry: e,
    x: sign * e.relative_delta,
    lo: ends?.[0] ?? null,
    hi: ends?.[1] ?? null,
    limit,
  };
}

const LEFT = 340;
const RIGHT = 24;
const WIDTH = 960;
const ROW = 22;
const TOP = 28;
const BOTTOM = 40;

function forest(entries: ComparisonEntry[]): Safe {
  const lines = entries.map(worseLine).filter((l): l is Line => l !== null);
  if (lines.length === 0) {
    return markup`<p class="note">No rows present and comparable on both sides to plot.</p>`;
  }
  const values = lines.flatMap((l) =>
    [l.x, l.lo, l.hi, l.limit].filter((v): v is number => v !== null && Number.isFinite(v))
  );
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (hi - lo < 1e-4) {
    lo -= 0.005;
    hi += 0.005;
  }
  const pad = (hi - lo) * 0.05;
  lo -= pad;
  hi += pad;
  const height = TOP + lines.length * ROW + BOTTOM;
  const at = (v: number) => LEFT + ((v - lo) / (hi - lo)) * (WIDTH - LEFT - RIGHT);
  const clamp = (v: number) => Math.min(WIDTH - RIGHT, Math.max(LEFT, at(v)));
  const ticks = niceTicks(lo, hi);
  const bottom = height - BOTTOM;
  const grid = ticks.map((t) =>
    markup`
      <line class="grid" x1="${f(at(t))}" x2="${f(at(t))}" y1="${TOP}" y2="${bottom}" /><text
        x="${f(at(t))}" y="${bottom + 14}" text-anchor="middle">${formatPercent(t, 3)}</text>
    `
  );
  const rows = lines.map((l, i) => {
    const y = TOP + i * ROW + ROW / 2;
    const e = l.entry;
    const color = COLORS[e.verdict];
    const label = `${MARKERS[e.verdict]} ${e.model} ${e.method}/${e.format} ${e.backend} · ${
      e.dataset ? `${e.task} ${e.dataset}` : e.task
    } · ${e.metric}`;
    const shown = label.length > 58 ? `${label.slice(0, 57)}…` : label;
    const ci = l.lo !== null && l.hi !== null
      ? markup`
        <line class="ci" x1="${f(clamp(l.lo))}" x2="${f(clamp(l.hi))}" y1="${f(y)}" y2="${f(y)}"
          stroke="${color}" />
      `
      : null;
    const limit = l.limit !== null
      ? markup`
        <line class="limit" x1="${f(clamp(l.limit))}" x2="${f(clamp(l.limit))}"
          y1="${f(y - 7)}" y2="${f(y + 7)}" />
      `
      : null;
    return markup`<g class="row" data-verdict="${e.verdict}">
<text x="${LEFT - 8}" y="${f(y + 4)}" text-anchor="end">${shown}<title>${label}</title></text>
${ci}${limit}<circle class="pt" data-mark cx="${f(clamp(l.x))}" cy="${
      f(y)
    }" r="4" fill="${color}"><title>${label}: ${changeText(e)} — ${
      VERDICT_TEXT[e.verdict]
    }: ${e.reason}</title></circle>
</g>\n`;
  });
  return markup`
    <figure class="chart">
      <svg viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" role="img"
        aria-label="relative change of every compared row, with 95% intervals">
    ${grid}<line class="zero" x1="${f(at(0))}" x2="${f(at(0))}" y1="${TOP - 6}" y2="${bottom}"/>
    <line class="axis" x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${bottom}" y2="${bottom}"/>
    <text x="${(LEFT + WIDTH - RIGHT) / 2}" y="${height - 6}"
      text-anchor="middle">relative change (← better · worse →)</text>
    <text x="${LEFT}" y="14">point: change of the value; bar: 95% interval; dashed tick: threshold</text>
    ${rows}</svg>
      <figcaption>Each row's change relative to base, turned so that right is worse whatever the metric's direction. Colour and marker follow the verdict.</figcaption>
    </figure>
  `;
}

/** About five round ticks (1, 2 or 5 × 10^k apart) across [lo, hi]. */
function niceTicks(lo: number, hi: number): number[] {
  const raw = (hi - lo) / 5;
  const base = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * base).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) {
    ticks.push(Number(t.toPrecision(12)));
  }
  return ticks;
}

function f(v: number): string {
  return v.toFixed(1);
}

function table(entries: ComparisonEntry[]): Safe {
  const rows = entries.map((e) => {
    const threshold = e.threshold
      ? `${e.threshold.key}${e.threshold.source === "suite" ? "" : " (command line)"}`
      : "";
    const test = e.stat
      ? `${e.stat.test}, ${e.stat.pairs} pairs${
        e.stat.p_value === null ? "" : `, p=${formatSignificant(e.stat.p_value, 3)}`
      }`
      : "";
    const protocol = e.base_detail !== null && e.head_detail !== null &&
        e.base_detail !== e.head_detail
      ? markup`<br><small>base: ${e.base_detail}<br>head: ${e.head_detail}</small>`
      : null;
    return markup`
      <tr data-entry class="v-${e.verdict}">
        <td class="verdict"><code>${MARKERS[e.verdict]}</code> ${VERDICT_TEXT[e.verdict]}</td>
        <td>${e.model} · ${e.method}/${e.format} · ${e.backend}</td>
        <td>${e.dataset ? `${e.task} · ${e.dataset}` : e.task}</td>
        <td>${e.metric}${e.higher_is_better === null ? "" : e.higher_is_better ? " ↑" : " ↓"}</td>
        <td class="num">${value(e.base, e.base_status)}</td>
        <td class="num">${value(e.head, e.head_status)}</td>
        <td class="num">${changeText(e)}</td>
        <td>${test}</td>
        <td>${threshold}</td>
        <td class="why">${e.reason}${protocol}</td>
      </tr>
    `;
  });
  return markup`
    <div class="wide">
      <table class="entries">
        <thead>
          <tr>
            <th>verdict</th>
            <th>cell</th>
            <th>task</th>
            <th>metric</th>
            <th>base</th>
            <th>head</th>
            <th>change [95% CI]</th>
            <th>test</th>
            <th>threshold</th>
            <th>why</th>
          </tr>
        </thead>
        <tbody>
    ${rows}</tbody>
      </table>
    </div>
  `;
}

function value(v: number | null, status: string | null): string {
  return status === "ok" ? formatSignificant(v, 6) : status ?? "—";
}

function legend(c: Comparison): Safe {
  const { confidence, resamples, seed } = c.settings;
  return markup`Markers: ${
    VERDICTS.map((v) => `${MARKERS[v]} ${VERDICT_TEXT[v]}`).join(", ")
  }. Intervals: ${
    formatSignificant(confidence * 100)
  }% paired bootstrap over windows or documents (${resamples} resamples, seed ${seed}), or McNemar's exact test with a conditional Clopper–Pearson interval for 0/1 outcomes. A regression is significantly worse and beyond its threshold when one is set.`;
}
