import assert from "node:assert/strict";
import { encodeMatrix, ggufRowCodec, padRow, RowLengthError } from "./row_codecs.ts";
import { rowCodecs } from "./codecs.ts";
import { ggmlTypeByName } from "./gguf/blocks.ts";
import { decodeRow } from "./matrix.ts";

// Expected bytes are worked by hand from OCP MX v1.0 (shared exponent floor(log2 amax) − 2 for
// E2M1, stored + 127) and the NVFP4 recipe (block scale E4M3 of amax/6 · 448·6/amax(tensor));
// E2M1 codes 0…7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6; E4M3 448 is 0x7E and 56 is 0x66.

Deno.test("mxfp4 rows: E8M0 scales first, then codes; 40 columns pad to two blocks", () => {
  const codec = rowCodecs.get("mxfp4");
  const row = new Float32Array(40);
  row.set([6, 1, 0.5, -3]); // amax 6 → exponent 0 → 0x7F; codes 7, 2, 1, 0xD
  row.fill(0.375, 32); // amax 0.375 → exponent -4 → 0x7B; 0.375 · 16 = 6 → code 7
  const out = new Uint8Array(codec.rowBytes(40));
  assert.equal(out.length, 2 + 2 * 16);
  codec.encodeRow(row, out, 1);
  const expected = new Uint8Array(34);
  expected.set([0x7f, 0x7b, 0x27, 0xd1]);
  expected.set([0x77, 0x77, 0x77, 0x77], 2 + 16);
  assert.deepEqual(out, expected);
  const back = new Float32Array(40);
  codec.decodeRow(out, back, 1);
  assert.deepEqual(back, row);
});

Deno.test("nvfp4 rows: E4M3 block scales, then codes; the tensor scale comes from outside", () => {
  const codec = rowCodecs.get("nvfp4");
  const row = new Float32Array(20);
  row.set([6, 3]); // block amax 6 of tensor amax 6 → scale 448 (0x7E); codes 7, 5
  row.fill(0.75, 16); // amax 0.75 → 448 · 0.75 / 6 = 56 (0x66); 0.75 · 8 = 6 → code 7
  const g = codec.tensorScale(row);
  assert.equal(g, 448);
  const out = new Uint8Array(codec.rowBytes(20));
  assert.equal(out.length, 2 + 16);
  codec.encodeRow(row, out, g);
  assert.deepEqual([...out], [0x7e, 0x66, 0x57, 0, 0, 0, 0, 0, 0, 0, 0x77, 0x77, 0, 0, 0, 0, 0, 0]);
  const back = new Float32Array(20);
  codec.decodeRow(out, back, g);
  assert.deepEqual(back, row);
});

Deno.test("ggml rows are the type's blocks; short rows pad with zeros", () => {
  const codec = rowCodecs.get("q8_0");
  const row = Float32Array.from({ length: 40 }, (_, i) => i - 20);
  const out = new Uint8Array(codec.rowBytes(40));
  codec.encodeRow(row, out, 1);
  assert.deepEqual(out, ggmlTypeByName("Q8_0").encode!(padRow(row, 32)));
  assert.equal(padRow(row, 8), row);
  assert.throws(() => ggufRowCodec("q8_k", ggmlTypeByName("Q8_K")), /Q8_K has no encoder/);
});

Deno.test("encodeMatrix: rows encode independently and decode through the matrix interface", () => {
  const rows = 3;
  const cols = 64;
  const data = Float32Array.from({ length: rows * cols }, (_, i) => Math.cos(i) * (1 + (i >> 6)));
  const m = encodeMatrix(rowCodecs.get("q4_k"), rows, cols, data);
  assert.equal(m.data.length, rows * 144);
  const alone = encodeMatrix(rowCodecs.get("q4_k"), 1, cols, data.subarray(cols, 2 * cols));
  assert.deepEqual(m.data.subarray(144, 288), alone.data);
  const row = new Float32Array(cols);
  decodeRow(m, 1, row);
  const direct = new Float32Array(cols);
  rowCodecs.get("q4_k").decodeRow(alone.data, direct, 1);
  assert.deepEqual(row, direct);
  assert.throws(() => encodeMatrix(rowCodecs.get("q4_k"), 2, 64, data), /expected 2×64/);
  assert.throws(
    () => rowCodecs.get("q4_0").encodeRow(data.subarray(0, 64), new Uint8Array(35), 1),
    (e) => e instanceof RowLengthError && /takes 36 bytes, got a buffer of 35/.test(e.message),
  );
});
