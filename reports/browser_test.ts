/**
 * The HTML reports in a real headless browser (Debian's chromium; `.ci/run` installs it): the run
 * report (`html.ts`) and the diff report (`compare_html.ts`) load without console errors or
 * Content-Security-Policy violations, every chart has marks, and the tables hold one row per CSV
 * record (run report) or per comparison entry (diff report).
 *
 * Chromium is driven over the DevTools protocol through `--remote-debugging-pipe` (messages
 * separated by NUL on file descriptors 3 and 4, wired to the child's stdin and stdout by `sh`), so
 * the test needs no network permission and no browser download. The checks run as a
 * `Runtime.evaluate` expression, which the pages' CSP (no scripts) does not block.
 *
 * Skipped, with a message, where no chromium is installed; `QUANTBENCH_CHROMIUM` names another.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { renderHtml } from "./html.ts";
import { csvToRows, parseCsv, rowsToCsv } from "./csv.ts";
import { renderComparisonHtml } from "./compare_html.ts";
import { comparisonToJson } from "./compare.ts";
import { fixtureComparison, fixtureRuns } from "./compare_fixture.ts";
import { makeFile, makeRow } from "../core/test_rows.ts";
import { summaryTable } from "./markdown.ts";
import { renderComparisonMarkdown } from "./compare_markdown.ts";
import { compareResults } from "./compare.ts";

const CANDIDATES = [
  Deno.env.get("QUANTBENCH_CHROMIUM") ?? "",
  "/usr/bin/chromium",
  "/usr/bin/google-chrome",
  "/usr/bin/chromium-browser",
];
const CHROMIUM = CANDIDATES.find((p) => p !== "" && existsSync(p));
if (!CHROMIUM) {
  console.warn(
    "skipping the browser test: no chromium found (apt-get install -y chromium, or set " +
      "QUANTBENCH_CHROMIUM)",
  );
}

// deno-lint-ignore no-explicit-any
type Json = any;

/** A DevTools-protocol session with one page, over chromium's debugging pipe. */
class Browser {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #next = 0;
  #pending = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void }>();
  #events: Json[] = [];
  #reading: Promise<void>;
  #session = "";
  #profile: string;

  private constructor(child: Deno.ChildProcess, profile: string) {
    this.#child = child;
    this.#profile = profile;
    this.#writer = child.stdin.getWriter();
    this.#reading = this.#read();
  }

  static async launch(executable: string): Promise<Browser> {
    const profile = await Deno.makeTempDir({ prefix: "qb-chromium-" });
    // fd 3 (commands in) ← our stdin, fd 4 (replies out) → our stdout; chromium's own stdout
    // output goes to stderr so it cannot mix with the protocol.
    const child = new Deno.Command("sh", {
      args: [
        "-c",
        'exec "$0" "$@" 3<&0 4>&1 1>&2',
        executable,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        `--user-data-dir=${profile}`,
        "--remote-debugging-pipe",
        "about:blank",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const browser = new Browser(child, profile);
    const { targetId } = await browser.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await browser.send("Target.attachToTarget", { targetId, flatten: true });
    browser.#session = sessionId;
    for (const domain of ["Runtime", "Log", "Page"]) {
      await browser.send(`${domain}.enable`, {}, true);
    }
    return browser;
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of this.#child.stdout) {
      buffer += decoder.decode(chunk, { stream: true });
      for (let end = buffer.indexOf("\0"); end >= 0; end = buffer.indexOf("\0")) {
        const message = JSON.parse(buffer.slice(0, end));
        buffer = buffer.slice(end + 1);
        const waiter = this.#pending.get(message.id);
        if (waiter) {
          this.#pending.delete(message.id);
          if (message.error) waiter.reject(new Error(JSON.stringify(message.error)));
          else waiter.resolve(message.result);
        } else if (message.method) this.#events.push(message);
      }
    }
    for (const { reject } of this.#pending.values()) reject(new Error("chromium exited"));
  }

  send(method: string, params: Json = {}, inPage = false): Promise<Json> {
    const id = ++this.#next;
    const message = { id, method, params, ...(inPage ? { sessionId: this.#session } : {}) };
    // A browser that stops answering fails the test instead of hanging it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = new Promise<Json>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      timer = setTimeout(() => reject(new Error(`${method}: no reply within 15 s`)), 15_000);
    });
    this.#writer.write(new TextEncoder().encode(JSON.stringify(message) + "\0"));
    return reply.finally(() => clearTimeout(timer));
  }

  /**
   * Loads a file and returns the errors the page logged while loading (console errors, uncaught
   * exceptions, CSP violations and failed loads) and the value of `check` evaluated in it.
   */
  async open(path: string, check: string): Promise<{ errors: string[]; result: Json }> {
    this.#events = [];
    await this.send("Page.navigate", { url: `file://${path}` }, true);
    const deadline = Date.now() + 10_000;
    while (!this.#events.some((e) => e.method === "Page.loadEventFired")) {
      if (Date.now() > deadline) throw new Error(`${path} did not load within 10 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const { result, exceptionDetails } = await this.send(
      "Runtime.evaluate",
      { expression: check, returnByValue: true },
      true,
    );
    if (exceptionDetails) throw new Error(`check failed: ${JSON.stringify(exceptionDetails)}`);
    const errors = this.#events.flatMap((e): string[] => {
      const p = e.params;
      if (e.method === "Runtime.exceptionThrown") return [p.exceptionDetails.text];
      if (e.method === "Runtime.consoleAPICalled" && ["error", "assert"].includes(p.type)) {
        return [p.args.map((a: Json) => a.value ?? a.description).join(" ")];
      }
      if (e.method === "Log.entryAdded" && p.entry.level === "error") return [p.entry.text];
      return [];
    });
    return { errors, result: result.value };
  }

  async close(): Promise<void> {
    await this.send("Browser.close").catch(() => {});
    await this.#writer.close().catch(() => {});
    await this.#reading;
    await this.#child.status;
    await Deno.remove(this.#profile, { recursive: true }).catch(() => {});
  }
}

/** What the checks read from a page: marks per chart, table rows, scripts that ran. */
const CHECK = `(() => {
  const charts = [...document.querySelectorAll("svg")].map((svg) => ({
    label: svg.getAttribute("aria-label"),
    marks: svg.querySelectorAll(".pt").length,
    width: svg.getBoundingClientRect().width,
  }));
  return {
    charts,
    runRows: document.querySelectorAll("tr[data-row]").length,
    entryRows: document.querySelectorAll("tr[data-entry]").length,
    scripts: document.scripts.length,
    title: document.title,
    injected: typeof window.alert === "function" && document.body.innerHTML.includes("<script>"),
  };
})()`;

/** A run with several cells, tasks and metrics, a failure, a skip and hostile names. */
function runFile() {
  const { base } = fixtureRuns();
  const extra = [
    makeRow({ method: "none", format: "f32", value: 6.1, bits_per_weight: 32 }),
    makeRow({ method: "rtn", format: "int3", value: 9.8, bits_per_weight: 3.5 }),
    makeRow({ dataset: "c4", value: 20.5, bits_per_weight: 4.5 }),
    makeRow({ method: "awq", format: "int2", status: "skipped", value: null, detail: "no <b>" }),
  ];
  return makeFile([...base.rows, ...extra], "run");
}

Deno.test({
  name: "the run report and the diff report render in headless chromium",
  ignore: !CHROMIUM,
  async fn() {
    const dir = await Deno.makeTempDir();
    const browser = await Browser.launch(CHROMIUM!);
    try {
      // Run report: charts with marks, one table row per CSV record.
      const run = runFile();
      const csv = rowsToCsv(run.rows);
      await Deno.writeTextFile(join(dir, "report.html"), renderHtml(run));
      await Deno.writeTextFile(join(dir, "results.csv"), csv);
      const report = await browser.open(join(dir, "report.html"), CHECK);
      assert.deepEqual(report.errors, []);
      assert.ok(report.result.charts.length >= 2, JSON.stringify(report.result.charts));
      for (const chart of report.result.charts) {
        assert.ok(chart.marks > 0 && chart.width > 0, `chart without marks: ${chart.label}`);
      }
      const records = parseCsv(await Deno.readTextFile(join(dir, "results.csv"))).length - 1;
      assert.equal(report.result.runRows, records);
      assert.equal(report.result.scripts, 1, "only the report's own filter script");
      assert.equal(report.result.injected, false);

      // Diff report: the forest plot has marks, one table row per comparison entry.
      const comparison = fixtureComparison();
      await Deno.writeTextFile(join(dir, "compare.html"), renderComparisonHtml(comparison));
      const entries = JSON.parse(comparisonToJson(comparison)).entries.length;
      const diff = await browser.open(join(dir, "compare.html"), CHECK);
      assert.deepEqual(diff.errors, []);
      assert.equal(diff.result.charts.length, 1);
      assert.equal(diff.result.charts[0].marks, 5);
      assert.equal(diff.result.entryRows, entries);
      assert.equal(diff.result.scripts, 0);
      assert.match(diff.result.title, /2 regressions, 1 newly failing/);

      // The checks can fail: a page with a blocked script and an empty chart is caught.
      await Deno.writeTextFile(
        join(dir, "broken.html"),
        `<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="default-src 'none'">` +
          `<svg aria-label="empty"></svg><script>console.error("boom")</script>`,
      );
      const broken = await browser.open(join(dir, "broken.html"), CHECK);
      assert.equal(broken.errors.length, 1);
      assert.match(broken.errors[0]!, /Content Security Policy/);
      assert.equal(broken.result.charts[0].marks, 0);
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Model output as it reaches reports: in names from datasets, details and failure messages. */
const HOSTILE = [
  "</script><script>window.pwned = 1</script>",
  '<img src=x onerror="window.pwned = 2">',
  "=cmd|' /C calc'!A0",
  "\u202Efdp.exe",
  "javascript:window.pwned=3",
];

function hostileRun() {
  return makeFile(
    HOSTILE.flatMap((h, i) => [
      makeRow({ model: h, format: `f${i}`, bits_per_weight: 4 + i, value: 10 + i }),
      makeRow({
        task: "tool_use",
        dataset: h,
        metric: `accuracy:${h}`,
        value: 0.5,
        higher_is_better: true,
        format: `f${i}`,
        detail: `failure: ${h}`,
      }),
      makeRow({ format: `g${i}`, status: "failed", value: null, detail: h }),
    ]),
    HOSTILE[0]!,
  );
}

const INERT_CHECK = `(() => ({
  scripts: document.scripts.length,
  images: document.images.length,
  handlers: [...document.querySelectorAll("*")].filter((e) =>
    [...e.attributes].some((a) => a.name.startsWith("on"))).length,
  links: document.querySelectorAll("a[href^='javascript']").length,
  pwned: window.pwned ?? null,
  text: document.body.textContent,
  bidi: /[\u202A-\u202E\u2066-\u2069]/.test(document.documentElement.outerHTML),
}))()`;

Deno.test({
  name:
    "model output with </script>, <img onerror>, =cmd| and U+202E is inert in HTML, CSV and markdown",
  ignore: !CHROMIUM,
  async fn() {
    const dir = await Deno.makeTempDir();
    const browser = await Browser.launch(CHROMIUM!);
    try {
      const run = hostileRun();
      const pages = {
        "report.html": renderHtml(run),
        "compare.html": renderComparisonHtml(compareResults(run, run, {}, {})),
      };
      for (const [name, html] of Object.entries(pages)) {
        await Deno.writeTextFile(join(dir, name), html);
        const page = await browser.open(join(dir, name), INERT_CHECK);
        assert.deepEqual(page.errors, [], name);
        const r = page.result;
        assert.deepEqual(
          [r.scripts, r.images, r.handlers, r.links, r.pwned, r.bidi],
          // report.html runs one script of its own (the row filter), allowed by its CSP hash.
          [name === "report.html" ? 1 : 0, 0, 0, 0, null, false],
          name,
        );
        // Nothing but text: each hostile string is shown as written (bidi controls spelled out).
        for (const h of HOSTILE) {
          assert.ok(r.text.includes(h.replace("\u202E", "[U+202E]")), `${name}: ${h}`);
        }
      }
      // CSV: formulas cannot start a cell; the text reads back exactly.
      const csv = rowsToCsv(run.rows);
      assert.ok(!/(^|,)=cmd/m.test(csv));
      assert.match(csv, /'=cmd\|/);
      const back = csvToRows(csv);
      assert.deepEqual(back.map((r) => r.model), run.rows.map((r) => r.model), "read back exactly");
      // Markdown (stdout summary, pull-request comment): no HTML, no broken tables, no bidi.
      for (
        const md of [
          summaryTable(run.rows),
          renderComparisonMarkdown(compareResults(run, run, {}, {})),
        ]
      ) {
        assert.doesNotMatch(md, /<script|<img|[\u202A-\u202E]/);
        for (const line of md.split("\n").filter((l) => l.startsWith("|"))) {
          const cells = line.replaceAll("\\|", "").split("|").length;
          assert.ok(
            cells ===
              md.split("\n").find((l) => l.startsWith("|"))!.replaceAll("\\|", "").split("|")
                .length,
            line,
          );
        }
      }
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** What the recommendation-first check reads: order, charts, resources and the filter at work. */
const LEADS_CHECK = `(() => {
  const rec = document.getElementById("recommendation");
  const firstSvg = document.querySelector("svg");
  const charts = [...document.querySelectorAll("figure[data-metric]")].map((fig) => ({
    metric: fig.dataset.metric,
    marks: fig.querySelectorAll("svg .pt").length,
    axisText: [...fig.querySelectorAll("svg text")].map((t) => t.textContent).join(" | "),
    tableRows: fig.querySelectorAll("details.table-view tbody tr").length,
  }));
  const visible = () => [...document.querySelectorAll("tr[data-row]")].filter((tr) => !tr.hidden).length;
  const all = visible();
  const box = document.getElementById("filter");
  box.value = "int8";
  box.dispatchEvent(new Event("input"));
  const filtered = visible();
  const int8 = [...document.querySelectorAll("tr[data-row]")].filter((tr) => tr.textContent.includes("int8")).length;
  const marks = [...document.querySelectorAll("svg .pt")];
  const dimmed = marks.filter((m) => m.classList.contains("dim"));
  const dimmedWrongly = dimmed.filter((m) => m.textContent.toLowerCase().includes("int8")).length;
  // The format drop-down instead of the box: rows and marks of other formats go.
  box.value = "";
  box.dispatchEvent(new Event("input"));
  const allAgain = visible();
  const select = document.querySelector('select[data-field="format"]');
  select.value = "int4-g32";
  select.dispatchEvent(new Event("change"));
  const rowsOf = (format) => [...document.querySelectorAll("tr[data-row]")].filter((tr) => tr.children[2].textContent === format);
  const byField = {
    options: [...select.options].map((o) => o.value),
    visible: visible(),
    int4: rowsOf("int4-g32").length,
    int4Hidden: rowsOf("int4-g32").filter((tr) => tr.hidden).length,
    cellsVisible: [...document.querySelectorAll("tr[data-cell]")].filter((tr) => !tr.hidden).map((tr) => tr.children[2].textContent),
    marksLit: marks.filter((m) => !m.classList.contains("dim")).map((m) => m.getAttribute("data-f")),
  };
  select.value = "";
  select.dispatchEvent(new Event("change"));
  const groups = (metric) => [...document.querySelectorAll('figure[data-metric="' + metric + '"] svg .grp')].map((t) => t.textContent);
  return {
    allAgain, byField, restored: visible(), speedGroups: groups("speed@format"), memoryGroups: groups("memory@format"),
    firstH2: document.querySelector("h2").textContent,
    recFirst: !!rec && !!firstSvg && (rec.compareDocumentPosition(firstSvg) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0,
    choice: rec.querySelector(".choice").textContent,
    charts,
    resources: performance.getEntriesByType("resource").length,
    all, filtered, int8, marks: marks.length, dimmed: dimmed.length, dimmedWrongly,
  };
})()`;

Deno.test({
  name:
    "report.html leads with the recommendation; every chart has marks and a table; rows filter offline",
  ignore: !CHROMIUM,
  async fn() {
    const dir = await Deno.makeTempDir();
    const browser = await Browser.launch(CHROMIUM!);
    try {
      const file = JSON.parse(
        await Deno.readTextFile(new URL("../fixtures/recommend/quickstart.json", import.meta.url)),
      );
      await Deno.writeTextFile(join(dir, "report.html"), renderHtml(file));
      const page = await browser.open(join(dir, "report.html"), LEADS_CHECK);
      assert.deepEqual(page.errors, []);
      const r = page.result;
      assert.equal(r.firstH2, "Recommendation");
      assert.ok(r.recFirst, "the recommendation comes before every chart");
      assert.match(r.choice, /mini rtn\/int8 on cpu/);
      const metrics = r.charts.map((c: Json) => c.metric);
      for (
        const m of ["ppl", "accuracy", "ppl@length", "retrieval@length:depth", "speed@format"]
          .concat(["memory@format", "kv@context"])
      ) assert.ok(metrics.includes(m), `${m} in ${metrics}`);
      for (const c of r.charts) {
        assert.ok(c.marks > 0, `${c.metric}: no marks`);
        assert.ok(c.tableRows > 0, `${c.metric}: no table view`);
      }
      // Axis labels name their units.
      const axis = (m: string) => r.charts.find((c: Json) => c.metric === m).axisText;
      assert.match(axis("ppl"), /bits per weight.*ppl \(perplexity\)/);
      assert.match(axis("accuracy"), /accuracy \(fraction\)/);
      assert.match(axis("speed@format"), /decode speed \(tokens\/s\)/);
      assert.match(axis("memory@format"), /memory \(MiB\)/);
      assert.match(axis("kv@context"), /context length \(tokens.*KV cache \(MiB/);
      // Self-contained: nothing fetched; the filter keeps exactly the rows that mention int8.
      assert.equal(r.resources, 0);
      assert.ok(r.int8 > 0 && r.int8 < r.all);
      assert.equal(r.filtered, r.int8);
      // Chart marks of other cells are dimmed, those of int8 cells are not.
      assert.ok(r.dimmed > 0 && r.dimmed < r.marks, `${r.dimmed} of ${r.marks} dimmed`);
      assert.equal(r.dimmedWrongly, 0);
      // Filter by field: the format drop-down lists the formats and keeps exactly their rows, the
      // summary line of the cell and the chart marks of that format (the KV line has no format).
      const formats = ["f32", "int8", "int4-g32", "int3-g32", "int2-g32"];
      assert.equal(r.allAgain, r.all);
      assert.deepEqual(r.byField.options, ["", ...formats]);
      assert.ok(r.byField.int4 > 0 && r.byField.int4 < r.all);
      assert.equal(r.byField.visible, r.byField.int4);
      assert.equal(r.byField.int4Hidden, 0);
      assert.deepEqual(r.byField.cellsVisible, ["int4-g32"]);
      assert.ok(r.byField.marksLit.length > 0);
      for (const f of r.byField.marksLit) {
        assert.ok(!/format=/.test(f) || /format=int4-g32/.test(f), f);
      }
      assert.equal(r.restored, r.all);
      // Speed and memory bars are grouped by format, one heading per format.
      assert.deepEqual(r.speedGroups, formats);
      assert.deepEqual(r.memoryGroups, formats);
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** What the calibration-sensitivity check reads: the table and the method drop-down at work. */
const SENSITIVITY_CHECK = `(() => {
  const table = document.getElementById("calibration-sensitivity");
  const rows = () => [...table.querySelectorAll("tbody tr")];
  const shown = () => rows().filter((tr) => !tr.hidden).map((tr) => [...tr.children].map((td) => td.textContent));
  const all = shown();
  const select = document.querySelector('select[data-field="method"]');
  select.value = "gptq@out_of_domain";
  select.dispatchEvent(new Event("change"));
  const gptq = shown();
  return {
    recFirst: document.querySelector("h2").textContent,
    charts: [...document.querySelectorAll("figure[data-metric]")].map((fig) => ({
      metric: fig.dataset.metric,
      marks: fig.querySelectorAll("svg .pt").length,
      tableRows: fig.querySelectorAll("details.table-view tbody tr").length,
    })),
    headers: [...table.querySelectorAll("th")].map((th) => th.textContent),
    all, gptq,
    options: [...select.options].map((o) => o.value),
  };
})()`;

Deno.test({
  name:
    "report.html shows calibration sensitivity per method and format; the method filter keeps a method's sets",
  ignore: !CHROMIUM,
  async fn() {
    const dir = await Deno.makeTempDir();
    const browser = await Browser.launch(CHROMIUM!);
    try {
      const file = JSON.parse(
        await Deno.readTextFile(
          new URL("../fixtures/recommend/calibration_mini.json", import.meta.url),
        ),
      );
      await Deno.writeTextFile(join(dir, "report.html"), renderHtml(file));
      const page = await browser.open(join(dir, "report.html"), SENSITIVITY_CHECK);
      assert.deepEqual(page.errors, []);
      const r = page.result;
      assert.equal(r.recFirst, "Recommendation");
      for (const c of r.charts) {
        assert.ok(c.marks > 0, `${c.metric}: no marks`);
        assert.ok(c.tableRows > 0, `${c.metric}: no table view`);
      }
      assert.deepEqual(r.headers.slice(4, 8), [
        "metric",
        "by calibration set",
        "spread (max − min)",
        "relative",
      ]);
      // GPTQ and AWQ at int4-g32, perplexity and KLD each: perplexity 113.9 (in-domain) against
      // 118.6 (out-of-domain) for GPTQ.
      assert.deepEqual(r.all.map((l: string[]) => `${l[1]} ${l[4]}`), [
        "gptq perplexity(heldout).ppl",
        "gptq kld(heldout).kld",
        "awq perplexity(heldout).ppl",
        "awq kld(heldout).kld",
      ]);
      assert.equal(r.all[0][5], "in_domain: 113.9, out_of_domain: 118.6");
      assert.equal(r.all[0][8], "out_of_domain");
      // A calibration set's method id keeps its method's lines (both sets), and no other.
      assert.ok(r.options.includes("gptq@in_domain") && r.options.includes("awq@out_of_domain"));
      assert.deepEqual(r.gptq.map((l: string[]) => l[1]), ["gptq", "gptq"]);
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
