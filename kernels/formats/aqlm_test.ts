import assert from "node:assert/strict";
import { dense } from "../../core/model.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import {
  aqlmMatrixBits,
  type AqlmScheme,
  AqlmShapeError,
  buildAqlmMatrix,
  decodeAqlmRow,
  unpackAqlmCodes,
} from "./aqlm.ts";
import { AqlmRowCodecError } from "./aqlm_format.ts";
import { formatOf } from "./formats.ts";
import { decodeRow, matrixBits, sideTensor } from "./matrix.ts";
import { elementFormats } from "./registry.ts";

/** `W[r, j·g+i] = s_r · Σ_m C[m, code, i]`, written out for the test. */
function expected(
  scheme: AqlmScheme,
  cols: number,
  codes: Int32Array,
  codebooks: number[],
  scales: number[],
): Float32Array {
  const { codebooks: M, bits, groupSize: g } = scheme;
  const groups = Math.ceil(cols / g);
  const out = new Float32Array(scales.length * cols);
  for (let r = 0; r < scales.length; r++) {
    for (let c = 0; c < cols; c++) {
      const j = Math.floor(c / g);
      let v = 0;
      for (let m = 0; m < M; m++) {
        v += codebooks[(m * 2 ** bits + codes[(r * groups + j) * M + m]!) * g + c % g]!;
      }
      out[r * cols + c] = v * scales[r]!;
    }
  }
  return out;
}

for (
  const [scheme, cols] of [
    [{ codebooks: 2, bits: 3, groupSize: 2 }, 6],
    [{ codebooks: 1, bits: 8, groupSize: 4 }, 10],
    [{ codebooks: 1, bits: 16, groupSize: 8 }, 16],
    [{ codebooks: 3, bits: 5, groupSize: 4 }, 12],
  ] as [AqlmScheme, number][]
) {
  Deno.test(`aqlm: codes of ${scheme.codebooks}x${scheme.bits}-g${scheme.groupSize} pack, unpack and decode (${cols} columns)`, () => {
    const rows = 3;
    const size = 2 ** scheme.bits;
    const groups = Math.ceil(cols / scheme.groupSize);
    // Codebook values and scales exact in halves, codes spread over the whole range.
    const codebooks = Array.from(
      { length: scheme.codebooks * size * scheme.groupSize },
      (_, i) => ((i * 37) % 64 - 32) / 64,
    );
    const scales = [0.5, 1.25, -2];
    const codes = Int32Array.from(
      { length: rows * groups * scheme.codebooks },
      (_, i) => (i * 7919 + 3) % size,
    );
    codes[0] = size - 1;
    const m = buildAqlmMatrix({ scheme, rows, cols, codes, codebooks, scales });
    assert.equal(formatOf(m).name, "aqlm");
    const unpacked = new Int32Array(groups * scheme.codebooks);
    const want = expected(scheme, cols, codes, codebooks, scales);
    const row = new Float32Array(cols);
    for (let r = 0; r < rows; r++) {
      unpackAqlmCodes(m, r, unpacked);
      assert.deepEqual(unpacked, codes.subarray(r * unpacked.length, (r + 1) * unpacked.length));
      decodeRow(m, r, row);
      for (let c = 0; c < cols; c++) {
        assert.ok(Math.abs(row[c]! - want[r * cols + c]!) < 1e-6, `row ${r} column ${c}`);
      }
    }
    assert.equal(sideTensor(m, "codebooks").length, codebooks.length);
    const codeBits = rows * Math.ceil(groups * scheme.codebooks * scheme.bits / 8) * 8;
    assert.equal(matrixBits(m), codeBits + codebooks.length * 16 + rows * 16);
  });
}

Deno.test("aqlm: codes out of range and wrong sizes are errors naming them", () => {
  const scheme = { codebooks: 1, bits: 2, groupSize: 2 };
  const parts = { scheme, rows: 1, cols: 4, codebooks: new Array(8).fill(0), scales: [1] };
  assert.throws(
    () => buildAqlmMatrix({ ...parts, codes: Int32Array.of(0, 4) }),
    (e) => e instanceof AqlmShapeError && /code 4 is outside \[0, 4\)/.test(e.message),
  );
  assert.throws(
    () => buildAqlmMatrix({ ...parts, codes: Int32Array.of(0) }),
    (e) => e instanceof AqlmShapeError && /needs 2 codes/.test(e.message),
  );
});

Deno.test("aqlm: bits per weight count codes, amortised codebooks and row scales", () => {
  const settings = { group: 0, symmetric: true, options: {} };
  // 1x16 at groups of 8 on a 4096 × 4096 matrix: 2 bits of codes, 2^16·8 half codebook values.
  const bits = elementFormats.get("aqlm_1x16").bitsPerWeight(settings, 4096, 4096);
  assert.equal(bits, 2 + (2 ** 16 * 8 * 16 + 4096 * 16) / 4096 ** 2);
  assert.equal(
    aqlmMatrixBits({ codebooks: 2, bits: 8, groupSize: 8 }, 64, 64),
    64 * 16 * 8 +
      2 * 256 * 8 * 16 + 64 * 16,
  );
  const g4 = elementFormats.get("aqlm_2x4_g4").bitsPerWeight(settings, 64, 64);
  assert.equal(g4, 2 + (2 * 16 * 4 * 16 + 64 * 16) / 4096);
});

Deno.test("aqlm: settings that contradict the format are reasons; rows alone do not encode", () => {
  const format = elementFormats.get("aqlm_2x8");
  const base = { group: 0, symmetric: true, options: {} };
  assert.equal(format.unsupported(base), undefined);
  assert.match(format.unsupported({ ...base, group: -1 })!, /per output channel/);
  assert.match(format.unsupported({ ...base, symmetric: false })!, /no zero point/);
  assert.match(format.unsupported({ ...base, options: { scale_dtype: "f32" } })!, /f16/);
  if (format.kind !== "coded") throw new Error("aqlm_2x8 is coded");
  const codec = format.rowCodec({ ...base, group: 4 });
  assert.equal(codec.name, "aqlm-2x8-g4");
  assert.match(
    elementFormats.get("aqlm_1x4_g2").unsupported({ ...base, group: 8 })!,
    /groups of 2/,
  );
  assert.throws(
    () => codec.encodeRow(new Float32Array(4), new Uint8Array(2), 1),
    AqlmRowCodecError,
  );
});

Deno.test("aqlm: the element format's own quantization is the k-means initialisation", () => {
  const [rows, cols] = [16, 36];
  const data = pseudoRandom(rows * cols, 3);
  const format = elementFormats.get("aqlm_2x4_g4");
  if (format.kind !== "coded") throw new Error("aqlm_2x4_g4 is coded");
  const settings = { group: 0, symmetric: true, options: {} };
  const m = format.quantize(settings, dense(rows, cols, data));
  assert.ok(m.kind === "coded" && m.codec === "aqlm-2x4-g4");
  const row = new Float32Array(cols);
  let err = 0;
  let norm = 0;
  for (let r = 0; r < rows; r++) {
    decodeRow(m, r, row);
    for (let c = 0; c < cols; c++) {
      err += (row[c]! - data[r * cols + c]!) ** 2;
      norm += data[r * cols + c]! ** 2;
    }
  }
  // Two 16-word codebooks of 4 dimensions over 144 points: well under the signal, not lossless.
  assert.ok(err / norm < 0.5 && err / norm > 1e-4, `relative error ${err / norm}`);
  decodeAqlmRow(m, 0, row);
  assert.equal(matrixBits(m) / (rows * cols), format.bitsPerWeight(settings, rows, cols));
});
