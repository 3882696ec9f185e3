import assert from "node:assert/strict";
import { matmul, rmsnorm, rope, ropeAngles, rotate } from "./ops.ts";
import { dequantizeInt, quantizeInt } from "../formats/int.ts";
import { dense } from "../../core/model.ts";

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

Deno.test("ops: quantized matmul equals the dense matmul of the decoded weights", () => {
  const rows = 24, cols = 40, T = 3;
  const w = random(rows * cols, 1);
  const x = random(T * cols, 2);
  for (const bits of [2, 3, 4, 8]) {
    const q = quantizeInt(w, rows, cols, { bits, group: 16, symmetric: bits % 2 === 0 });
    const a = new Float32Array(T * rows);
    const b = new Float32Array(T * rows);
    matmul(a, x, q);
    matmul(b, x, dense(rows, cols, dequantizeInt(q)));
    assert.deepEqual(a, b);
  }
});

Deno.test("ops: matmul against a float64 triple loop", () => {
  const rows = 7, cols = 13, T = 5;
  const w = random(rows * cols, 3);
  const x = random(T * cols, 4);
  const out = new Float32Array(T * rows);
  matmul(out, x, dense(rows, cols, w));
  for (let t = 0; t < T; t++) {
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += x[t * cols + c]! * w[r * cols + c]!;
      assert.ok(Math.abs(out[t * rows + r]! - s) < 1e-6);
    }
  }
});

Deno.test("ops: rmsnorm of a constant row is the weight", () => {
  const out = new Float32Array(4);
  rmsnorm(out, new Float32Array([3, 3, 3, 3]), new Float32Array([1, 2, 3, 4]), 0);
  assert.deepEqual([...out], [1, 2, 3, 4]);
});

Deno.test("ops: rope styles rotate the documented pairs by position × θ^(−2i/d)", () => {
  const x = new Float32Array([1, 0, 1, 0]);
  rope(x, 1, 4, 1, 10000, "interleaved");
  // pair (0,1) angle 1 rad; pair (2,3) angle 1/100 rad.
  assert.ok(Math.abs(x[0]! - Math.cos(1)) < 1e-7 && Math.abs(x[1]! - Math.sin(1)) < 1e-7);
  assert.ok(Math.abs(x[2]! - Math.cos(0.01)) < 1e-7 && Math.abs(x[3]! - Math.sin(0.01)) < 1e-7);
  const y = new Float32Array([1, 1, 0, 0]);
  rope(y, 1, 4, 1, 10000, "half");
  // pairs (0,2) angle 1 and (1,3) angle 0.01.
  assert.ok(Math.abs(y[0]! - Math.cos(1)) < 1e-7 && Math.abs(y[2]! - Math.sin(1)) < 1e-7);
  assert.ok(Math.abs(y[1]! - Math.cos(0.01)) < 1e-7 && Math.abs(y[3]! - Math.sin(0.01)) < 1e-7);
});

Deno.test("ops: rotate with angles made for a longer sequence is rope; too few rows throw", () => {
  const invFreq = Float64Array.from([1, 0.1, 0.01]);
  for (const style of ["interleaved", "half"] as const) {
    const x = random(5 * 2 * 6, 3);
    const expected = x.slice();
    rope(expected, 2, 6, 7, 10000, style, invFreq);
    rotate(x, 2, 6, style, ropeAngles(9, 7, invFreq));
    assert.deepEqual(x, expected);
    assert.throws(() => rotate(x, 2, 6, style, ropeAngles(4, 7, invFreq)), RangeError);
  }
});
