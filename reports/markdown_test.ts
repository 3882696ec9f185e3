import assert from "node:assert/strict";
import { summaryMarkdown, summaryTable } from "./markdown.ts";
import { markdownTable } from "../core/markdown_table.ts";
import { makeFile, makeRow } from "../core/test_rows.ts";

Deno.test("markdownTable pads columns and right-aligns numeric ones", () => {
  const table = markdownTable(["name", "ppl"], [["rtn", 12.5], ["gptq", 9]]);
  assert.equal(
    table,
    [
      "| name |  ppl |",
      "| ---- | ---: |",
      "| rtn  | 12.5 |",
      "| gptq |    9 |",
      "",
    ].join("\n"),
  );
});

Deno.test("markdownTable escapes pipes and line breaks and writes null as empty", () => {
  const table = markdownTable(["a", "b"], [["x|y", "two\r\nlines"], [null]]);
  const lines = table.trimEnd().split("\n");
  assert.equal(lines[2], "| x\\|y | two lines |");
  assert.equal(lines[3], "|      |           |");
  // Every line has the same number of unescaped pipes, so the table keeps two columns.
  for (const line of lines) assert.equal(line.match(/(?<!\\)\|/g)?.length, 3);
  assert.throws(() => markdownTable(["a"], [["1", "2"]]), RangeError);
});

Deno.test("summaryTable prints one line per row with 4 significant digits and ± stderr", () => {
  const table = summaryTable([
    makeRow({ value: 12.345678, stderr: 0.0123456, bits_per_weight: 4.5 }),
    makeRow({ status: "failed", value: null, stderr: null, bits_per_weight: null, detail: "boom" }),
  ]);
  const lines = table.trimEnd().split("\n");
  assert.equal(lines.length, 4);
  const cells = (line: string) => line.slice(2, -2).split(" | ").map((c) => c.trim());
  assert.deepEqual(cells(lines[0]!), [
    "model",
    "method",
    "format",
    "backend",
    "task",
    "dataset",
    "metric",
    "value",
    "± stderr",
    "bpw",
    "status",
  ]);
  assert.deepEqual(cells(lines[2]!), [
    "mini",
    "rtn",
    "w4g32",
    "cpu",
    "perplexity",
    "wiki",
    "ppl",
    "12.35",
    "± 0.012",
    "4.5",
    "ok",
  ]);
  assert.deepEqual(cells(lines[3]!).slice(7), ["", "", "", "failed"]);
});

Deno.test("summaryMarkdown leads with the recommendation line when there is one", async () => {
  const file = JSON.parse(
    await Deno.readTextFile(new URL("../fixtures/recommend/quickstart.json", import.meta.url)),
  );
  const md = summaryMarkdown(file);
  assert.match(
    md.split("\n")[0]!,
    /^\*\*Recommended:\*\* mini rtn\/int8 on cpu \(least quality loss; 12\.84 MiB at 2048 tokens, 414 decode tokens\/s;/,
  );
  assert.ok(md.endsWith(summaryTable(file.rows)));
  // No full-precision baseline to judge against: no line, just the table.
  const bare = makeFile([makeRow({ method: "rtn", status: "failed", value: null })]);
  assert.equal(summaryMarkdown(bare), summaryTable(bare.rows));
});
