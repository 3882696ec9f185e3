import assert from "node:assert/strict";
import type { CodedMatrix } from "../../core/coded.ts";
import { dense } from "../../core/model.ts";
import { ggmlActivations, ggmlVecDot } from "./ggml_activations.ts";

function coded(codec: string, cols: number): CodedMatrix {
  return {
    kind: "coded",
    codec,
    rows: 1,
    cols,
    rowBytes: 0,
    data: new Uint8Array(0),
    tensorScale: 1,
  } as unknown as CodedMatrix;
}

function seeded(n: number, seed = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * 6;
  });
}

Deno.test("ggml activations: each weight type's vec_dot_type, F32 untouched", () => {
  assert.deepEqual(
    ["q4_0", "q5_1", "q4_k", "q6_k", "f16", "bf16", "iq4_nl"].map((c) => ggmlVecDot(coded(c, 256))),
    ["q8_0", "q8_1", "q8_K", "q8_K", "f16", "bf16", "q8_0"],
  );
  const x = seeded(64);
  assert.equal(ggmlActivations(x, dense(1, 64, new Float32Array(64))), x);
  // A row that is not whole blocks stays in float, as llama.cpp keeps such tensors F32.
  const x48 = seeded(48);
  assert.equal(ggmlActivations(x48, coded("q8_0", 48)), x48);
});

Deno.test("ggml activations: q8_0 blocks of 32 are codes times an f16 scale", () => {
  const x = seeded(64);
  x[5] = 0.5; // ties round to even on the AVX path
  const y = ggmlActivations(x, coded("q4_0", 64));
  for (let b = 0; b < 64; b += 32) {
    let amax = 0;
    for (let i = b; i < b + 32; i++) amax = Math.max(amax, Math.abs(x[i]!));
    const d = Math.f16round(Math.fround(amax / 127));
    for (let i = b; i < b + 32; i++) {
      const q = y[i]! / d;
      assert.ok(Number.isInteger(Math.round(q * 1e6) / 1e6), `code ${q}`);
      assert.ok(Math.abs(q) <= 127);
      assert.ok(Math.abs(y[i]! - x[i]!) <= d * 0.51 + Math.abs(x[i]!) * 1e-3, `${x[i]} ${y[i]}`);
    }
  }
  assert.deepEqual(ggmlActivations(new Float32Array(32), coded("q8_0", 32)), new Float32Array(32));
});

Deno.test("ggml activations: q8_K blocks of 256 scale by the signed largest value", () => {
  const x = seeded(256, 7);
  x[3] = -4; // the largest magnitude: its code is ∓127 exactly (iscale = −127/max)
  const y = ggmlActivations(x, coded("q4_k", 256));
  const d = Math.fround(1 / Math.fround(-127 / -4));
  assert.ok(Math.abs(y[3]! + 4) < 1e-6, `${y[3]}`);
  for (let i = 0; i < 256; i++) assert.ok(Math.abs(y[i]! - x[i]!) <= d * 0.51);
  // F16 weights: activations rounded to f16.
  const h = ggmlActivations(Float32Array.of(0.1, 1 / 3), coded("f16", 2));
  assert.deepEqual([...h], [Math.f16round(0.1), Math.f16round(1 / 3)]);
});
