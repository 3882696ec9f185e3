import assert from "node:assert/strict";
import type { CodedMatrix } from "../../core/coded.ts";
import type { QuantizedMatrix } from "../../core/model.ts";
import { stackRows } from "./stack_rows.ts";

const int = (rows: number, over: Partial<QuantizedMatrix> = {}): QuantizedMatrix => ({
  kind: "int",
  rows,
  cols: 4,
  bits: 4,
  groupSize: 2,
  symmetric: false,
  codes: Uint8Array.from({ length: rows * 4 }, (_, i) => (i * 7 + rows) % 16),
  scales: Float32Array.from({ length: rows * 2 }, (_, i) => 0.5 + i + rows),
  zeros: Uint8Array.from({ length: rows * 2 }, (_, i) => (i + rows) % 16),
  ...over,
});

Deno.test("stackRows: int matrices keep every row's codes, scales and zero points", () => {
  const a = int(2);
  const b = int(3);
  const m = stackRows([a, b]);
  assert.ok(m?.kind === "int");
  assert.equal(m.rows, 5);
  assert.deepEqual([...m.codes], [...a.codes, ...b.codes]);
  assert.deepEqual([...m.scales], [...a.scales, ...b.scales]);
  assert.deepEqual([...m.zeros!], [...a.zeros!, ...b.zeros!]);
  assert.equal(m.groupSize, 2);
});

Deno.test("stackRows: dense and coded rows are concatenated", () => {
  const d = stackRows([
    { kind: "dense", rows: 1, cols: 2, data: Float32Array.of(1, 2) },
    { kind: "dense", rows: 2, cols: 2, data: Float32Array.of(3, 4, 5, 6) },
  ]);
  assert.ok(d?.kind === "dense");
  assert.deepEqual([...d.data], [1, 2, 3, 4, 5, 6]);
  const coded = (rows: number, fill: number): CodedMatrix => ({
    kind: "coded",
    codec: "q8_0",
    rows,
    cols: 32,
    rowBytes: 34,
    data: new Uint8Array(rows * 34).fill(fill),
    tensorScale: 1,
  });
  const c = stackRows([coded(1, 1), coded(2, 2)]);
  assert.ok(c?.kind === "coded");
  assert.equal(c.rows, 3);
  assert.deepEqual([c.data[0], c.data[34], c.data[101]], [1, 2, 2]);
});

Deno.test("stackRows: matrices whose rows do not decode alike are not stacked", () => {
  assert.equal(stackRows([int(1), int(1, { bits: 3 })]), undefined);
  assert.equal(stackRows([int(1), int(1, { groupSize: 4 })]), undefined);
  assert.equal(stackRows([int(1), int(1, { symmetric: true, zeros: null })]), undefined);
  assert.equal(stackRows([int(1), int(1, { perTensor: true })]), undefined);
  assert.equal(stackRows([int(1), int(1, { sides: { g_idx: new Int32Array(4) } })]), undefined);
  assert.equal(stackRows([int(1), int(1, { cols: 8 })]), undefined);
  assert.equal(
    stackRows([int(1), { kind: "dense", rows: 1, cols: 4, data: new Float32Array(4) }]),
    undefined,
  );
  assert.equal(stackRows([]), undefined);
});
