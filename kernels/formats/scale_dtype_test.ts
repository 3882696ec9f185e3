import assert from "node:assert/strict";
import {
  isScaleDtype,
  readScale,
  roundScale,
  SCALE_DTYPE_BITS,
  writeScale,
} from "./scale_dtype.ts";

// 0.1 in each type and its bit pattern, as numpy/ml_dtypes and torch print them:
// float16(0.1) = 0.0999755859375 (0x2E66), bfloat16(0.1) = 0.10009765625 (0x3DCD),
// float32(0.1) = 0.100000001490116… (0x3DCCCCCD).
Deno.test("scale dtypes: 0.1 rounds and stores as numpy and torch do", () => {
  const cases = [
    ["f16", 0.0999755859375, [0x66, 0x2e]],
    ["bf16", 0.10009765625, [0xcd, 0x3d]],
    ["f32", 0.10000000149011612, [0xcd, 0xcc, 0xcc, 0x3d]],
  ] as const;
  for (const [dtype, value, bytes] of cases) {
    assert.equal(roundScale(0.1, dtype), value);
    const out = new Uint8Array(SCALE_DTYPE_BITS[dtype] / 8 + 1);
    writeScale(out, 1, value, dtype);
    assert.deepEqual([...out.subarray(1)], bytes);
    assert.equal(readScale(out, 1, dtype), value);
  }
});

Deno.test("scale dtypes: ties to even, overflow to infinity, names checked", () => {
  // 1 + 2^-8 lies halfway between the bf16 neighbours 1 and 1 + 2^-7: the even one is 1.
  assert.equal(roundScale(1 + 2 ** -8, "bf16"), 1);
  assert.equal(roundScale(1 + 3 * 2 ** -8, "bf16"), 1 + 2 ** -6);
  assert.equal(roundScale(65520, "f16"), Infinity);
  assert.deepEqual(["f16", "bf16", "f32", "f8", undefined].map(isScaleDtype), [
    true,
    true,
    true,
    false,
    false,
  ]);
});
