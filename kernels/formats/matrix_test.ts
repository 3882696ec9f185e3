import assert from "node:assert/strict";
import {
  decodeRow,
  matrixBits,
  MissingSideTensorError,
  sideTensor,
  sideTensors,
  storageName,
} from "./matrix.ts";
import { quantizeInt } from "./int.ts";
import { rowCodecs } from "./codecs.ts";
import { encodeMatrix } from "./row_codecs.ts";
import { dense } from "../../core/model.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const DATA = pseudoRandom(2 * 64, 9);

Deno.test("matrix: an int matrix's scales and zero points are its side tensors", () => {
  const m = quantizeInt(DATA, 2, 64, { bits: 4, group: 32, symmetric: false });
  assert.deepEqual(Object.keys(sideTensors(m)), ["scales", "zeros"]);
  assert.equal(sideTensor(m, "scales"), m.scales);
  const symmetric = quantizeInt(DATA, 2, 64, { bits: 4, group: 32, symmetric: true });
  assert.deepEqual(Object.keys(sideTensors(symmetric)), ["scales"]);
  const gIdx = new Int32Array(64);
  assert.equal(sideTensor({ ...symmetric, sides: { g_idx: gIdx } }, "g_idx"), gIdx);
  assert.equal(storageName(m), "int4");
});

Deno.test("matrix: coded matrices carry the side tensors they are given; a missing one is named", () => {
  const m = encodeMatrix(rowCodecs.get("q8_0"), 2, 64, DATA);
  assert.deepEqual(sideTensors(m), {});
  const codebook = new Float32Array(256);
  assert.equal(sideTensor({ ...m, sides: { codebook } }, "codebook"), codebook);
  assert.throws(
    () => sideTensor(m, "g_idx"),
    (e: unknown) =>
      e instanceof MissingSideTensorError &&
      /q8_0 matrix has no side tensor "g_idx"/.test(e.message),
  );
  assert.deepEqual(sideTensors(dense(2, 64, DATA)), {});
  assert.equal(storageName(m), "q8_0");
});

Deno.test("matrix: rows decode and bits count through the matrix's format", () => {
  const m = encodeMatrix(rowCodecs.get("q8_0"), 2, 64, DATA);
  const row = new Float32Array(64);
  decodeRow(m, 1, row);
  const expected = new Float32Array(64);
  rowCodecs.get("q8_0").decodeRow(m.data.subarray(34 * 2), expected, 1);
  assert.deepEqual(row, expected);
  // Q8_0: 32 × 8 bits + an f16 scale per block of 32.
  assert.equal(matrixBits(m), 8.5 * 2 * 64);
  assert.equal(matrixBits(dense(2, 64, DATA)), 32 * 2 * 64);
});
