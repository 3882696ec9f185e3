import assert from "node:assert/strict";
import { printers } from "./printer.ts";
import { parseResults } from "./json.ts";
import { csvToRows } from "./csv.ts";
import { makeFile, makeRow } from "../core/test_rows.ts";

Deno.test("printers registers csv, html, json and markdown with their extensions", () => {
  assert.deepEqual(printers.names(), ["csv", "html", "json", "markdown"]);
  assert.deepEqual(printers.names().map((n) => printers.get(n).extension), [
    "csv",
    "html",
    "json",
    "md",
  ]);
  assert.throws(() => printers.get("jsno"), { name: "UnknownNameError", message: /"json"/ });
});

Deno.test("each printer renders the whole file", () => {
  const file = makeFile([makeRow(), makeRow({ method: "gptq", value: 9.25 })]);
  assert.deepEqual(parseResults(printers.get("json").render(file), "x.json"), file);
  assert.deepEqual(csvToRows(printers.get("csv").render(file)), file.rows);
  assert.match(printers.get("html").render(file), /^<!DOCTYPE html>/);
  assert.equal(printers.get("markdown").render(file).trimEnd().split("\n").length, 2 + 2);
});
