import assert from "node:assert/strict";
import {
  addGram,
  cholesky,
  choleskyInverse,
  NotPositiveDefiniteError,
  upperCholesky,
} from "./linalg.ts";

// The textbook example (Wikipedia, "Cholesky decomposition"): L = [[2,0,0],[6,1,0],[-8,5,3]].
const A = Float64Array.from([4, 12, -16, 12, 37, -43, -16, -43, 98]);

Deno.test("linalg: Cholesky of the textbook 3×3 matrix", () => {
  assert.deepEqual([...cholesky(A, 3)], [2, 0, 0, 6, 1, 0, -8, 5, 3]);
  assert.deepEqual([...upperCholesky(A, 3)], [2, 6, -8, 0, 1, 5, 0, 0, 3]);
  assert.throws(() => cholesky(Float64Array.from([1, 2, 2, 1]), 2), NotPositiveDefiniteError);
});

Deno.test("linalg: the inverse from the Cholesky factor times A is the identity", () => {
  const inv = choleskyInverse(cholesky(A, 3), 3);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 3; k++) s += inv[i * 3 + k]! * A[k * 3 + j]!;
      assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-9, `${i},${j}: ${s}`);
    }
  }
  // Hand value: (A⁻¹)₀₀ = (37·98 − 43²) / det(A), det(A) = (2·1·3)² = 36.
  assert.ok(Math.abs(inv[0]! - (37 * 98 - 43 * 43) / 36) < 1e-9);
});

Deno.test("linalg: addGram accumulates XᵀX across chunks", () => {
  const [tokens, cols] = [5000, 7];
  const x = Float32Array.from({ length: tokens * cols }, (_, i) => Math.sin(i * 0.7) * 0.5);
  for (const kernel of ["cpu", "search"] as const) {
    const gram = new Float64Array(cols * cols).fill(1);
    addGram(gram, x, cols, kernel);
    for (let i = 0; i < cols; i++) {
      for (let j = 0; j < cols; j++) {
        let s = 1;
        for (let t = 0; t < tokens; t++) s += x[t * cols + i]! * x[t * cols + j]!;
        assert.ok(Math.abs(gram[i * cols + j]! - s) < 1e-4 * Math.abs(s) + 1e-4, `${i},${j}`);
      }
    }
  }
});
