import assert from "node:assert/strict";
import { join } from "node:path";
import {
  jsonErrorOffset,
  parseResults,
  readResults,
  ResultsFileError,
  resultsToJson,
} from "./json.ts";
import type { ResultRow } from "../core/row.ts";
import { makeFile, makeRow } from "../core/test_rows.ts";

Deno.test("resultsToJson writes stable, pretty text with the schema's key order", () => {
  const row = makeRow({
    samples: { kind: "window_nll", values: [2.5, 2.25], weights: [511, 511] },
    extra: { zeta: 1, alpha: "a" },
  });
  const file = makeFile([row]);
  const text = resultsToJson(file);
  // The independent reference for content is JSON.parse; for layout, the expected lines below.
  assert.deepEqual(JSON.parse(text), file);
  const lines = text.split("\n");
  assert.deepEqual(lines.slice(0, 3), ["{", '  "schema_version": 1,', '  "meta": {']);
  assert.ok(lines.includes('    "argv": ["bench", "suites/quickstart.yaml"]'));
  assert.ok(lines.includes('      "extra": {'));
  assert.ok(lines.includes('        "alpha": "a",'));
  assert.ok(lines.includes('        "values": [2.5, 2.25],'));
  assert.ok(text.endsWith("}\n"));
  const rowKeys = Object.keys(JSON.parse(text).rows[0]);
  assert.deepEqual(rowKeys.slice(0, 3), ["run_id", "suite", "model"]);
  assert.deepEqual(rowKeys.slice(-4), ["status", "detail", "extra", "samples"]);
  // Key order in memory does not matter.
  const shuffled = Object.fromEntries(Object.entries(row).reverse()) as unknown as ResultRow;
  assert.equal(resultsToJson(makeFile([shuffled])), text);
});

Deno.test("readResults reads back what resultsToJson wrote, NaN samples included", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = makeFile([
      makeRow({ samples: { kind: "correct", values: [1, Number.NaN, 0], ids: ["a", "b", "c"] } }),
      makeRow({ status: "skipped", value: null, stderr: null, detail: "no webgpu adapter" }),
    ]);
    const path = join(dir, "results.json");
    const text = resultsToJson(file);
    assert.ok(text.includes('"values": [1, null, 0]'));
    await Deno.writeTextFile(path, text);
    assert.deepEqual(await readResults(path), file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readResults names a missing file", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.remove(dir);
  const path = join(dir, "nope.json");
  await assert.rejects(readResults(path), (e: unknown) => {
    assert.ok(e instanceof ResultsFileError);
    assert.equal(e.message, `Results file "${path}" is not usable: the file does not exist`);
    return true;
  });
});

Deno.test("parseResults gives the line and column of invalid JSON", () => {
  const text = '{\n  "schema_version": 1,\n  "meta": tru\n}';
  assert.throws(() => parseResults(text, "r.json"), (e: unknown) => {
    assert.ok(e instanceof ResultsFileError);
    assert.match(
      e.message,
      /^Results file "r\.json" is not usable: invalid JSON at line 3, column 14/,
    );
    return true;
  });
  assert.throws(() => parseResults('{"rows": [', "cut.json"), {
    message: /invalid JSON at line 1, column 11 /,
  });
});

Deno.test("jsonErrorOffset agrees with V8 wherever V8 reports a position", () => {
  const cases = [
    '{"a": 1,}',
    "[1,2",
    '{"a": 1} x',
    '{"a": "b\nc"}',
    '{"a": 01}',
    '{"a": -}',
    '{"a": "\\q"}',
    '{"a" 1}',
    '{"a": 1.}',
    '{"a": "\\u12g4"}',
    "[1e]",
  ];
  for (const text of cases) {
    let position: number | undefined;
    try {
      JSON.parse(text);
    } catch (e) {
      const m = /at position (\d+)/.exec((e as Error).message);
      position = m ? Number(m[1]) : text.length;
    }
    assert.equal(jsonErrorOffset(text), position, JSON.stringify(text));
  }
  // Where V8 gives no position, the offending character by hand: the "}" after "tru", the ",".
  assert.equal(jsonErrorOffset('{"a": tru}'), 9);
  assert.equal(jsonErrorOffset("[1,,2]"), 3);
  assert.equal(jsonErrorOffset(""), 0);
});

Deno.test("parseResults rejects another schema_version", () => {
  const text = JSON.stringify({ ...makeFile([]), schema_version: 2 });
  assert.throws(() => parseResults(text, "v2.json"), {
    name: "ResultsFileError",
    message:
      'Results file "v2.json" is not usable: $.schema_version: unsupported version 2; this quantbench reads version 1',
  });
});

Deno.test("parseResults lists missing and mistyped fields by JSON path", () => {
  const file = JSON.parse(resultsToJson(makeFile([makeRow(), makeRow()])));
  delete file.meta.git_sha;
  file.rows[0].value = "12.5";
  file.rows[1].status = "done";
  delete file.rows[1].detail;
  file.rows[1].samples = { kind: "x", values: [1, 2], ids: ["a"] };
  file.rows[1].colour = "red";
  assert.throws(() => parseResults(JSON.stringify(file), "bad.json"), (e: unknown) => {
    assert.ok(e instanceof ResultsFileError);
    assert.deepEqual(e.problems, [
      "$.meta.git_sha: missing",
      '$.rows[0].value: expected a number or null, got "12.5"',
      "$.rows[1].colour: unknown field",
      '$.rows[1].status: expected "ok", "failed" or "skipped", got "done"',
      "$.rows[1].detail: missing",
      "$.rows[1].samples.ids: has 1 entries; values has 2",
    ]);
    assert.match(
      e.message,
      /^Results file "bad\.json" is not usable:\n {2}\$\.meta\.git_sha: missing\n/,
    );
    return true;
  });
  assert.throws(() => parseResults("[]", "array.json"), {
    message: 'Results file "array.json" is not usable: $: expected an object, got an array',
  });
});

Deno.test("readResults: a results.csv is refused with the way to the results.json beside it", async () => {
  const dir = await Deno.makeTempDir();
  const csv = `${dir}/results.csv`;
  await Deno.writeTextFile(csv, "run_id,suite,model\nr,s,m\n");
  await assert.rejects(readResults(csv), (e: Error) => {
    assert.equal(e.name, "ResultsFileError");
    assert.match(e.message, /results CSV, which holds no per-sample values for paired statistics/);
    assert.match(e.message, /pass the run's results\.json or the run folder/);
    return true;
  });
  await Deno.writeTextFile(`${dir}/results.json`, "{}");
  await assert.rejects(readResults(csv), /results\.json \(here: .*results\.json\)/);
});
