import assert from "node:assert/strict";
import { CsvError, csvToRows, parseCsv, rowsToCsv } from "./csv.ts";
import { makeRow } from "../core/test_rows.ts";

// The required header, typed from DESIGN.md "Report schema" rather than imported.
const DESIGN_HEADER = "run_id,suite,model,method,format,backend,task,dataset,metric,value,unit," +
  "higher_is_better,n,stderr,ci_low,ci_high,bits_per_weight,status,detail";

Deno.test("rowsToCsv writes the required columns in the design's order, then sorted extras", () => {
  const text = rowsToCsv([
    makeRow({ extra: { seconds: 1.5 } }),
    makeRow({ extra: { cache: "hit", seconds: 2 } }),
  ]);
  const header = text.slice(0, text.indexOf("\r\n"));
  assert.equal(header, DESIGN_HEADER + ",cache,seconds");
  assert.equal(rowsToCsv([]), DESIGN_HEADER + "\r\n");
});

Deno.test("rowsToCsv writes a record as RFC 4180 specifies", () => {
  const text = rowsToCsv([
    makeRow({
      value: -0.125,
      unit: "nats",
      higher_is_better: null,
      n: null,
      stderr: 1e-7,
      ci_low: null,
      ci_high: null,
      status: "failed",
      detail: 'out of memory, "big" model\nsecond line',
      extra: { seconds: 3, warm: true },
    }),
  ]);
  const record = text.split("\r\n")[1];
  assert.equal(
    record,
    "20250101T000000Z,quickstart,mini,rtn,w4g32,cpu,perplexity,wiki,ppl,-0.125,nats,,,1e-7,,,4.5," +
      'failed,"out of memory, ""big"" model\nsecond line",3,true',
  );
  assert.ok(text.endsWith("\r\n"));
});

Deno.test("rowsToCsv quotes exactly as Python's csv.writer (QUOTE_MINIMAL, CRLF) does", () => {
  // Reference produced by Python 3: csv.writer(buf, lineterminator="\r\n").writerow(...) for
  // ['a,b', 'say "hi"', 'two\nlines', 'plain', 'cr\rx'].
  const python = '"a,b","say ""hi""","two\nlines",plain,"cr\rx"';
  const text = rowsToCsv([
    makeRow({
      extra: { a: "a,b", b: 'say "hi"', c: "two\nlines", d: "plain", e: "cr\rx" },
    }),
  ]);
  assert.ok(text.split("\r\n")[1]!.endsWith("," + python), text);
});

Deno.test("rowsToCsv guards text against spreadsheet formulas but never alters numbers", () => {
  const cells = (detail: string) => parseCsv(rowsToCsv([makeRow({ detail })]))[1]!.at(-1);
  assert.equal(cells('=HYPERLINK("http://x")'), '\'=HYPERLINK("http://x")');
  assert.equal(cells("+1"), "'+1");
  assert.equal(cells("-2"), "'-2");
  assert.equal(cells("@SUM(A1)"), "'@SUM(A1)");
  assert.equal(cells("\tx"), "'\tx");
  assert.equal(cells("\rx"), "'\rx");
  assert.equal(cells("'=already"), "''=already");
  assert.equal(cells("a=b"), "a=b");
  assert.equal(cells("'quoted'"), "'quoted'");
  const record = rowsToCsv([makeRow({ value: -3.25, ci_low: -1e-300 })]).split("\r\n")[1]!;
  assert.deepEqual(record.split(",").slice(9, 10), ["-3.25"]);
  assert.deepEqual(record.split(",").slice(14, 15), ["-1e-300"]);
});

Deno.test("csvToRows reverses rowsToCsv exactly", () => {
  const rows = [
    makeRow(),
    makeRow({
      model: "-negative-name",
      method: "=cmd|' /C calc'!A0",
      format: "'=x",
      dataset: "tab\there",
      value: 0.1 + 0.2,
      stderr: 5e-324,
      ci_low: -1.7976931348623157e308,
      ci_high: Number.NaN,
      bits_per_weight: null,
      higher_is_better: true,
      status: "skipped",
      detail: 'multi\r\nline, with "quotes" and ünïcödé',
      extra: { seconds: -0.5, note: "-1", flag: false, big: 1e21 },
    }),
    makeRow({ status: "failed", value: null, higher_is_better: null, extra: { note: "x" } }),
  ];
  assert.deepEqual(csvToRows(rowsToCsv(rows)), rows);
});

Deno.test("parseCsv matches Python's csv.reader on quotes, embedded CRLF and empty fields", () => {
  // Reference: list(csv.reader(io.StringIO(text, newline=""))) in Python 3.
  const text = 'a,"b""c","d\r\ne"\r\n,,\r\nlast,row';
  assert.deepEqual(parseCsv(text), [["a", 'b"c', "d\r\ne"], ["", "", ""], ["last", "row"]]);
});

Deno.test("parseCsv accepts LF line ends, a byte-order mark and a trailing comma", () => {
  assert.deepEqual(parseCsv("\uFEFFx,y\n1,\n"), [["x", "y"], ["1", ""]]);
  assert.deepEqual(parseCsv(""), []);
});

Deno.test("parseCsv reports malformed quoting with line and column", () => {
  assert.throws(() => parseCsv('a,b\n"open,c\n'), {
    name: "CsvError",
    message: "Unterminated quoted field starting at line 2, column 1",
  });
  assert.throws(() => parseCsv('a,"b"x\n'), {
    name: "CsvError",
    message: 'Unexpected "x" after a quoted field at line 1, column 6',
  });
  assert.throws(() => parseCsv('a,b"c\n'), {
    name: "CsvError",
    message: "Quote inside an unquoted field at line 1, column 4",
  });
});

Deno.test("csvToRows names the missing column or the bad cell", () => {
  assert.throws(() => csvToRows("run_id,suite\r\n"), (e: unknown) => {
    assert.ok(e instanceof CsvError);
    assert.match(e.message, /lacks required column\(s\) "model", "method"/);
    return true;
  });
  const good = rowsToCsv([makeRow()]);
  const bad = good.replace(",12.5,", ",twelve,");
  assert.throws(() => csvToRows(bad), {
    name: "CsvError",
    message: 'Expected a number at line 2, column "value", got "twelve"',
  });
  assert.throws(() => csvToRows(good.replace(",ok,", ",fine,")), {
    message: 'Expected ok, failed or skipped at line 2, column "status", got "fine"',
  });
  assert.throws(() => csvToRows(good + "too,short\r\n"), {
    message: "Line 3 has 2 fields; the header has 19",
  });
});

Deno.test("rowsToCsv refuses an extra column named like a required one", () => {
  assert.throws(() => rowsToCsv([makeRow({ extra: { value: 1 } })]), {
    name: "CsvError",
    message: 'Extra column "value" repeats a required column name',
  });
});
