import assert from "node:assert/strict";
import { expandCells, FilterError, formatCellTable, parseFilter } from "./expand.ts";
import type { Cell, FormatSpec, Suite } from "../../core/suite_types.ts";

function preset(weights: string): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {} };
}

/** 2 models × 3 methods × 3 formats × 2 backends, written out by hand. */
function suite(overrides: Partial<Suite> = {}): Suite {
  return {
    file: "/suites/t.yaml",
    name: "t",
    seed: 0,
    models: [{ id: "a", path: "/m/a.bin" }, { id: "b", path: "/m/b" }],
    datasets: {},
    methods: [
      { id: "none", method: "none", options: {} },
      { id: "rtn", method: "rtn", options: {} },
      { id: "rtn-x", method: "rtn", options: {} },
    ],
    formats: [preset("f32"), preset("int4"), { ...preset("int8"), id: "w8g32", group: 32 }],
    backends: ["cpu", "webgpu"],
    tasks: [],
    exclude: [],
    thresholds: {},
    hash: "",
    ...overrides,
  };
}

const ids = (cells: Cell[]) => cells.map((c) => c.id);

Deno.test("expandCells: models × methods × formats × backends in suite order", () => {
  const cells = expandCells(suite());
  assert.equal(cells.length, 2 * 3 * 3 * 2);
  assert.deepEqual(ids(cells).slice(0, 8), [
    "a/none/f32/cpu",
    "a/none/f32/webgpu",
    "a/none/int4/cpu",
    "a/none/int4/webgpu",
    "a/none/w8g32/cpu",
    "a/none/w8g32/webgpu",
    "a/rtn/f32/cpu",
    "a/rtn/f32/webgpu",
  ]);
  assert.equal(cells[17]!.id, "a/rtn-x/w8g32/webgpu");
  assert.equal(cells[18]!.id, "b/none/f32/cpu");
  assert.equal(cells[35]!.id, "b/rtn-x/w8g32/webgpu");
  assert.equal(new Set(ids(cells)).size, 36);
  const c = cells[4]!;
  assert.equal(c.model.id, "a");
  assert.equal(c.method.id, "none");
  assert.equal(c.format.group, 32);
  assert.equal(c.backend, "cpu");
});

Deno.test("expandCells: impossible combinations are skipped cells with a reason", () => {
  const byId = new Map(expandCells(suite()).map((c) => [c.id, c]));
  const noneInt4 = byId.get("a/none/int4/cpu")!;
  assert.equal(typeof noneInt4.skipReason, "string");
  assert.match(noneInt4.skipReason!, /int4/);
  const rtnF32 = byId.get("b/rtn/f32/webgpu")!;
  assert.equal(typeof rtnF32.skipReason, "string");
  assert.match(rtnF32.skipReason!, /f32/);
  assert.equal(byId.get("a/none/f32/cpu")!.skipReason, undefined);
  assert.equal(byId.get("a/rtn/int4/cpu")!.skipReason, undefined);
  assert.equal(byId.get("a/rtn-x/w8g32/cpu")!.skipReason, undefined);
  assert.ok(!("skipReason" in byId.get("a/rtn/int4/cpu")!));
});

Deno.test("expandCells: exclude rules, with ! negation and registry names", () => {
  // The baseline only at full precision: removes none × {int4, w8g32} for 2 models × 2 backends.
  let cells = expandCells(suite({ exclude: [{ method: "none", format: "!f32" }] }));
  assert.equal(cells.length, 36 - 2 * 2 * 2);
  assert.ok(ids(cells).includes("a/none/f32/cpu"));
  assert.ok(!ids(cells).includes("a/none/int4/cpu"));
  assert.ok(!ids(cells).includes("b/none/w8g32/webgpu"));

  // webgpu only for model a.
  cells = expandCells(suite({ exclude: [{ model: "!a", backend: "webgpu" }] }));
  assert.equal(cells.length, 36 - 9);
  assert.ok(ids(cells).every((id) => id.startsWith("a/") || id.endsWith("/cpu")));

  // `rtn` names both rtn configurations; `int8` names the w8g32 format by its weights.
  cells = expandCells(suite({ exclude: [{ method: "rtn", format: "int8" }] }));
  assert.equal(cells.length, 36 - 2 * 2 * 2);
  assert.ok(!ids(cells).some((id) => /\/rtn(-x)?\/w8g32\//.test(id)));

  // Every field must match: this rule matches nothing and removes nothing.
  cells = expandCells(suite({ exclude: [{ model: "a", method: "none", format: "w8g32" }] }));
  assert.equal(cells.length, 36 - 2);
  cells = expandCells(suite({ exclude: [{ model: "c" }] }));
  assert.equal(cells.length, 36);
});

Deno.test("expandCells: --filter terms", () => {
  const run = (filter: string) => ids(expandCells(suite(), { filter }));
  assert.equal(run("model=a").length, 18);
  assert.equal(run("method!=none").length, 24);
  assert.deepEqual(run("model=b,method=rtn,format=int*,backend=cpu"), [
    "b/rtn/int4/cpu",
    "b/rtn/w8g32/cpu",
    "b/rtn-x/int4/cpu",
    "b/rtn-x/w8g32/cpu",
  ]);
  assert.deepEqual(run("method=rtn-?,format=f??,model=a"), [
    "a/rtn-x/f32/cpu",
    "a/rtn-x/f32/webgpu",
  ]);
  assert.deepEqual(run("*/none/*/cpu"), [
    "a/none/f32/cpu",
    "a/none/int4/cpu",
    "a/none/w8g32/cpu",
    "b/none/f32/cpu",
    "b/none/int4/cpu",
    "b/none/w8g32/cpu",
  ]);
  assert.equal(run("!*webgpu").length, 18);
  assert.equal(run(" model = a , backend != cpu ").length, 9);
  // Glob characters other than * and ? are literal.
  assert.deepEqual(run("a.none*"), []);
  assert.deepEqual(run("model=zzz"), []);
});

Deno.test("parseFilter: invalid syntax is a FilterError", () => {
  const cases: [string, string][] = [
    ["", 'Invalid filter "": the filter is empty'],
    [
      "model=a,,method=rtn",
      'Invalid filter "model=a,,method=rtn": empty term (two commas or a stray comma)',
    ],
    ["model=a,", 'Invalid filter "model=a,": empty term (two commas or a stray comma)'],
    [
      "modle=a",
      'Invalid filter term "modle=a": unknown key "modle"; did you mean "model"? Known: model, method, format, backend',
    ],
    ["x=a", 'Invalid filter term "x=a": unknown key "x". Known: model, method, format, backend'],
    ["model=", 'Invalid filter term "model=": no glob after "="'],
    ["format!=", 'Invalid filter term "format!=": no glob after "!="'],
    ["=a", 'Invalid filter term "=a": no key before "="'],
    ["!", 'Invalid filter term "!": "!" needs a glob after it'],
  ];
  for (const [expr, message] of cases) {
    assert.throws(() => parseFilter(expr), (e: unknown) => {
      assert.ok(e instanceof FilterError);
      assert.equal(e.name, "FilterError");
      assert.equal(e.message, message);
      return true;
    });
  }
  assert.throws(() => expandCells(suite(), { filter: "bakend=cpu" }), FilterError);
});

Deno.test("formatCellTable: aligned columns with the status last", () => {
  const cells = expandCells(suite({ models: [{ id: "a", path: "/a" }], backends: ["cpu"] }), {
    filter: "format=f32",
  });
  const reason = cells[1]!.skipReason!;
  assert.equal(
    formatCellTable(cells),
    [
      "cell             model  method  format  backend  status",
      "a/none/f32/cpu   a      none    f32     cpu      run",
      `a/rtn/f32/cpu    a      rtn     f32     cpu      skipped: ${reason}`,
      `a/rtn-x/f32/cpu  a      rtn-x   f32     cpu      skipped: ${reason}`,
    ].join("\n"),
  );
  assert.equal(formatCellTable([]), "cell  model  method  format  backend  status");
});
