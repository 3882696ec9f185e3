import assert from "node:assert/strict";
import {
  MIN_SCALE,
  PER_CHANNEL,
  PER_TENSOR,
  scaledMinifloatCodec,
  ScaledMinifloatConfigError,
  scaledMinifloatName,
} from "./scaled_minifloat.ts";
import { FP4_E2M1, FP8_E4M3, FP8_E5M2, UnrepresentableValueError } from "./minifloat.ts";
import { encodeMatrix } from "./row_codecs.ts";
import { matrixBits } from "./matrix.ts";

// Expected codes below are worked out by hand from the OCP OFP8 / MX v1.0 encodings: E4M3 has
// bias 7 (16 = 1.0·2^4 → exponent field 11 → 0x58; 448 → 0x7E; 2^-9 is the smallest subnormal,
// 0x01); E2M1 codes 0…7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6. Scales are IEEE float32 little-endian.

Deno.test("fp8 e4m3 per channel: scale amax/448, codes rounded to nearest even", () => {
  const codec = scaledMinifloatCodec({ element: FP8_E4M3, group: PER_CHANNEL, scaleDtype: "f32" });
  assert.equal(codec.name, "fp8_e4m3-ch-f32");
  // amax 28 → scale 28/448 = 2^-4; 1.0625/2^-4 = 17 lies halfway between 16 and 18 → 16.
  const row = new Float32Array([28, -28, 1, 2 ** -13, 1.0625, 0]);
  const out = new Uint8Array(codec.rowBytes(row.length));
  codec.encodeRow(row, out, 1);
  assert.deepEqual([...out], [0x00, 0x00, 0x80, 0x3d, 0x7e, 0xfe, 0x58, 0x01, 0x58, 0x00]);
  const back = new Float32Array(row.length);
  codec.decodeRow(out, back, 1);
  assert.deepEqual([...back], [28, -28, 1, 2 ** -13, 1, 0]);
});

Deno.test("fp4 e2m1 in groups of 8: absmax/6, low nibble first, zero groups get scale eps", () => {
  const codec = scaledMinifloatCodec({ element: FP4_E2M1, group: 8, scaleDtype: "f32" });
  assert.equal(codec.name, "fp4_e2m1-g8-f32");
  // Group 1: amax 3 → scale 0.5; scaled values 6, -6, 0.5, 1.5, 2.5, 3.5, 5, -1; the ties 2.5,
  // 3.5 and 5 go to the even codes 2 (0x4), 4 (0x6) and 4 (0x6). Group 2 is all zeros.
  const row = new Float32Array([3, -3, 0.25, 0.75, 1.25, 1.75, 2.5, -0.5, 0, 0, 0, 0, 0, 0, 0, 0]);
  const out = new Uint8Array(codec.rowBytes(16));
  assert.equal(out.length, 2 * 4 + 8);
  codec.encodeRow(row, out, 1);
  assert.deepEqual(
    [...out],
    [0, 0, 0, 0x3f, 0, 0, 0, 0x34, 0xf7, 0x31, 0x64, 0xa6, 0, 0, 0, 0],
  );
  const back = new Float32Array(16);
  codec.decodeRow(out, back, 1);
  assert.deepEqual([...back.subarray(0, 8)], [3, -3, 0.25, 0.75, 1, 2, 2, -0.5]);
  assert.ok(back.subarray(8).every((v) => v === 0));
  assert.equal(MIN_SCALE, 2 ** -23);
});

Deno.test("scales round to the scale dtype and the codes use the rounded scale", () => {
  const codec = scaledMinifloatCodec({ element: FP8_E4M3, group: 4, scaleDtype: "bf16" });
  // amax 44.8 → 0.1 as float32 → bf16 0.10009765625 (0x3DCD); 44.8 / that = 447.56… → 448.
  const row = new Float32Array([44.8, 0, 0, 0]);
  const out = new Uint8Array(codec.rowBytes(4));
  codec.encodeRow(row, out, 1);
  assert.deepEqual([...out], [0xcd, 0x3d, 0x7e, 0, 0, 0]);
  const back = new Float32Array(4);
  codec.decodeRow(out, back, 1);
  assert.equal(back[0], Math.fround(448 * 0.10009765625));
});

Deno.test("per tensor: one f32 scale for the matrix, rows hold only codes", () => {
  const codec = scaledMinifloatCodec({ element: FP8_E5M2, group: PER_TENSOR, scaleDtype: "f32" });
  assert.equal(codec.name, "fp8_e5m2-pt");
  // amax 7 → scale 7 / 57344 = 2^-13 (57344 = 7 · 2^13).
  const data = new Float32Array([7, 1, -0.5, 0, 3.5, 0, 0, 0]);
  assert.equal(codec.tensorScale(data), 2 ** -13);
  const m = encodeMatrix(codec, 2, 4, data);
  assert.equal(m.rowBytes, 4);
  assert.equal(m.tensorScale, 2 ** -13);
  // 7·2^13 = 57344 → 0x7B; 2^13 → exponent 28 → 0x70; -2^12 → 0xEC; 3.5·2^13 = 28672 → 0x77.
  assert.deepEqual([...m.data], [0x7b, 0x70, 0xec, 0x00, 0x77, 0, 0, 0]);
  assert.equal(matrixBits(m), 8 * 8 + 32);
  assert.throws(
    () => scaledMinifloatCodec({ element: FP8_E5M2, group: PER_TENSOR, scaleDtype: "f16" }),
    ScaledMinifloatConfigError,
  );
});

Deno.test("non-finite weights and unusable groups are refused with the value quoted", () => {
  const codec = scaledMinifloatCodec({ element: FP4_E2M1, group: PER_CHANNEL, scaleDtype: "f16" });
  assert.throws(
    () => codec.encodeRow(new Float32Array([1, NaN]), new Uint8Array(codec.rowBytes(2)), 1),
    (e) => e instanceof UnrepresentableValueError && /NaN at index 1/.test(e.message),
  );
  assert.throws(
    () => scaledMinifloatCodec({ element: FP4_E2M1, group: -2, scaleDtype: "f16" }),
    /Group -2 must be/,
  );
  // A scale beyond f16's range cannot be stored.
  const big = new Float32Array([1e6, 0]);
  assert.throws(() => codec.encodeRow(big, new Uint8Array(codec.rowBytes(2)), 1), /overflows f16/);
  assert.equal(
    scaledMinifloatName({ element: FP8_E4M3, group: 128, scaleDtype: "f16" }),
    "fp8_e4m3-g128-f16",
  );
});
