import assert from "node:assert/strict";
import { packMatrix } from "./pack_matrix.ts";
import { decodePackedRow, packedShape, threadsPerRow, vectorIndex, vectorWords } from "./pack.ts";
import { quantizeInt } from "../formats/int.ts";
import { decodeRow } from "../formats/matrix.ts";
import { rowCodecs } from "../formats/codecs.ts";
import { encodeMatrix } from "../formats/row_codecs.ts";
import { affineCodec } from "../formats/affine_codec.ts";
import { dense, type Matrix } from "../../core/model.ts";
import { pseudoRandom } from "../../core/test_values.ts";

// 37 rows × 172 columns: a short last chunk and group; 1–2 KiB bindings split the matrices.
const ROWS = 37;
const COLS = 172;
const DATA = pseudoRandom(ROWS * COLS, 21);

function decodeAll(m: Matrix): Float32Array[] {
  return Array.from({ length: m.rows }, (_, r) => {
    const out = new Float32Array(m.cols);
    decodeRow(m, r, out);
    return out;
  });
}

Deno.test("vectorIndex maps every (row, chunk, vector) to its own slot", () => {
  for (const [chunks, bits] of [[6, 4], [300, 8], [1, 32], [129, 3]]) {
    const tpr = threadsPerRow(chunks!);
    const V = vectorWords(bits!);
    const vectors = bits! / V;
    const seen = new Set<number>();
    for (let row = 0; row < 3; row++) {
      for (let c = 0; c < chunks!; c++) {
        for (let v = 0; v < vectors; v++) seen.add(vectorIndex(row, c, v, chunks!, tpr, vectors));
      }
    }
    assert.equal(seen.size, 3 * chunks! * vectors);
    assert.equal(Math.max(...seen), 3 * chunks! * vectors - 1);
  }
});

Deno.test("integer matrices repack exactly (every scale type, zero points, row parts)", () => {
  const cases: Parameters<typeof quantizeInt>[3][] = [
    { bits: 8, group: 0, symmetric: true },
    { bits: 4, group: 32, symmetric: false },
    { bits: 4, group: 16, symmetric: true, scaleDtype: "bf16" },
    { bits: 3, group: 64, symmetric: true, scaleDtype: "f32" },
    { bits: 2, group: -1, symmetric: true },
  ];
  for (const config of cases) {
    const m = quantizeInt(DATA, ROWS, COLS, config);
    const p = packMatrix(m, 1024);
    assert.equal(p.fallback, undefined, JSON.stringify(config));
    assert.ok(p.parts.length > 1, "split into row parts");
    decodeAll(m).forEach((row, r) => assert.deepEqual(decodePackedRow(p, r), row));
  }
});

Deno.test("a group that is not a power of two falls back to exact f32 rows", () => {
  const m = quantizeInt(DATA, ROWS, COLS, { bits: 4, group: 48, symmetric: true });
  const p = packMatrix(m, 1 << 20);
  assert.match(p.fallback ?? "", /group size 48/);
  assert.equal(p.layout.element, "f32");
  decodeAll(m).forEach((row, r) => assert.deepEqual(decodePackedRow(p, r), row));
});

Deno.test("formats without a WGSL decoder fall back to exact f32 rows and name themselves", () => {
  const hqq = encodeMatrix(affineCodec(4, 32), ROWS, COLS, DATA);
  const q4k = encodeMatrix(rowCodecs.get("q4_k"), ROWS, COLS, DATA);
  for (
    const [m, format, why] of [
      [hqq, "hqq-int4-g32", /format "affine" has no WGSL decoder/],
      [q4k, "q4_k", /no WGSL decoder for codec "q4_k"/],
    ] as const
  ) {
    const p = packMatrix(m, 1 << 20);
    assert.equal(p.fallbackFormat, format);
    assert.match(p.fallback ?? "", why);
    assert.equal(p.layout.element, "f32");
    decodeAll(m).forEach((row, r) => assert.deepEqual(decodePackedRow(p, r), row));
  }
  assert.equal(
    packMatrix(quantizeInt(DATA, ROWS, COLS, { bits: 4, group: 32, symmetric: true }), 1 << 20)
      .fallbackFormat,
    undefined,
  );
});

Deno.test("every registered codec repacks to its own decoder's values", () => {
  for (const name of rowCodecs.names()) {
    const m = encodeMatrix(rowCodecs.get(name), ROWS, COLS, DATA);
    const p = packMatrix(m, 2048);
    decodeAll(m).forEach((row, r) => {
      const got = decodePackedRow(p, r);
      let max = 0;
      for (const v of row) max = Math.max(max, Math.abs(v));
      // Exact but for the rounding of a block scale divided by a per-tensor scale (NVFP4).
      row.forEach((v, i) => assert.ok(Math.abs(got[i]! - v) <= 2 ** -20 * max, `${name} ${r}`));
    });
  }
});

Deno.test("packedShape splits rows so every buffer fits the binding", () => {
  const m = dense(1000, 300, new Float32Array(300_000));
  const p = packMatrix(m, 64 * 1024);
  const shape = packedShape(1000, 300, p.layout, 64 * 1024);
  assert.deepEqual(
    shape.parts.map((s) => s.rows),
    p.parts.map((s) => s.rows),
  );
  for (const part of shape.parts) assert.ok(part.codeBytes <= 64 * 1024);
  assert.equal(shape.parts.reduce((n, s) => n + s.rows, 0), 1000);
});
