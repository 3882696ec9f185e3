/**
 * The GPU factor `U` of `H⁻¹` is upper triangular with a positive diagonal and `U·H·Uᵀ = I`
 * (which makes it the factor: `UᵀU = H⁻¹`), to float32 precision.
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { GpuFactorError, gpuInverseFactor } from "./gptq_factor.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await createWebGpuBackend().unavailable();

/** `XᵀX / t + damp·I` for random correlated `X` (`t × n`). */
function hessian(n: number, t: number, damp: number): Float64Array {
  const z = pseudoRandom(t * n, 9);
  const h = new Float64Array(n * n);
  for (let r = 0; r < t; r++) {
    let walk = 0;
    const x = new Float64Array(n);
    for (let j = 0; j < n; j++) x[j] = walk = 0.5 * walk + z[r * n + j]!;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j]! += x[i]! * x[j]! / t;
  }
  for (let i = 0; i < n; i++) h[i * n + i]! += damp;
  return h;
}

Deno.test({
  name: "webgpu: GPTQ's factor U of H⁻¹ (Cholesky, triangular inverse, Cholesky)",
  ignore: unavailable !== undefined,
  async fn() {
    for (const n of [1, 150]) {
      const h = hessian(n, 400, 0.05);
      const u = await gpuInverseFactor(h, n);
      let worst = 0;
      for (let i = 0; i < n; i++) {
        assert.ok(u[i * n + i]! > 0, `n ${n}: U_${i}${i} = ${u[i * n + i]}`);
        for (let j = 0; j < i; j++) assert.equal(u[i * n + j], 0, `n ${n}: U_${i}${j}`);
      }
      // (U·H·Uᵀ)[i][j] = Σ_a Σ_b U[i][a]·H[a][b]·U[j][b].
      const uh = new Float64Array(n * n);
      for (let i = 0; i < n; i++) {
        for (let a = i; a < n; a++) {
          const v = u[i * n + a]!;
          for (let b = 0; b < n; b++) uh[i * n + b]! += v * h[a * n + b]!;
        }
      }
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let b = j; b < n; b++) s += uh[i * n + b]! * u[j * n + b]!;
          worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
        }
      }
      assert.ok(worst < 1e-3, `n ${n}: |U·H·Uᵀ − I| up to ${worst}`);
    }
    const bad = Float64Array.from([1, 2, 2, 1]);
    await assert.rejects(() => gpuInverseFactor(bad, 2), GpuFactorError);
  },
});
