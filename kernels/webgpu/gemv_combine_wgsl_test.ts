/**
 * The fused combine's WGSL pieces: shapes split decode attention cannot produce are refused, and
 * the float GEMV takes the combine input exactly with a shape. Its values against the CPU's (one,
 * two and three blocks of partial results) are in harness/backend_profile_test.ts.
 */
import assert from "node:assert/strict";
import {
  combineDeclarationsWgsl,
  combinePrologueWgsl,
  GemvCombineError,
  validateCombineShape,
} from "./gemv_combine_wgsl.ts";
import { gemvShader } from "./matmul_wgsl.ts";
import { packDense } from "./pack.ts";

const ok = { nHeads: 4, headDim: 16, nSplits: 3, splitKeys: 64, blockFloats: 18 };

Deno.test("gemv combine: shapes split decode attention cannot produce are refused", () => {
  validateCombineShape({ ...ok, nHeads: 32, headDim: 64, blockFloats: 66 });
  for (
    const bad of [
      { ...ok, headDim: 6, blockFloats: 8 },
      { ...ok, headDim: 260, blockFloats: 262 },
      { ...ok, nHeads: 0 },
      { ...ok, nHeads: 257 },
      { ...ok, nSplits: 0 },
      { ...ok, blockFloats: 16 },
    ]
  ) {
    assert.throws(() => validateCombineShape(bad), GemvCombineError);
    assert.throws(() => combineDeclarationsWgsl(bad), GemvCombineError);
    assert.throws(() => combinePrologueWgsl(bad, 256), GemvCombineError);
  }
});

Deno.test("gemv combine: the float GEMV combines with a shape, and only with one", () => {
  const layout = packDense(8, 64, new Float32Array(8 * 64), 1 << 20).layout;
  const shape = ok;
  const code = gemvShader(layout, "combine", shape);
  assert.ok(code.includes("fn cx4") && code.includes("hm[h] = vec2<f32>(mx, total)"));
  assert.throws(() => gemvShader(layout, "combine"), GemvCombineError);
  assert.throws(() => gemvShader(layout, "plain", shape), GemvCombineError);
});
