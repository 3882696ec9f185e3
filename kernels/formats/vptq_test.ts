import assert from "node:assert/strict";
import {
  buildVptq,
  decodeVptqRow,
  packIndices,
  parseVptqName,
  roundHalf,
  unpackIndex,
  vptqBitsPerWeight,
  VptqFormatError,
} from "./vptq.ts";
import { decodeRow, matrixBits } from "./matrix.ts";
import { elementFormats } from "./registry.ts";
import { dense } from "../../core/model.ts";

Deno.test("vptq: names, and indices packed LSB first at log2 k bits", () => {
  assert.deepEqual(parseVptqName("vptq-v8-k65536-256"), {
    vectorLen: 8,
    centroids: 65536,
    resCentroids: 256,
  });
  for (const bad of ["vptq-v8-k100-0", "vptq-v0-k16-0", "vptq-v8-k16-3", "v8-k16-0"]) {
    assert.throws(() => parseVptqName(bad), VptqFormatError, bad);
  }
  for (const bits of [4, 6, 8, 12, 16]) {
    const values = Array.from({ length: 37 }, (_, i) => (i * 2654435761) % (1 << bits));
    const packed = packIndices(values, bits);
    assert.equal(packed.length, Math.ceil(37 * bits / 8));
    assert.deepEqual(values.map((_, i) => unpackIndex(packed, i, bits)), values);
  }
  assert.deepEqual([...packIndices([1, 2, 3, 15], 4)], [0x21, 0xf3]);
});

Deno.test("vptq: a row decodes from its column vectors, residual, outliers, permutation and norm", () => {
  // 3 rows (vectors of 2: the second vector of a column has one padding lane), 4 columns:
  // stored column 0 an outlier, columns 1..3 coded; stored column j is matrix column perm[j].
  const [rows, cols] = [3, 4];
  const config = parseVptqName("vptq-v2-k4-2");
  const centroids = [0.5, -0.25, 1, 2, -1, 0, 0.125, 0.75];
  const res = [0.0625, -0.0625, 0.25, 0];
  const indices = [0, 3, 1, 2, 3, 0]; // (stored column q, vector g) at q · 2 + g
  const resIndices = [1, 0, 0, 1, 1, 1];
  const outliers = [0.1, 0.2, 0.3];
  const perm = [2, 0, 3, 1];
  const scale = [1, 2, 0.5, 4];
  const bias = [0, 0.5, -1, 0.25];
  const m = buildVptq({
    rows,
    cols,
    config,
    centroids,
    indices,
    resCentroids: res,
    resIndices,
    outlierCols: 1,
    outliers,
    perm,
    normScale: scale,
    normBias: bias,
  });
  for (let r = 0; r < rows; r++) {
    const expected = new Array<number>(cols);
    for (let j = 0; j < cols; j++) {
      let value = roundHalf(outliers[r]!);
      if (j > 0) {
        const at = (j - 1) * 2 + Math.floor(r / 2);
        value = centroids[indices[at]! * 2 + (r % 2)]! + res[resIndices[at]! * 2 + (r % 2)]!;
      }
      expected[perm[j]!] = Math.fround(value * scale[j]!) + bias[j]!;
    }
    const out = new Float32Array(cols);
    decodeVptqRow(m, r, out);
    assert.deepEqual([...out], expected.map(Math.fround), `row ${r}`);
    decodeRow(m, r, out);
    assert.deepEqual([...out], expected.map(Math.fround), `row ${r} through the registry`);
  }
  // Every byte counts: 8 + 4 centroid halves, 6 indices of 2 bits and 6 of 1 bit, 3 outlier
  // halves, 4 permutation entries of 16 bits, 4 + 4 norm halves.
  assert.equal(matrixBits(m), (12 * 2 + 2 + 1 + 3 * 2 + 4 * 2 + 8 * 2) * 8);
});

Deno.test("vptq: element formats count packed indices and half codebooks; rtn fits plain k-means", () => {
  const format = elementFormats.get("vptq-v4-k256-0");
  const settings = { group: 0, symmetric: true, options: {} };
  // 64 × 256: 16 · 256 vectors of 8-bit indices, 256 centroids of 4 halves.
  assert.equal(format.bitsPerWeight(settings, 64, 256), (4096 * 8 + 256 * 4 * 16) / (64 * 256));
  assert.equal(
    vptqBitsPerWeight(parseVptqName("vptq-v8-k65536-256"), 4096, 4096),
    (4096 * 512 * (16 + 8) + (65536 + 256) * 8 * 16) / 4096 ** 2,
  );
  assert.match(format.unsupported({ ...settings, group: 32 }) ?? "", /one codebook per matrix/);
  if (format.kind !== "coded") throw new Error("vptq formats are coded");
  // Columns of 8 rows from 3 patterns: 6 distinct vectors of 2, which 16 centroids cover.
  const [rows, cols] = [8, 48];
  const patterns = [[1, -1, 0.5, 0], [0.25, 0.25, -2, 1], [0, 0, 0, 0]];
  const data = new Float32Array(rows * cols);
  for (let c = 0; c < cols; c++) {
    for (let r = 0; r < rows; r++) data[r * cols + c] = patterns[(c + (r >> 2)) % 3]![r % 4]!;
  }
  const small = elementFormats.get("vptq-v2-k16-0");
  if (small.kind !== "coded") throw new Error("vptq formats are coded");
  const m = small.quantize(settings, dense(rows, cols, data));
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    decodeRow(m, r, row);
    row.forEach((v, c) => assert.equal(v, data[r * cols + c], `${r}, ${c}`));
  }
  assert.equal(matrixBits(m), small.bitsPerWeight(settings, rows, cols) * rows * cols);
});
