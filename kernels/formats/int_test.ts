import assert from "node:assert/strict";
import {
  dequantizeInt,
  intBitsPerWeight,
  intMatrixBits,
  PER_TENSOR,
  quantizeInt,
  roundHalfEven,
} from "./int.ts";

// Expected values below are worked by hand from the GPTQ reference quantizer's formulas
// (scale = 2·amax/maxq with zero (maxq+1)/2 when symmetric; (max−min)/maxq and round(−min/scale)
// otherwise; codes clamp(round(w/scale) + zero, 0, maxq)), with scales rounded to float16.

Deno.test("int: symmetric int4 per channel matches the GPTQ formulas", () => {
  const q = quantizeInt(new Float32Array([1, -2, 3, 4]), 1, 4, {
    bits: 4,
    group: 0,
    symmetric: true,
  });
  // amax 4 → scale 8/15 = 0.5333… → f16 0.533203125; zero 8.
  assert.equal(q.scales[0], 0.533203125);
  assert.deepEqual([...q.codes], [10, 4, 14, 15]); // 4/0.5332 = 7.50 → 8 + 8 clamps to 15
  assert.deepEqual([...dequantizeInt(q)], [2, -4, 6, 7].map((k) => Math.fround(k * 0.533203125)));
});

Deno.test("int: asymmetric int2 groups with a short last group", () => {
  const data = new Float32Array([0, 1, 2, 3, -1, 0.5, 10]);
  const q = quantizeInt(data, 1, 7, { bits: 2, group: 4, symmetric: false });
  assert.equal(q.groupSize, 4);
  assert.equal(q.scales.length, 2);
  // group 0: range [0, 3] → scale 1, zero 0 → codes 0 1 2 3.
  assert.equal(q.scales[0], 1);
  assert.equal(q.zeros![0], 0);
  // group 1: range [−1, 10] → scale 11/3 = 3.666… → f16 3.666015625, zero round(1/3.666) = 0.
  assert.equal(q.scales[1], 3.666015625);
  assert.equal(q.zeros![1], 0);
  assert.deepEqual([...q.codes], [0, 1, 2, 3, 0, 0, 3]);
});

Deno.test("int: all-zero groups decode to exact zeros; int8 error is within half a step", () => {
  const zeros = quantizeInt(new Float32Array(8), 2, 4, { bits: 8, group: 0, symmetric: true });
  assert.deepEqual([...dequantizeInt(zeros)], new Array(8).fill(0));
  const data = Float32Array.from({ length: 256 }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 5)));
  for (const symmetric of [true, false]) {
    const q = quantizeInt(data, 4, 64, { bits: 8, group: 32, symmetric });
    const back = dequantizeInt(q);
    for (let i = 0; i < data.length; i++) {
      const scale = q.scales[Math.floor(i / 32)]!;
      // Rounding costs at most half a step; a code clamped at 0 or 255 (the symmetric grid stops
      // one step short of +amax) at most one step.
      const clamped = q.codes[i] === 0 || q.codes[i] === 255;
      assert.ok(Math.abs(back[i]! - data[i]!) <= (clamped ? scale : scale / 2) * (1 + 1e-6));
    }
  }
});

Deno.test("int: bits per weight counts 16-bit scales and zero points", () => {
  assert.equal(intBitsPerWeight({ bits: 4, group: 128, symmetric: true }, 4096), 4.125);
  assert.equal(intBitsPerWeight({ bits: 4, group: 128, symmetric: false }, 4096), 4 + 20 / 128);
  assert.equal(intBitsPerWeight({ bits: 8, group: 0, symmetric: true }, 64), 8 + 16 / 64);
  // 172 columns in groups of 32: 6 groups, the last one short.
  assert.equal(intBitsPerWeight({ bits: 3, group: 32, symmetric: true }, 172), 3 + (6 * 16) / 172);
});

Deno.test("int: round half to even as torch.round", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6].map(roundHalfEven), [
    0,
    2,
    2,
    -0,
    -2,
    2,
    -3,
  ]);
});

Deno.test("int: widths outside 2..8 are rejected with the value quoted", () => {
  assert.throws(
    () => quantizeInt(new Float32Array(4), 1, 4, { bits: 9, group: 0, symmetric: true }),
    /Integer width 9 is not supported/,
  );
});

Deno.test("int: scales round to the scale dtype (bf16, f32) and bits count it", () => {
  const data = new Float32Array([1, -2, 3, 4]);
  // 2·4/15 = 0.5333…: bf16 keeps 8 significant bits → 137/256 = 0.53515625; f32 → fround(8/15).
  for (
    const [scaleDtype, scale, bits] of [["bf16", 0.53515625, 16], [
      "f32",
      Math.fround(8 / 15),
      32,
    ]] as const
  ) {
    const q = quantizeInt(data, 1, 4, { bits: 4, group: 0, symmetric: true, scaleDtype });
    assert.deepEqual([...q.scales], [scale]);
    assert.deepEqual([...dequantizeInt(q)], [2, -4, 6, 7].map((k) => Math.fround(k * scale)));
    assert.equal(intMatrixBits(q), 4 * 4 + bits);
  }
});

Deno.test("int: per tensor (group -1) shares one scale and zero point across rows", () => {
  const data = new Float32Array([0.5, -1, 0.25, 0, 10, -2, 0, 1]);
  const q = quantizeInt(data, 2, 4, { bits: 8, group: PER_TENSOR, symmetric: true });
  const scale = Math.f16round(20 / 255);
  assert.deepEqual([...q.scales], [scale, scale]);
  assert.equal(q.perTensor, true);
  // One f16 scale for 8 weights.
  assert.equal(intMatrixBits(q), 8 * 8 + 16);
  assert.equal(intBitsPerWeight({ bits: 8, group: -1, symmetric: true }, 4, 2), 8 + 16 / 8);
  const back = dequantizeInt(q);
  // Half a step, or a whole one for 10, which the symmetric grid (127 steps up) clamps.
  for (let i = 0; i < data.length; i++) {
    assert.ok(Math.abs(back[i]! - data[i]!) <= (data[i] === 10 ? scale : scale / 2));
  }
  const asym = quantizeInt(data, 2, 4, { bits: 4, group: PER_TENSOR, symmetric: false });
  // Range [-2, 10]: scale f16(12/15) = 0.7998046875, zero round(2 / 0.7998046875 = 2.5006) = 3.
  assert.deepEqual([...asym.scales], [0.7998046875, 0.7998046875]);
  assert.deepEqual([...asym.zeros!], [3, 3]);
  assert.throws(
    () => quantizeInt(data, 2, 4, { bits: 4, group: -2, symmetric: true }),
    /Group size -2 must be a non-negative integer, or -1 for per tensor/,
  );
});

Deno.test("int: the restricted symmetric range scales by amax / (2^(b−1) − 1)", () => {
  const data = new Float32Array([7, -7, 3.5, -0.4]);
  const full = quantizeInt(data, 1, 4, { bits: 4, group: 0, symmetric: true });
  const q = quantizeInt(data, 1, 4, { bits: 4, group: 0, symmetric: true, restricted: true });
  // Full range: 14/15 → f16 0.93310546875; restricted: 7/7 = 1, codes −7…7 around zero 8.
  assert.equal(full.scales[0], 0.93310546875);
  assert.equal(q.scales[0], 1);
  assert.deepEqual([...q.codes], [15, 1, 12, 8]); // 3.5 ties to even 4; −0.4 rounds to 0
  assert.deepEqual([...dequantizeInt(q)], [7, -7, 4, 0]);
  // int8: amax 127 → scale 1, and −127 is the lowest code offset (code 1).
  const q8 = quantizeInt(new Float32Array([-127, 127, 0.5]), 1, 3, {
    bits: 8,
    group: 0,
    symmetric: true,
    restricted: true,
  });
  assert.deepEqual([...q8.codes], [1, 255, 128]);
  assert.throws(
    () => quantizeInt(data, 1, 4, { bits: 4, group: 0, symmetric: false, restricted: true }),
    /restricted range is symmetric/,
  );
});
