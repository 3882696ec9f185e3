import assert from "node:assert/strict";
import {
  bf16ToF32,
  e8m0ToF32Half,
  f16ToF32,
  f32ToF16,
  nearestInt,
  roundHalfAway,
} from "./numeric.ts";

Deno.test("f16ToF32 decodes IEEE 754 binary16 reference patterns", () => {
  // Values from the IEEE 754-2008 binary16 definition (bias 15, 10-bit fraction).
  const cases: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x7bff, 65504],
    [0x0400, 2 ** -14],
    [0x03ff, 1023 * 2 ** -24],
    [0x0001, 2 ** -24],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  for (const [bits, value] of cases) assert.equal(f16ToF32(bits), value, `0x${bits.toString(16)}`);
  assert.ok(Object.is(f16ToF32(0x8000), -0));
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
});

Deno.test("f32ToF16 rounds to nearest even, overflows to infinity, keeps subnormals", () => {
  assert.equal(f32ToF16(1), 0x3c00);
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00, "tie rounds to the even significand");
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02, "tie rounds to the even significand");
  assert.equal(f32ToF16(1 + 2 ** -11 + 2 ** -20), 0x3c01, "above the tie rounds up");
  assert.equal(f32ToF16(65504), 0x7bff);
  assert.equal(f32ToF16(65519), 0x7bff);
  assert.equal(f32ToF16(65520), 0x7c00, "the midpoint to 2^16 rounds to infinity");
  assert.equal(f32ToF16(2 ** -25), 0x0000, "half the smallest subnormal ties to zero");
  assert.equal(f32ToF16(3 * 2 ** -25), 0x0002);
  assert.equal(f32ToF16(-0), 0x8000);
  assert.equal(f32ToF16(-1.5), 0xbe00);
});

Deno.test("f16ToF32 agrees with the binary16 definition on every pattern", () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const e = (bits >> 10) & 31;
    const m = bits & 1023;
    if (e === 31) {
      assert.ok(m ? Number.isNaN(f16ToF32(bits)) : f16ToF32(bits) === sign * Infinity);
    } else {
      const value = sign * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
      assert.ok(Object.is(f16ToF32(bits), value), `0x${bits.toString(16)}`);
    }
  }
});

Deno.test("f16 round trip is the identity on every finite half", () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    if ((bits & 0x7c00) === 0x7c00) continue; // infinities and NaNs
    assert.equal(f32ToF16(f16ToF32(bits)), bits);
  }
});

Deno.test("bf16ToF32 takes the top 16 bits of a float32", () => {
  assert.equal(bf16ToF32(0x3f80), 1);
  assert.equal(bf16ToF32(0x4049), 3.140625);
  assert.equal(bf16ToF32(0xc2f7), -123.5);
  assert.equal(bf16ToF32(0x7f80), Infinity);
});

Deno.test("nearestInt matches ggml's float trick (x + 1.5·2^23, ties to even)", () => {
  const ties: [number, number][] = [[0.5, 0], [1.5, 2], [2.5, 2], [-1.5, -2], [-2.5, -2], [
    3.49,
    3,
  ]];
  for (const [x, want] of ties) {
    assert.equal(nearestInt(x), want, `nearestInt(${x})`);
  }
  // ggml computes fval + 12582912.f in float32 and reads the integer back from the bits.
  const trick = (x: number) => Math.fround(x + 12582912) - 12582912;
  let seed = 1;
  for (let i = 0; i < 20000; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const x = Math.fround((seed / 2147483648 - 0.5) * 2 ** ((i % 40) - 18));
    assert.equal(nearestInt(x), trick(x), `x = ${x}`);
  }
});

Deno.test("roundHalfAway is C roundf (halfway cases away from zero)", () => {
  assert.equal(roundHalfAway(0.5), 1);
  assert.equal(roundHalfAway(-0.5), -1);
  assert.equal(roundHalfAway(2.5), 3);
  assert.equal(roundHalfAway(-2.5), -3);
  assert.equal(roundHalfAway(2.4999998), 2);
  assert.equal(roundHalfAway(-126.6), -127);
});

Deno.test("e8m0ToF32Half is half the OCP MX E8M0 scale 2^(e-127)", () => {
  assert.equal(e8m0ToF32Half(127), 0.5);
  assert.equal(e8m0ToF32Half(128), 1);
  assert.equal(e8m0ToF32Half(0), 2 ** -128);
  assert.equal(e8m0ToF32Half(1), 2 ** -127);
  assert.equal(e8m0ToF32Half(254), 2 ** 126);
  // ggml builds the float from bits: 0x00200000 << e for e < 2, else (e - 1) << 23.
  const view = new DataView(new ArrayBuffer(4));
  for (let e = 0; e < 255; e++) {
    view.setUint32(0, e < 2 ? 0x00200000 << e : (e - 1) << 23);
    assert.equal(e8m0ToF32Half(e), view.getFloat32(0));
  }
});
