/**
 * report.html: one self-contained page (no network, no scripts) with the run's metadata, a summary
 * table, per-task tables and inline SVG charts of quality against bits per weight with their Pareto
 * fronts (DESIGN.md, "Report schema").
 *
 * Every piece of text from the results (model names, details, which may quote model output) goes
 * through the {@linkcode markup} template tag, which escapes all interpolations; a Content Security
 * Policy that forbids scripts and remote loads backs that up.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { formatSignificant, showBidiControls } from "./format.ts";
import type { ResultRow, ResultsFile } from "../core/row.ts";
import { cellFacts, kvCacheBytes } from "../core/memory_model.ts";
import { type Candidate, formatBytes, recommend, type Recommendation } from "./recommend.ts";
import { calibrationSensitivity, sensitivityTable } from "./calibration_sensitivity.ts";

/** Markup that is already safe to insert: only the {@linkcode markup} tag makes these. */
class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/**
 * Escapes `& < > " '` so text is inert in HTML content and quoted attribute values, and writes
 * bidirectional controls out (`[U+202E]`) so text cannot reorder what is shown around it.
 */
export function escapeHtml(text: string): string {
  return showBidiControls(text).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

type Interpolation = SafeHtml | string | number | null | undefined | Interpolation[];

/**
 * Template tag for markup: interpolated strings and numbers are escaped, arrays are joined, null
 * and undefined are empty, and only nested `markup` results are inserted as they are.
 */
function markup(strings: TemplateStringsArray, ...values: Interpolation[]): SafeHtml {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += interpolate(value) + strings[i + 1]!;
  });
  return new SafeHtml(out);
}

function interpolate(value: Interpolation): string {
  if (value === null || value === undefined) return "";
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return value.map(interpolate).join("");
  return escapeHtml(String(value));
}

/**
 * The whole report page for a results file. It leads with `recommendation` — by default
 * {@linkcode recommend} with its default options (no memory budget, no constraints beyond the
 * suite's) — then the charts and tables.
 */
export function renderHtml(file: ResultsFile, recommendation?: Recommendation | Error): string {
  const { meta, rows } = file;
  const counts = statusCounts(rows);
  let rec = recommendation;
  const defaults = rec === undefined;
  if (rec === undefined) {
    try {
      rec = recommend(file);
    } catch (e) {
      rec = e instanceof Error ? e : new Error(String(e));
    }
  }
  const page = markup`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src '${SCRIPT_HASH}'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>quantbench — ${meta.suite} — ${meta.run_id}</title>
<style>${new SafeHtml(STYLE)}</style>
<script>${new SafeHtml(SCRIPT)}</script>
</head>
<body>
<header>
<h1>quantbench — ${meta.suite}</h1>
<p class="sub">Run ${meta.run_id}: ${rows.length} rows${counts ? ` (${counts})` : ""}</p>
</header>
<main>
${recommendationSection(rec, defaults)}
${metaTable(file)}
${filterBar(rows)}
<h2>Summary</h2>
${summary(rows)}
<h2>Quality against bits per weight</h2>
${charts(rows)}
${longContextSection(rows)}
${deploymentSection(rows, rec)}
${sensitivitySection(rows)}
<h2>Tasks</h2>
${taskTables(rows)}
</main>
</body>
</html>
`;
  return page.text;
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #59636e; --line: #d1d9e0;
  --head: #f6f8fa; --bad: #b42318; --warn: #9a6700; --good: #1a7f37; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1;
  --line: #3d444d; --head: #151b23; --bad: #ff7b72; --warn: #d29922; --good: #3fb950; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); margin: 2rem auto; max-width: 1200px; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; } h2 { margin-top: 2rem; border-bottom: 1px solid
  var(--line); } h3 { margin-bottom: .4rem; }
.sub, figcaption, .note { color: var(--muted); }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left;
  vertical-align: top; }
th { background: var(--head); font-weight: 600; } td.num { text-align: right; white-space: nowrap; }
.meta th { width: 10rem; } .meta td { font-family: ui-monospace, monospace; word-break: break-all; }
.detail { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap;
  word-break: break-word; max-width: 40rem; }
.s-failed { color: var(--bad); } .s-skipped { color: var(--warn); } .s-ok { color: var(--good); }
.err { color: var(--muted); font-size: 12px; }
.wide { overflow-x: auto; }
svg { max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg .axis { stroke: var(--muted); } svg .grid { stroke: var(--line); }
svg text { fill: var(--fg); } svg .lbl { fill: var(--muted); font-size: 10px; }
svg .grp { font-weight: 600; font-size: 11px; }
svg .front { fill: none; stroke-width: 1.5; stroke-dasharray: 5 3; }
svg .dim { opacity: .12; }
`;

/** E.g. `3 ok, 1 failed`: the non-zero counts by status. */
function statusCounts(rows: ResultRow[]): string {
  return (["ok", "failed", "skipped"] as const)
    .map((status) => [status, rows.filter((r) => r.status === status).length] as const)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${status}`)
    .join(", ");
}

function metaTable({ meta }: ResultsFile): SafeHtml {
  const adapter = meta.adapter === null
    ? "none"
    : Object.entries(meta.adapter).map(([k, v]) => `${k}=${v}`).join(", ");
  const seconds = (Date.parse(meta.finished_at) - Date.parse(meta.started_at)) / 1000;
  const duration = Number.isFinite(seconds) ? ` (${formatSignificant(seconds, 4)} s)` : "";
  const entries: [string, string][] = [
    ["suite file", meta.suite_file],
    ["suite hash", meta.suite_hash],
    ["git sha", meta.git_sha ?? "unknown"],
    ["quantbench", meta.quantbench_version],
    ["Deno", meta.deno_version],
    ["OS", meta.os],
    ["adapter", adapter],
    ["started", meta.started_at],
    ["finished", meta.finished_at + duration],
    ["command", meta.argv.join(" ")],
  ];
  return markup`
    <table class="meta">
      <tbody>
    ${
    entries.map(([k, v]) =>
      markup`
        <tr>
          <th>${k}</th>
          <td>${v}</td>
        </tr>
      `
    )
  }</tbody>
    </table>
  `;
}

/** Items of `items` grouped by `key`, groups in order of first appearance. */
function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

const SEP = "\u0000";
const cellKey = (r: ResultRow) => [r.model, r.method, r.format, r.backend].join(SEP);
const taskKey = (r: ResultRow) => [r.task, r.dataset].join(SEP);

/**
 * One line per cell (model/method/format/backend), one column per task and dataset showing its
 * headline metric: the first metric the task reported for that dataset.
 */
function summary(rows: ResultRow[]): SafeHtml {
  if (rows.length === 0) return markup`<p class="note">No rows.</p>`;
  const headlines = [...groupBy(rows, taskKey).values()].map((group) => group[0]!);
  const header = headlines.map((h) =>
    markup`<th>${h.task}<br><span class="sub">${h.dataset}${
      h.dataset ? " · " : ""
    }${h.metric}</span></th>`
  );
  const lines = [...groupBy(rows, cellKey).values()].map((cellRows) => {
    const first = cellRows[0]!;
    const bpw = cellRows.find((r) => r.bits_per_weight !== null)?.bits_per_weight ?? null;
    const values = headlines.map((h) => {
      const row = cellRows.find((r) =>
        r.task === h.task && r.dataset === h.dataset && r.metric === h.metric
      );
      if (row === undefined) return markup`<td></td>`;
      if (row.status !== "ok") {
        return markup`<td class="s-${row.status}" title="${row.detail}">${row.status}</td>`;
      }
      const err = row.stderr === null
        ? null
        : markup` <span class="err">± ${formatSignificant(row.stderr, 2)}</span>`;
      return markup`<td class="num">${formatSignificant(row.value)}${err}</td>`;
    });
    const status = statusCounts(cellRows);
    const cls = cellRows.some((r) => r.status === "failed")
      ? "s-failed"
      : cellRows.some((r) => r.status === "skipped")
      ? "s-skipped"
      : "s-ok";
    return markup`<tr data-cell data-f="${
      fieldsOf(first, false)
    }"><td>${first.model}</td><td>${first.method}</td><td>${first.format}</td><td>${first.backend}</td><td class="num">${
      formatSignificant(bpw)
    }</td>${values}<td class="${cls}">${status}</td></tr>\n`;
  });
  return markup`
    <div class="wide">
      <table class="summary">
        <thead>
          <tr><th>model</th><th>method</th><th>format</th><th>backend</th><th>bits/weight</th>${header}<th>status</th></tr>
        </thead>
        <tbody>
    ${lines}</tbody>
      </table>
    </div>
  `;
}

/** A table of every row per task, tasks in order of first appearance. */
function taskTables(rows: ResultRow[]): SafeHtml[] {
  return [...groupBy(rows, (r) => r.task)].map(([task, group]) =>
    markup`
      <section class="task">
        <h3>${task}</h3>
        <div class="wide">
          <table>
            <thead>
              <tr>
                <th>model</th>
                <th>method</th>
                <th>format</th>
                <th>backend</th>
                <th>dataset</th>
                <th>metric</th>
                <th>value</th>
                <th>unit</th>
                <th>stderr</th>
                <th>95% CI</th>
                <th>n</th>
                <th>bits/weight</th>
                <th>status</th>
                <th>detail</th>
              </tr>
            </thead>
            <tbody>
      ${group.map(taskRow)}</tbody>
          </table>
        </div>
      </section>
    `
  );
}

function taskRow(r: ResultRow): SafeHtml {
  const ci = r.ci_low === null || r.ci_high === null
    ? ""
    : `${formatSignificant(r.ci_low, 6)} – ${formatSignificant(r.ci_high, 6)}`;
  const direction = r.higher_is_better === null ? "" : r.higher_is_better ? " ↑" : " ↓";
  return markup`
    <tr data-row data-f="${fieldsOf(r)}">
      <td>${r.model}</td>
      <td>${r.method}</td>
      <td>${r.format}</td>
      <td>${r.backend}</td>
      <td>${r.dataset}</td>
      <td>${r.metric}${direction}</td>
      <td class="num" title="${r.value === null ? "" : String(r.value)}">${
    formatSignificant(
      r.value,
      6,
    )
  }</td>
      <td>${r.unit}</td>
      <td class="num">${formatSignificant(r.stderr, 3)}</td>
      <td class="num">${ci}</td>
      <td class="num">${r.n}</td>
      <td class="num">${formatSignificant(r.bits_per_weight)}</td>
      <td class="s-${r.status}">${r.status}</td>
      <td class="detail">${r.detail}</td>
    </tr>
  `;
}

/** One point of a chart. */
interface Point {
  x: number;
  y: number;
  label: string;
  title: string;
  /** The row's fields for the page's filter (`data-f`). */
  fields: string;
}

/** A chart per metric with a known direction: `ppl` first, then the others by first appearance. */
function charts(rows: ResultRow[]): SafeHtml[] {
  const byMetric = groupBy(
    rows.filter((r) => r.status === "ok" && r.higher_is_better !== null),
    (r) => r.metric,
  );
  const metrics = [...byMetric.keys()].sort((a, b) => Number(b === "ppl") - Number(a === "ppl"));
  const figures = metrics.map((metric) => chart(metric, byMetric.get(metric)!));
  return figures.length > 0
    ? figures
    : [markup`<p class="note">No successful rows with a known better direction to chart.</p>`];
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];
const W = 760;
const H = 400;
const M = { left: 64, right: 24, top: 32, bottom: 48 };
/** Tick candidates for a logarithmic bits-per-weight axis. */
const BITS_TICKS = [1, 1.5, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64];

function chart(metric: string, rows: ResultRow[]): SafeHtml {
  const higherIsBetter = rows[0]!.higher_is_better === true;
  const plotted = rows.filter((r) =>
    r.value !== null && Number.isFinite(r.value) && r.bits_per_weight !== null &&
    Number.isFinite(r.bits_per_weight)
  );
  const missing = rows.length - plotted.length;
  const note = missing > 0
    ? ` ${missing} row(s) without a value or bits per weight not shown.`
    : "";
  const caption = markup`<figcaption>${metric} (${
    higherIsBetter ? "higher" : "lower"
  } is better) against bits per weight, one series per task and dataset; dashed: Pareto front.${note}</figcaption>`;
  if (plotted.length === 0) return markup`<figure data-metric="${metric}">${caption}</figure>\n`;

  const severalTasks = new Set(plotted.map((r) => r.task)).size > 1;
  const showModel = new Set(plotted.map((r) => r.model)).size > 1;
  const showBackend = new Set(plotted.map((r) => r.backend)).size > 1;
  const series = [...groupBy(plotted, taskKey).values()].map((group) => ({
    name: severalTasks ? `${group[0]!.task}: ${group[0]!.dataset}` : group[0]!.dataset,
    points: group.map((r): Point => ({
      x: r.bits_per_weight!,
      y: r.value!,
      label: [showModel ? r.model : "", `${r.method}/${r.format}`, showBackend ? r.backend : ""]
        .filter((s) => s !== "").join(" "),
      title:
        `${r.model} ${r.method}/${r.format} ${r.backend} — ${r.task} ${r.dataset}: ${metric} ` +
        `${formatSignificant(r.value, 6)} at ${
          formatSignificant(r.bits_per_weight, 4)
        } bits/weight`,
      fields: fieldsOf(r),
    })),
  }));

  const xs = plotted.map((r) => r.bits_per_weight!);
  const ys = plotted.map((r) => r.value!);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  // A full-precision baseline at 16 or 32 bits would squash the 2–8 bit region on a linear axis.
  const x = xMin > 0 && xMax / xMin > 4
    ? logScale(xMin, xMax, M.left, W - M.right, BITS_TICKS)
    : linearScale(xMin, xMax, M.left, W - M.right);
  const yMin = Math.min(...ys);
  const yMax = Math.max(...ys);
  // Perplexity spans orders of magnitude between 2 and 8 bits: a log axis keeps the good end legible.
  const y = yMin > 0 && yMax / yMin > 4
    ? logScale(yMin, yMax, H - M.bottom, M.top, decadeTicks(yMin, yMax))
    : linearScale(yMin, yMax, H - M.bottom, M.top);

  const grid = [
    ...x.ticks.map((t) =>
      markup`
        <line class="grid" x1="${f(x.at(t))}" x2="${f(x.at(t))}" y1="${M.top}" y2="${
        H -
        M.bottom
      }" /><text
          x="${f(x.at(t))}" y="${H - M.bottom + 16}" text-anchor="middle">${
        formatSignificant(
          t,
          3,
        )
      }</text>
      `
    ),
    ...y.ticks.map((t) =>
      markup`
        <line class="grid" x1="${M.left}" x2="${W - M.right}" y1="${f(y.at(t))}" y2="${
        f(
          y.at(t),
        )
      }" /><text
          x="${M.left - 6}" y="${f(y.at(t)) + 4}" text-anchor="end">${
        formatSignificant(
          t,
          3,
        )
      }</text>
      `
    ),
  ];
  const axes = markup`
    <line class="axis" x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${
    H -
    M.bottom
  }" /><line
      class="axis" x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" />
    <text x="${(M.left + W - M.right) / 2}" y="${H - 8}" text-anchor="middle">bits per weight${
    x.log ? " (log scale)" : ""
  }</text>
    <text transform="translate(16 ${(M.top + H - M.bottom) / 2}) rotate(-90)"
      text-anchor="middle">${metric}${
    [rows[0]!.unit, y.log ? "log scale" : ""].filter((u) => u !== "" && u !== metric).map((u) =>
      ` (${u})`
    ).join("")
  }</text>
  `;
  const marks = series.map((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const front = paretoFront(s.points, higherIsBetter)
      .map((p) => `${f(x.at(p.x))},${f(y.at(p.y))}`).join(" ");
    // Legend entries side by side above the plot, spaced by an estimate of their text width.
    const legendX = M.left + series.slice(0, i).reduce((sum, t) => sum + 24 + 6 * t.name.length, 0);
    // Labels of points near the right edge go to their left so they stay inside the chart.
    const label = (p: Point) => {
      const px = x.at(p.x);
      return px > W - M.right - 90
        ? markup`<text class="lbl" x="${f(px - 6)}" y="${
          f(y.at(p.y) - 6)
        }" text-anchor="end">${p.label}</text>`
        : markup`<text class="lbl" x="${f(px + 6)}" y="${f(y.at(p.y) - 6)}">${p.label}</text>`;
    };
    return markup`<g class="series">
<polyline class="front" stroke="${color}" points="${front}"/>
${
      s.points.map((p) =>
        markup`
          <circle class="pt" data-f="${p.fields}" cx="${f(x.at(p.x))}" cy="${
          f(y.at(p.y))
        }" r="4" fill="${color}">
            <title>${p.title}</title>
          </circle>${label(p)}
        `
      )
    }<circle cx="${legendX + 4}" cy="12" r="4" fill="${color}"/><text x="${
      legendX + 12
    }" y="16">${s.name}</text>
</g>\n`;
  });
  return markup`<figure data-metric="${metric}">
<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${metric} against bits per weight">
${grid}${axes}${marks}</svg>
${caption}
${
    tableView(
      ["cell", "task", "dataset", "bits per weight", metric, "on the Pareto front"],
      series.flatMap((s) => {
        const front = new Set(paretoFront(s.points, higherIsBetter));
        return s.points.map((
          p,
        ) => [
          p.title.split(" — ")[0]!,
          ...s.name.includes(": ") ? s.name.split(": ") : [plotted[0]!.task, s.name],
          p.x,
          p.y,
          front.has(p) ? "yes" : "",
        ]);
      }),
      series.flatMap((s) => s.points.map((p) => p.fields)),
    )
  }
</figure>\n`;
}

/** SVG coordinates to one decimal. */
function f(v: number): string {
  return v.toFixed(1);
}

interface Scale {
  at(v: number): number;
  ticks: number[];
  log: boolean;
}

/** Maps [lo, hi] (widened by 5% each side, or ±1 when they are equal) onto [from, to]. */
function linearScale(lo: number, hi: number, from: number, to: number): Scale {
  const pad = hi > lo ? (hi - lo) * 0.05 : Math.max(Math.abs(lo) * 0.1, 1);
  const a = lo - pad;
  const b = hi + pad;
  const step = niceStep((b - a) / 5);
  const ticks: number[] = [];
  for (let t = Math.ceil(a / step) * step; t <= b + step * 1e-9; t += step) {
    ticks.push(Number(t.toPrecision(12)));
  }
  return { at: (v) => from + ((v - a) / (b - a)) * (to - from), ticks, log: false };
}

/**
 * Maps [lo, hi] (lo > 0, widened by 10% each side) onto [from, to] logarithmically, with the given
 * tick candidates that fall inside.
 */
function logScale(lo: number, hi: number, from: number, to: number, candidates: number[]): Scale {
  const a = Math.log10(lo / 1.1);
  const b = Math.log10(hi * 1.1);
  const ticks = candidates.filter((t) => Math.log10(t) >= a && Math.log10(t) <= b);
  return { at: (v) => from + ((Math.log10(v) - a) / (b - a)) * (to - from), ticks, log: true };
}

/** 1, 2 and 5 × 10^k for every decade touching [lo, hi], with one decade to spare each side. */
function decadeTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) ticks.push(Number((m * 10 ** e).toPrecision(12)));
  }
  return ticks;
}

/** The smallest 1, 2 or 5 × 10^k at least `raw`. */
function niceStep(raw: number): number {
  const base = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * base).find((s) => s >= raw * (1 - 1e-9))!;
}

/**
 * The points no other point beats on both axes (fewer bits and a better value), sorted by bits.
 * Exact duplicates appear once.
 */
export function paretoFront<P extends { x: number; y: number }>(
  points: P[],
  higherIsBetter: boolean,
): P[] {
  const cost = (p: P) => (higherIsBetter ? -p.y : p.y);
  const sorted = [...points].sort((p, q) => p.x - q.x || cost(p) - cost(q));
  const front: P[] = [];
  let best = Infinity;
  for (const p of sorted) {
    if (cost(p) < best) {
      front.push(p);
      best = cost(p);
    }
  }
  return front;
}

const PPL_AT = /^ppl@(\d+)$/;
const RETRIEVAL_AT = /^retrieval@(\d+):d=([\d.]+)$/;

/**
 * The long_context task's own views: perplexity against context length (one line per cell and
 * dataset, log scales) and retrieval as a length × depth grid per cell. Empty when no row has them.
 */
function longContextSection(rows: ResultRow[]): SafeHtml {
  const ok = rows.filter((r) => r.status === "ok" && r.value !== null && Number.isFinite(r.value));
  const ppl = ok.filter((r) => PPL_AT.test(r.metric) && r.value! > 0);
  const retrieval = ok.filter((r) => RETRIEVAL_AT.test(r.metric));
  if (ppl.length === 0 && retrieval.length === 0) return markup``;
  const cellName = (r: ResultRow) =>
    `${r.model} ${r.method}/${r.format} ${r.backend}` + (r.dataset ? ` — ${r.dataset}` : "");
  return markup`<h2>Long context</h2>
${ppl.length > 0 ? pplByLength(ppl, cellName) : ""}
${retrieval.length > 0 ? retrievalGrids(retrieval, cellName) : ""}`;
}

function pplByLength(rows: ResultRow[], cellName: (r: ResultRow) => string): SafeHtml {
  const series = [...groupBy(rows, (r) => cellName(r)).entries()].map(([name, group]) => ({
    name,
    points: group.map((r) => ({ x: Number(PPL_AT.exec(r.metric)![1]), y: r.value!, r }))
      .sort((a, b) => a.x - b.x),
  }));
  return lengthChart({
    metric: "ppl@length",
    aria: "perplexity against context length",
    yLabel: (log) => `perplexity${log ? " (log scale)" : ""}`,
    logY: true,
    series: series.map((s) => ({
      name: s.name,
      points: s.points.map((p) => ({
        x: p.x,
        y: p.y,
        title: `${s.name}: ${p.r.metric} ${formatSignificant(p.y, 6)}`,
        fields: fieldsOf(p.r),
      })),
    })),
    radius: 4,
    legendX: W - M.right - 250,
    caption: "Perplexity (lower is better) against context length, one line per cell; each " +
      "point is the long_context task's ppl@L over natural text (its detail names the text).",
    table: ["cell", "context length (tokens)", "perplexity"],
  });
}

/** A line chart over context length (log scale when the lengths differ), with a table view. */
function lengthChart(opts: {
  metric: string;
  aria: string;
  yLabel: (log: boolean) => string;
  /** Whether a y range wider than 4× is drawn on a log scale (else linear from 0). */
  logY: boolean;
  series: { name: string; points: { x: number; y: number; title: string; fields: string }[] }[];
  radius: number;
  legendX: number;
  caption: string;
  table: string[];
}): SafeHtml {
  const all = opts.series.flatMap((s) => s.points);
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y);
  const lengths = [...new Set(xs)].sort((a, b) => a - b);
  const x = Math.min(...xs) < Math.max(...xs)
    ? logScale(Math.min(...xs), Math.max(...xs), M.left, W - M.right, lengths)
    : linearScale(Math.min(...xs), Math.max(...xs), M.left, W - M.right);
  const y = !opts.logY
    ? linearScale(0, Math.max(...ys), H - M.bottom, M.top)
    : Math.max(...ys) / Math.min(...ys) > 4
    ? logScale(
      Math.min(...ys),
      Math.max(...ys),
      H - M.bottom,
      M.top,
      decadeTicks(Math.min(...ys), Math.max(...ys)),
    )
    : linearScale(Math.min(...ys), Math.max(...ys), H - M.bottom, M.top);
  const grid = [
    ...x.ticks.map((t) =>
      markup`<line class="grid" x1="${f(x.at(t))}" x2="${f(x.at(t))}" y1="${M.top}" y2="${
        H - M.bottom
      }" /><text x="${f(x.at(t))}" y="${H - M.bottom + 16}" text-anchor="middle">${t}</text>\n`
    ),
    ...y.ticks.filter((t) => opts.logY || t >= 0).map((t) =>
      markup`<line class="grid" x1="${M.left}" x2="${W - M.right}" y1="${f(y.at(t))}" y2="${
        f(y.at(t))
      }" /><text x="${M.left - 6}" y="${f(y.at(t)) + 4}" text-anchor="end">${
        formatSignificant(t, 3)
      }</text>\n`
    ),
  ];
  const marks = opts.series.map((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const line = s.points.map((p) => `${f(x.at(p.x))},${f(y.at(p.y))}`).join(" ");
    return markup`<g class="series"><polyline fill="none" stroke="${color}" stroke-width="1.5" points="${line}"/>
${
      s.points.map((p) =>
        markup`<circle class="pt" data-f="${p.fields}" cx="${f(x.at(p.x))}" cy="${
          f(y.at(p.y))
        }" r="${opts.radius}" fill="${color}"><title>${p.title}</title></circle>\n`
      )
    }<rect x="${opts.legendX}" y="${
      M.top + 4 + 14 * i
    }" width="10" height="10" fill="${color}"/><text class="lbl" x="${opts.legendX + 14}" y="${
      M.top + 13 + 14 * i
    }">${s.name}</text></g>\n`;
  });
  return markup`<figure data-metric="${opts.metric}">
<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${opts.aria}">
${grid}<line class="axis" x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${
    H - M.bottom
  }" /><line class="axis" x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" />
<text x="${(M.left + W - M.right) / 2}" y="${H - 8}" text-anchor="middle">context length (tokens${
    x.log ? ", log scale" : ""
  })</text>
<text transform="translate(16 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${
    opts.yLabel(y.log)
  }</text>
${marks}</svg>
<figcaption>${opts.caption}</figcaption>
${
    tableView(
      opts.table,
      opts.series.flatMap((s) => s.points.map((p) => [s.name, p.x, p.y])),
      opts.series.flatMap((s) => s.points.map((p) => p.fields)),
    )
  }
</figure>\n`;
}

function retrievalGrids(rows: ResultRow[], cellName: (r: ResultRow) => string): SafeHtml {
  const lengths = [...new Set(rows.map((r) => Number(RETRIEVAL_AT.exec(r.metric)![1])))].sort(
    (a, b) => a - b,
  );
  const depths = [...new Set(rows.map((r) => Number(RETRIEVAL_AT.exec(r.metric)![2])))].sort(
    (a, b) => a - b,
  );
  const cw = 64, ch = 28, left = 72, top = 36;
  const w = left + cw * depths.length + 8;
  const h = top + ch * lengths.length + 8;
  const grids = [...groupBy(rows, (r) => cellName(r)).entries()].map(([name, group]) => {
    const at = new Map(group.map((r) => [r.metric, r]));
    const fields = fieldsOf(group[0]!);
    const cells = lengths.flatMap((l, i) =>
      depths.map((d, j) => {
        const r = at.get(`retrieval@${l}:d=${d}`);
        const v = r?.value ?? null;
        // White (0) to green (1); cells without a value are grey.
        const fill = v === null
          ? "#ddd"
          : `hsl(130 55% ${formatSignificant(95 - 55 * Math.max(0, Math.min(1, v)), 3)}%)`;
        return markup`<rect class="pt" data-f="${fields}" x="${left + cw * j}" y="${
          top + ch * i
        }" width="${cw - 2}" height="${
          ch - 2
        }" fill="${fill}"><title>${name}: retrieval at ${l} tokens, depth ${d}: ${
          v === null ? "no value" : `${formatSignificant(100 * v, 3)} % (n=${r!.n ?? "?"})`
        }</title></rect><text x="${left + cw * j + cw / 2 - 1}" y="${
          top + ch * i + 18
        }" text-anchor="middle">${v === null ? "–" : `${formatSignificant(100 * v, 3)}%`}</text>\n`;
      })
    );
    const labels = [
      ...lengths.map((l, i) =>
        markup`<text x="${left - 6}" y="${top + ch * i + 18}" text-anchor="end">${l}</text>`
      ),
      ...depths.map((d, j) =>
        markup`<text x="${left + cw * j + cw / 2 - 1}" y="${
          top - 8
        }" text-anchor="middle">d=${d}</text>`
      ),
    ];
    return markup`<figure data-metric="retrieval@length:depth">
<svg viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="retrieval by length and depth">
<text x="4" y="14" class="lbl">length ↓ depth →</text>${labels}${cells}</svg>
<figcaption>${name}: needle retrieval (share found) by context length (rows, tokens) and needle depth (columns).</figcaption>
${
      tableView(
        ["context length (tokens)", "depth", "retrieval (share found)", "n"],
        group.map((r) => {
          const [, l, d] = RETRIEVAL_AT.exec(r.metric)!;
          return [Number(l), Number(d), r.value!, r.n ?? ""];
        }),
        group.map(() => fields),
      )
    }
</figure>\n`;
  });
  return markup`${grids}`;
}

/**
 * The page's one script: hides the summary, task-table, sensitivity and chart-table rows whose
 * text does not contain what is typed in the filter box or whose fields (`data-f`) miss a value
 * picked in a field's drop-down (model, method, format, backend, task), and dims the chart marks
 * that miss either the same way. It reads only the page's own text and attributes and writes only
 * `hidden` and a class; the CSP allows exactly this script by its hash.
 */
const SCRIPT = `document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("filter");
  const selects = [...document.querySelectorAll("select[data-field]")];
  const apply = () => {
    const q = box ? box.value.trim().toLowerCase() : "";
    const want = selects.filter((s) => s.value !== "").map((s) => [s.dataset.field + "=", s.value]);
    const miss = (el) => {
      if (q !== "" && !el.textContent.toLowerCase().includes(q)) return true;
      const have = (el.getAttribute("data-f") || "").split("|");
      return want.some(([k, v]) => have.some((h) => h.startsWith(k)) && !have.includes(k + v));
    };
    for (const tr of document.querySelectorAll("tr[data-row], tr[data-cell], tr[data-f]")) {
      tr.hidden = miss(tr);
    }
    for (const mark of document.querySelectorAll("svg .pt")) mark.classList.toggle("dim", miss(mark));
  };
  if (box) box.addEventListener("input", apply);
  for (const s of selects) s.addEventListener("change", apply);
});`;
const SCRIPT_HASH = `sha256-${createHash("sha256").update(SCRIPT).digest("base64")}`;

/** The fields the page's filter selects on. */
const FILTER_FIELDS = ["model", "method", "format", "backend", "task"] as const;
type FilterField = typeof FILTER_FIELDS[number];

/**
 * An element's `data-f`: `field=value` pairs joined by `|` (a field may have several values, e.g.
 * the calibration sets of a sensitivity line). The filter hides an element when it has a value for
 * a selected field and none of them is the one selected.
 */
function fieldsAttr(fields: Partial<Record<FilterField, string[]>>): string {
  return FILTER_FIELDS.flatMap((k) => (fields[k] ?? []).map((v) => `${k}=${v}`)).join("|");
}

/** A row's `data-f` (without the task for lines that stand for a whole cell). */
function fieldsOf(r: ResultRow, task = true): string {
  return fieldsAttr({
    model: [r.model],
    method: [r.method],
    format: [r.format],
    backend: [r.backend],
    ...(task ? { task: [r.task] } : {}),
  });
}

function several<T>(items: readonly T[], key: (t: T) => string): boolean {
  return new Set(items.map(key)).size > 1;
}

/** The filter box and one drop-down per field that has more than one value. */
function filterBar(rows: ResultRow[]): SafeHtml {
  const selects = FILTER_FIELDS.map((field) => {
    const values = [...new Set(rows.map((r) => r[field]))];
    if (values.length < 2) return markup``;
    return markup` <label>${field} <select data-field="${field}"><option value="">all</option>${
      values.map((v) => markup`<option>${v}</option>`)
    }</select></label>`;
  });
  return markup`<p class="filter"><label>Filter rows: <input id="filter" type="search" placeholder="model, method, format, task…"></label>${selects}</p>`;
}

/**
 * Calibration sensitivity: each method calibrated on several sets, its quality metric on each set
 * and the spread (see `calibration_sensitivity.ts`); empty when the suite used no sets.
 */
function sensitivitySection(rows: ResultRow[]): SafeHtml {
  const lines = calibrationSensitivity(rows);
  if (lines.length === 0) return markup``;
  const { headers, body } = sensitivityTable(lines);
  const methodsOf = (l: typeof lines[number]) =>
    l.values.map((v) =>
      rows.find((r) =>
        r.extra?.calibration_of === l.method && r.extra?.calibration === v.calibration
      )?.method ?? `${l.method}@${v.calibration}`
    );
  return markup`<h2>Calibration sensitivity</h2>
<div class="wide"><table id="calibration-sensitivity">
<thead><tr>${headers.map((h) => markup`<th>${h}</th>`)}</tr></thead>
<tbody>${
    body.map((cells, i) =>
      markup`<tr data-f="${
        fieldsAttr({
          model: [lines[i]!.model],
          method: methodsOf(lines[i]!),
          format: [lines[i]!.format],
          backend: [lines[i]!.backend],
          task: [lines[i]!.task],
        })
      }">${cells.map((c) => markup`<td>${c}</td>`)}</tr>\n`
    )
  }</tbody></table></div>
<p class="note">The same method and format calibrated on each set (the suite's <code>calibration:</code> list); the spread is the worst set's cost against the best (relative to the best value). A large spread means the method is sensitive to calibration mismatch: calibrate on text like the deployment's.</p>`;
}

function candidateName(c: Candidate): string {
  return `${c.model} ${c.method}/${c.format} on ${c.backend}`;
}

/** The recommendation with default options: the choice, its evidence and the checklist. */
function recommendationSection(rec: Recommendation | Error, defaults: boolean): SafeHtml {
  if (rec instanceof Error) {
    return markup`<section id="recommendation">
<h2>Recommendation</h2>
<p class="note">No recommendation: ${rec.message}</p>
</section>`;
  }
  const head = rec.choice
    ? markup`<p class="choice"><strong>${
      candidateName(rec.choice)
    }</strong> — objective ${rec.objective}${
      rec.choice.emulated ? " (emulated on the target)" : ""
    }</p>`
    : markup`<p class="choice"><strong>No recipe meets the constraints</strong> (objective ${rec.objective}).</p>`;
  const rules = rec.rules.length === 0 ? markup`` : markup`<h3>Checklist</h3>
<ul class="rules">${
    rec.rules.map((r) => markup`<li><strong>${r.rule}</strong>: ${r.advice}</li>`)
  }</ul>`;
  return markup`<section id="recommendation">
<h2>Recommendation</h2>
${head}
<ul class="evidence">${rec.evidence.map((e) => markup`<li>${e}</li>`)}</ul>
${rules}
${
    defaults
      ? markup`<p class="note">Computed with the default options of <code>deno task recommend</code> (no memory budget, context ${
        rec.candidates[0]?.memory?.context ?? "of the model"
      }, batch 1, the suite's thresholds); run it with <code>--memory</code>, <code>--max-drop</code>, <code>--hardware</code> for a deployment's constraints.</p>`
      : markup`<p class="note">As <code>deno task recommend</code> was asked: objective ${rec.objective}${
        rec.hardware ? `, hardware ${rec.hardware}` : ""
      }.</p>`
  }
</section>`;
}

/** A collapsible table view of a chart's data. */
function tableView(
  headers: string[],
  body: (string | number)[][],
  fields: readonly string[] = [],
): SafeHtml {
  return markup`<details class="table-view"><summary>table</summary><table>
<thead><tr>${headers.map((h) => markup`<th>${h}</th>`)}</tr></thead>
<tbody>${
    body.map((r, i) =>
      markup`<tr data-f="${fields[i] ?? ""}">${
        r.map((v) =>
          typeof v === "number"
            ? markup`<td class="num">${formatSignificant(v, 6)}</td>`
            : markup`<td>${v}</td>`
        )
      }</tr>\n`
    )
  }</tbody></table></details>`;
}

/** Speed and memory by format (from the recommendation) and KV-cache memory against context. */
function deploymentSection(rows: ResultRow[], rec: Recommendation | Error): SafeHtml {
  // Grouped by format (formats in order of first appearance), cells in suite order within one.
  const formats = new Map<string, number>();
  const all = rec instanceof Error ? [] : rec.candidates;
  for (const c of all) if (!formats.has(c.format)) formats.set(c.format, formats.size);
  const candidates = [...all].sort((a, b) => formats.get(a.format)! - formats.get(b.format)!);
  const item = (c: Candidate, parts: number[]): BarItem => ({
    group: c.format,
    name: candidateName(c),
    label: `${c.method}${several(all, (x) => x.model) ? ` · ${c.model}` : ""}${
      several(all, (x) => x.backend) ? ` · ${c.backend}` : ""
    }`,
    parts,
    fields: fieldsAttr({
      model: [c.model],
      method: [c.method],
      format: [c.format],
      backend: [c.backend],
    }),
  });
  const speed = candidates.filter((c) => c.speed !== null).map((c) => item(c, [c.speed!]));
  const memory = candidates.filter((c) => c.memory !== null).map((c) =>
    item(c, [c.memory!.weights, c.memory!.kv, c.memory!.workspace])
  );
  const context = candidates.find((c) => c.memory)?.memory?.context;
  const kv = kvChart(rows);
  if (speed.length === 0 && memory.length === 0 && kv === null) return markup``;
  return markup`<h2>Speed and memory</h2>
${
    speed.length > 0
      ? barChart(
        "speed@format",
        "decode speed by format",
        "decode speed (tokens/s)",
        ["tokens/s"],
        speed,
        1,
        "Decode tokens per second as measured by the speed task (higher is better), one bar per cell, grouped by format.",
      )
      : ""
  }
${
    memory.length > 0
      ? barChart(
        "memory@format",
        "memory by format",
        `memory (MiB) at ${context} tokens × 1`,
        ["weights", "KV cache", "workspace"],
        memory,
        1024 ** 2,
        `Memory each cell needs at ${context} tokens, batch 1 (deployment model: weights as stored, f16 or quantized KV cache, activation workspace), stacked, grouped by format; lower is better.`,
      )
      : ""
  }
${kv ?? ""}`;
}

const PART_COLORS = ["#1f77b4", "#ff7f0e", "#9467bd"];

/** One bar: a cell, in a group (its format), with its stacked parts. */
interface BarItem {
  group: string;
  /** The cell in full (tooltips and the table view). */
  name: string;
  /** The bar's label beside its group's heading. */
  label: string;
  parts: number[];
  /** The cell's fields for the page's filter (`data-f`). */
  fields: string;
}

/**
 * Horizontal (stacked) bars, one per item, under a heading per group (items arrive sorted by
 * group); values divided by `unit` for display.
 */
function barChart(
  metric: string,
  aria: string,
  axis: string,
  parts: string[],
  items: BarItem[],
  unit: number,
  caption: string,
): SafeHtml {
  const left = 260, bh = 20, top = 28, right = 70;
  const lines: ({ group: string } | { item: BarItem })[] = [];
  for (const [i, item] of items.entries()) {
    if (i === 0 || items[i - 1]!.group !== item.group) lines.push({ group: item.group });
    lines.push({ item });
  }
  const h = top + bh * lines.length + 40;
  const max = Math.max(...items.map((i) => i.parts.reduce((a, b) => a + b, 0))) / unit;
  const x = linearScale(0, max, left, W - right);
  const bars = lines.map((line, i) => {
    if ("group" in line) {
      return markup`<text x="8" y="${top + bh * i + 14}" class="grp">${line.group}</text>\n`;
    }
    const item = line.item;
    let at = 0;
    const segs = item.parts.map((v, j) => {
      const from = at;
      at += v / unit;
      return markup`<rect class="pt" data-f="${item.fields}" x="${f(x.at(from))}" y="${
        top + bh * i + 2
      }" width="${f(Math.max(0.5, x.at(at) - x.at(from)))}" height="${bh - 4}" fill="${
        PART_COLORS[j % PART_COLORS.length]
      }"><title>${item.name}: ${parts[j]} ${formatSignificant(v / unit, 4)}</title></rect>`;
    });
    return markup`<text x="${left - 6}" y="${
      top + bh * i + 14
    }" text-anchor="end" class="lbl">${item.label}</text>${segs}<text x="${f(x.at(at) + 4)}" y="${
      top + bh * i + 14
    }" class="lbl">${formatSignificant(at, 4)}</text>\n`;
  });
  const ticks = x.ticks.filter((t) => t >= 0).map((t) =>
    markup`<line class="grid" x1="${f(x.at(t))}" x2="${f(x.at(t))}" y1="${top}" y2="${
      top + bh * lines.length
    }"/><text x="${f(x.at(t))}" y="${top + bh * lines.length + 14}" text-anchor="middle">${
      formatSignificant(t, 3)
    }</text>`
  );
  const legend = parts.length > 1
    ? parts.map((p, j) =>
      markup`<rect x="${left + 110 * j}" y="6" width="10" height="10" fill="${
        PART_COLORS[j]
      }"/><text x="${left + 110 * j + 14}" y="15">${p}</text>`
    )
    : [];
  const table = tableView(
    [
      "format",
      "cell",
      ...parts.map((p) => `${p} (${axis.replace(/^[^(]*\(|\).*$/g, "")})`),
      "total",
    ],
    items.map((i) => [
      i.group,
      i.name,
      ...i.parts.map((v) => v / unit),
      i.parts.reduce((a, b) => a + b, 0) / unit,
    ]),
    items.map((i) => i.fields),
  );
  return markup`<figure data-metric="${metric}">
<svg viewBox="0 0 ${W} ${h}" width="${W}" height="${h}" role="img" aria-label="${aria}">
${ticks}${legend}${bars}<text x="${(left + W - right) / 2}" y="${
    h - 6
  }" text-anchor="middle">${axis}</text></svg>
<figcaption>${caption}</figcaption>
${table}
</figure>\n`;
}

/**
 * KV-cache bytes (deployment model, batch 1) against context length, one line per model and KV
 * format, from the facts the runner records; null when no row has them.
 */
function kvChart(rows: ResultRow[]): SafeHtml | null {
  const series = new Map<string, { x: number; y: number }[]>();
  for (const cellRows of groupBy(rows, cellKey).values()) {
    const facts = cellFacts(cellRows);
    if (facts === null) continue;
    const first = cellRows[0]!;
    const name = `${first.model} KV ${facts.kv_format === "f32" ? "f16" : facts.kv_format}`;
    if (series.has(name)) continue;
    const contexts: number[] = [];
    for (let c = 128; c < facts.max_seq_len; c *= 2) contexts.push(c);
    contexts.push(Math.max(facts.max_seq_len, 1));
    series.set(
      name,
      contexts.map((c) => ({ x: c, y: kvCacheBytes(facts, c, 1, "deployment") / 1024 ** 2 })),
    );
  }
  if (series.size === 0) return null;
  return lengthChart({
    metric: "kv@context",
    aria: "KV-cache memory against context length",
    yLabel: () => "KV cache (MiB, batch 1)",
    logY: false,
    series: [...series.entries()].map(([name, points]) => ({
      name,
      points: points.map((p) => ({
        ...p,
        title: `${name}: ${formatBytes(p.y * 1024 ** 2)} at ${p.x} tokens`,
        fields: fieldsAttr({ model: [name.split(" KV ")[0]!] }),
      })),
    })),
    radius: 3,
    legendX: M.left + 10,
    caption: "KV-cache memory (deployment model: f16, or the cell's KV format with one f16 " +
      "scale per group) against context length, batch 1, up to each model's max_seq_len " +
      "(core/memory_model.ts).",
    table: ["model and KV format", "context (tokens)", "KV cache (MiB)"],
  });
}
