import assert from "node:assert/strict";
import { hadamardPlan, HadamardSizeError, hadamardTransform } from "./hadamard.ts";

/** `M` of size `n` written out from its definition: `(H_K ⊗ H_{2^k}) / √n`, Sylvester order. */
function explicit(n: number): Float64Array {
  const { k, pow2, factor } = hadamardPlan(n);
  const m = new Float64Array(n * n);
  const popcount = (v: number) => {
    let c = 0;
    for (; v; v &= v - 1) c++;
    return c;
  };
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      const hk = k === 1 ? 1 : factor[Math.floor(r / pow2) * k + Math.floor(c / pow2)]!;
      const hs = popcount((r % pow2) & (c % pow2)) % 2 ? -1 : 1;
      m[r * n + c] = hk * hs / Math.sqrt(n);
    }
  }
  return m;
}

function random(n: number, seed: number): Float64Array {
  let s = seed;
  return Float64Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

Deno.test("stored Hadamard factors satisfy H·Hᵀ = K·I", () => {
  for (const n of [12, 172, 44, 28]) {
    const { k, factor } = hadamardPlan(n);
    assert.equal(k, n);
    for (let a = 0; a < k; a++) {
      for (let b = 0; b < k; b++) {
        let s = 0;
        for (let c = 0; c < k; c++) s += factor[a * k + c]! * factor[b * k + c]!;
        assert.equal(s, a === b ? k : 0, `K=${k} rows ${a},${b}`);
      }
    }
  }
});

Deno.test("hadamardTransform equals the explicit (H_K ⊗ H_2^k)/√n and its transpose", () => {
  for (const n of [1, 2, 8, 64, 12, 48, 172, 344, 768, 44, 88, 28, 56]) {
    const m = explicit(n);
    const x = random(2 * n, n);
    const y = x.slice();
    const yt = x.slice();
    hadamardTransform(y, n);
    hadamardTransform(yt, n, true);
    for (let row = 0; row < 2; row++) {
      for (let r = 0; r < n; r++) {
        let s = 0;
        let st = 0;
        for (let c = 0; c < n; c++) {
          s += m[r * n + c]! * x[row * n + c]!;
          st += m[c * n + r]! * x[row * n + c]!;
        }
        assert.ok(Math.abs(s - y[row * n + r]!) < 1e-12, `n=${n} M row ${r}`);
        assert.ok(Math.abs(st - yt[row * n + r]!) < 1e-12, `n=${n} Mᵀ row ${r}`);
      }
    }
    hadamardTransform(y, n, true);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(y[i]! - x[i]!) < 1e-12);
  }
});

Deno.test("hadamardTransform refuses sizes without a factor", () => {
  assert.throws(() => hadamardPlan(100), HadamardSizeError);
  assert.throws(() => hadamardTransform(new Float32Array(10), 8), HadamardSizeError);
});
