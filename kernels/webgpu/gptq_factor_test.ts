/**
 * The GPU factor `U` of `H⁻¹` is upper triangular with a positive diagonal and `U·H·Uᵀ = I`
 * (which makes it the factor: `UᵀU = H⁻¹`), to float32 precision, and equals the same steps
 * computed in float64 here, at sizes around the blocked kernels' panel width (one partial panel,
 * whole panels, whole panels and a partial one).
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { GpuFactorError, gpuInverseFactor } from "./gptq_factor.ts";
import { CHOLESKY_BLOCK } from "./cholesky_wgsl.ts";
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
    // A negative pivot in the second panel reaches the final factor's diagonal too.
    const late = hessian(100, 400, 0.05);
    late[80 * 100 + 80] = -1;
    await assert.rejects(() => gpuInverseFactor(late, 100), GpuFactorError);
  },
});

/** The lower Cholesky factor of `a` (`n × n`, lower triangle read), in float64. */
function cholesky64(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j]!;
    for (let t = 0; t < j; t++) d -= l[j * n + t]! ** 2;
    const p = Math.sqrt(d);
    l[j * n + j] = p;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j]!;
      for (let t = 0; t < j; t++) s -= l[i * n + t]! * l[j * n + t]!;
      l[i * n + j] = s / p;
    }
  }
  return l;
}

/**
 * GPTQ's `U = chol((L⁻ᵀ·L⁻¹))ᵀ` for `L = chol(h)`, all in float64 (`h` rounded to float32),
 * unblocked. Written here rather than taken from the CPU path (`harness/methods/linalg.ts`):
 * `kernels/` may not import `harness/` (architecture_test.ts), and an unblocked float64 route
 * is the independent reference the blocked float32 kernels are held to.
 */
function inverseFactor64(h: Float64Array, n: number): Float64Array {
  const l = cholesky64(Float64Array.from(Float32Array.from(h)), n);
  // X = L⁻¹ column by column: L·x = e_j.
  const x = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    for (let i = j; i < n; i++) {
      let s = i === j ? 1 : 0;
      for (let t = j; t < i; t++) s -= l[i * n + t]! * x[t * n + j]!;
      x[i * n + j] = s / l[i * n + i]!;
    }
  }
  const hinv = new Float64Array(n * n);
  for (let t = 0; t < n; t++) {
    for (let i = 0; i <= t; i++) {
      const v = x[t * n + i]!;
      for (let j = 0; j <= i; j++) hinv[i * n + j]! += v * x[t * n + j]!;
    }
  }
  const c = cholesky64(hinv, n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) u[j * n + i] = c[i * n + j]!;
  return u;
}

Deno.test({
  name: "webgpu: GPTQ's blocked factor equals the float64 one around the panel width",
  ignore: unavailable !== undefined,
  async fn() {
    const b = CHOLESKY_BLOCK;
    for (const n of [1, 2, b - 17, b, b + 1, 2 * b, 300]) {
      const h = hessian(n, 400, 0.05);
      const [u, want] = [await gpuInverseFactor(h, n), inverseFactor64(h, n)];
      // Relative to the largest entry of U's row: rows scale with 1 / sqrt of the pivots.
      for (let i = 0; i < n; i++) {
        let size = 0;
        for (let j = 0; j < n; j++) size = Math.max(size, Math.abs(want[i * n + j]!));
        for (let j = 0; j < n; j++) {
          const [got, w] = [u[i * n + j]!, want[i * n + j]!];
          assert.ok(
            Math.abs(got - w) <= 2e-5 * size,
            `n ${n}: U_${i}${j} = ${got}, float64 ${w} (row size ${size})`,
          );
        }
      }
    }
  },
});
