import assert from "node:assert/strict";
import { escapeHtml, paretoFront, renderHtml } from "./html.ts";
import { makeFile, makeRow } from "../core/test_rows.ts";
import type { ResultRow } from "../core/row.ts";

const EVIL_SCRIPT = "<script>alert(1)</script>";
const EVIL_ATTR = '"><img src=x onerror=alert(1)>';

function fixtureRows(): ResultRow[] {
  const cell = (method: string, format: string, bpw: number, ppl: number): ResultRow[] => [
    makeRow({ method, format, bits_per_weight: bpw, value: ppl }),
    makeRow({ method, format, bits_per_weight: bpw, dataset: "c4", value: ppl * 1.3 }),
    makeRow({
      method,
      format,
      bits_per_weight: bpw,
      task: "json",
      dataset: "json_tasks",
      metric: "schema_valid",
      value: 1 - 0.01 * (16 - bpw),
      higher_is_better: true,
      stderr: 0.01,
      detail: "n=100",
    }),
  ];
  return [
    ...cell("none", "f32", 32, 5.5),
    ...cell("rtn", "w8", 8.5, 5.6),
    ...cell("rtn", "w4g32", 4.5, 7.9),
    ...cell("gptq", "w4g32", 4.5, 6.4),
    ...cell("gptq", "w3g32", 3.5, 9.0),
    ...cell("rtn", "w3g32", 3.5, 40.2),
    makeRow({ method: "awq", format: "w4g32", status: "failed", value: null, detail: EVIL_SCRIPT }),
    makeRow({
      method: "awq",
      format: "w4g32",
      task: "json",
      dataset: "json_tasks",
      metric: "schema_valid",
      status: "skipped",
      value: null,
      higher_is_better: true,
      detail: EVIL_ATTR,
    }),
  ];
}

Deno.test("escapeHtml escapes the five HTML-significant characters", () => {
  assert.equal(escapeHtml(`a&b<c>d"e'f`), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
});

Deno.test("renderHtml escapes untrusted text everywhere it appears", () => {
  const rows = fixtureRows();
  rows.push(makeRow({ model: EVIL_ATTR, dataset: EVIL_SCRIPT, bits_per_weight: 2.5, value: 80 }));
  const file = makeFile(rows);
  file.meta.suite = "</title><script>x()</script>";
  file.meta.argv = ["bench", "'onload='x()"];
  const page = renderHtml(file);
  // One script element: the report's own filter, allowed by its hash; nothing injected into it.
  assert.equal(page.match(/<script/g)?.length, 1, "only the report's own script");
  const script = /<script>([\s\S]*?)<\/script>/.exec(page)![1]!;
  assert.ok(!script.includes("x()") && !script.includes("alert"), "no injected script text");
  assert.match(page, /script-src 'sha256-[A-Za-z0-9+/]+=*'/);
  assert.ok(!page.includes("<img"), "no injected image element");
  assert.ok(!page.includes("'onload="), "no unescaped apostrophe from argv");
  assert.ok(page.includes("&lt;script&gt;alert(1)&lt;/script&gt;"));
  assert.ok(page.includes("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
  // The only tags present are the ones the report itself uses.
  const tags = new Set([...page.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9]*)/g)].map((m) => m[1]));
  const allowed = [
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "header",
    "h1",
    "h2",
    "h3",
    "p",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "main",
    "div",
    "section",
    "span",
    "br",
    "figure",
    "figcaption",
    "svg",
    "g",
    "line",
    "text",
    "polyline",
    "circle",
    "rect",
    "script",
    "ul",
    "li",
    "strong",
    "code",
    "label",
    "input",
    "details",
    "summary",
    "select",
    "option",
  ];
  assert.deepEqual([...tags].filter((t) => !allowed.includes(t!)), []);
});

Deno.test("renderHtml loads nothing from the network", () => {
  // Without the malicious details, whose escaped text legitimately contains "src=".
  const page = renderHtml(makeFile(fixtureRows().filter((r) => r.status === "ok")));
  assert.ok(!/https?:\/\//.test(page), "no http(s) URL");
  assert.ok(!/<[^>]*\s(src|href|xlink:href)\s*=/.test(page), "no src/href attribute in a tag");
  assert.ok(!/url\(|@import/.test(page), "no CSS resource");
  assert.match(page, /Content-Security-Policy" content="default-src 'none'/);
});

Deno.test("renderHtml plots one mark per successful ppl row with bits per weight", () => {
  const rows = fixtureRows();
  const page = renderHtml(makeFile(rows));
  const figure = /<figure data-metric="ppl">([\s\S]*?)<\/figure>/.exec(page)?.[1] ?? "";
  const okPpl = rows.filter((r) => r.metric === "ppl" && r.status === "ok").length;
  assert.equal(okPpl, 12);
  assert.equal(figure.match(/<circle class="pt"/g)?.length, okPpl);
  // Two series (wiki, c4), each with its own Pareto front polyline and legend entry.
  assert.equal(figure.match(/<polyline class="front"/g)?.length, 2);
  assert.ok(figure.includes(">wiki</text>") && figure.includes(">c4</text>"));
  assert.ok(figure.includes(">gptq/w3g32</text>"));
  // ppl spans 5.5…52 (> 4×): log axis.
  assert.ok(figure.includes("ppl (log scale)"));
  // The schema_valid chart comes after the ppl chart.
  assert.ok(page.indexOf('data-metric="ppl"') < page.indexOf('data-metric="schema_valid"'));
});

Deno.test("renderHtml draws the Pareto front through the non-dominated points", () => {
  const page = renderHtml(makeFile(fixtureRows().filter((r) => r.dataset === "wiki")));
  const figure = /<figure data-metric="ppl">([\s\S]*?)<\/figure>/.exec(page)![1]!;
  const points = /<polyline class="front" stroke="[^"]*" points="([^"]*)"/.exec(figure)![1]!;
  // Front by hand: (3.5, 9.0) gptq, (4.5, 6.4) gptq, (8.5, 5.6) rtn w8, (32, 5.5) f32 — rtn w4g32
  // (4.5, 7.9) and rtn w3g32 (3.5, 40.2) are dominated. Four vertices, increasing x.
  const xs = points.split(" ").map((p) => Number(p.split(",")[0]));
  assert.equal(xs.length, 4);
  assert.deepEqual([...xs].sort((a, b) => a - b), xs);
});

Deno.test("paretoFront keeps exactly the non-dominated points", () => {
  const pts = [
    { x: 3, y: 9 },
    { x: 4, y: 6.4 },
    { x: 4, y: 7.9 },
    { x: 3, y: 40 },
    { x: 8, y: 5.6 },
    { x: 16, y: 5.7 },
  ];
  assert.deepEqual(paretoFront(pts, false), [{ x: 3, y: 9 }, { x: 4, y: 6.4 }, { x: 8, y: 5.6 }]);
  assert.deepEqual(paretoFront(pts, true), [{ x: 3, y: 40 }]);
});

Deno.test("renderHtml lists every row in the per-task tables and one summary line per cell", () => {
  const rows = fixtureRows();
  const page = renderHtml(makeFile(rows));
  assert.equal(page.match(/<tr data-row /g)?.length, rows.length);
  const sections = page.split('<section class="task">').slice(1);
  assert.deepEqual(sections.map((s) => /<h3>([^<]*)<\/h3>/.exec(s)![1]), ["perplexity", "json"]);
  assert.deepEqual(
    sections.map((s) => s.match(/<tr data-row /g)!.length),
    [
      rows.filter((r) => r.task === "perplexity").length,
      rows.filter((r) => r.task === "json").length,
    ],
  );
  const summary = /<table class="summary">([\s\S]*?)<\/table>/.exec(page)![1]!;
  // 7 cells (6 ok + awq), headline columns: perplexity/wiki, perplexity/c4, json/json_tasks.
  assert.equal(summary.match(/<tr( data-cell [^>]*)?>/g)!.length, 1 + 7);
  assert.equal(summary.match(/<th>/g)!.length, 4 + 1 + 3 + 1);
  assert.ok(summary.includes('<td class="num">6.4 <span class="err">± 0.25</span></td>'));
  assert.ok(summary.includes('<td class="s-failed">1 failed, 1 skipped</td>'));
});

Deno.test("renderHtml renders an empty run", () => {
  const page = renderHtml(makeFile([]));
  assert.ok(page.includes("Run 20250101T000000Z: 0 rows</p>"));
  assert.ok(page.includes("No rows."));
  assert.ok(page.endsWith("</html>\n"));
});

Deno.test("renderHtml: long context — perplexity by context length and a length × depth retrieval grid", () => {
  const lc = (format: string, metric: string, value: number) =>
    makeRow({ task: "long_context", dataset: "needles", format, metric, value });
  const rows = ["f32", "int4"].flatMap((format, k) => [
    lc(format, "ppl@256", 20 + k),
    lc(format, "ppl@512", 18 + k),
    lc(format, "ppl@1024", 17 + k),
    ...[256, 512].flatMap((l) =>
      [0.1, 0.9].map((d) => lc(format, `retrieval@${l}:d=${d}`, k === 0 ? 1 : 0.5))
    ),
  ]);
  const html = renderHtml(makeFile(rows));
  assert.match(html, /<h2>Long context<\/h2>/);
  const line = /<figure data-metric="ppl@length">[\s\S]*?<\/figure>/.exec(html)![0];
  assert.equal((line.match(/<polyline/g) ?? []).length, 2, "one line per cell");
  assert.equal((line.match(/<circle class="pt"/g) ?? []).length, 6);
  assert.match(line, /context length \(tokens, log scale\)/);
  const grids = [
    ...html.matchAll(/<figure data-metric="retrieval@length:depth">[\s\S]*?<\/figure>/g),
  ];
  assert.equal(grids.length, 2, "one grid per cell");
  assert.equal((grids[0]![0].match(/<rect class="pt"/g) ?? []).length, 4, "2 lengths × 2 depths");
  assert.match(grids[1]![0], />50%</);
  // Without long_context rows there is no such section.
  assert.doesNotMatch(renderHtml(makeFile([makeRow()])), /Long context/);
});

Deno.test("renderHtml leads with the recommendation, then every deployment chart with a table", async () => {
  const file = JSON.parse(
    await Deno.readTextFile(new URL("../fixtures/recommend/quickstart.json", import.meta.url)),
  );
  const page = renderHtml(file);
  const firstH2 = /<h2>([^<]*)<\/h2>/.exec(page)![1];
  assert.equal(firstH2, "Recommendation");
  assert.ok(page.indexOf('id="recommendation"') < page.indexOf("<svg"));
  // recommend's default answer on this run (reports/recommend_test.ts): int8 RTN.
  assert.match(page, /<p class="choice"><strong>mini rtn\/int8 on cpu<\/strong>/);
  const figures = [...page.matchAll(/<figure data-metric="([^"]*)">([\s\S]*?)<\/figure>/g)];
  const metrics = figures.map((m) => m[1]);
  for (
    const m of ["ppl", "accuracy", "schema_valid", "ppl@length", "retrieval@length:depth"]
      .concat(["speed@format", "memory@format", "kv@context"])
  ) assert.ok(metrics.includes(m), `${m} in ${metrics}`);
  for (const [, metric, body] of figures) {
    assert.match(body!, /<details class="table-view">/, `${metric} has a table view`);
  }
  // Memory bars: the quickstart's five cells, each stacked weights + KV + workspace.
  const memory = figures.find((m) => m[1] === "memory@format")![2]!;
  assert.equal(memory.match(/<rect class="pt"/g)?.length, 5 * 3);
  assert.match(memory, /memory \(MiB\) at 2048 tokens × 1/);
  // A results file recommend cannot judge still renders, saying why.
  const bare = renderHtml(makeFile([makeRow({ method: "rtn" })]));
  assert.match(bare, /<h2>Recommendation<\/h2>/);
});
