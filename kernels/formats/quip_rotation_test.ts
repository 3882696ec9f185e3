import assert from "node:assert/strict";
import {
  applyQuipRotation,
  denseQuipRotation,
  quipFactors,
  type QuipProjMode,
  quipRotation,
} from "./quip_rotation.ts";

Deno.test("quip rotation sizes split as the authors' butterfly_factors", () => {
  assert.deepEqual(quipFactors(64), [8, 8]);
  assert.deepEqual(quipFactors(172), [86, 2]);
  assert.deepEqual(quipFactors(768), [48, 16]);
  assert.deepEqual(quipFactors(32), [8, 4]);
  assert.deepEqual(quipFactors(43), [43, 1]);
  assert.deepEqual(quipFactors(1), [1, 1]);
});

for (const n of [64, 172, 12, 43]) {
  for (const mode of [0, 1, 2] as QuipProjMode[]) {
    Deno.test(`quip rotation n=${n} mode ${mode}: orthogonal, Uᵀ undoes U`, () => {
      const rot = quipRotation(7, n, mode);
      const u = denseQuipRotation(rot);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let k = 0; k < n; k++) s += u[i * n + k]! * u[j * n + k]!;
          assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-12, `UUᵀ[${i}][${j}] = ${s}`);
        }
      }
      const x = Float64Array.from({ length: n }, (_, i) => Math.sin(i + 1));
      const y = Float64Array.from(x);
      const tmp = new Float64Array(n);
      applyQuipRotation(rot, y, 0, false, tmp);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += u[i * n + k]! * x[k]!;
        assert.ok(Math.abs(y[i]! - s) < 1e-12);
      }
      applyQuipRotation(rot, y, 0, true, tmp);
      for (let i = 0; i < n; i++) assert.ok(Math.abs(y[i]! - x[i]!) < 1e-12);
      if (mode === 2) assert.deepEqual([...rot.permIn], [...rot.permIn].sort((a, b) => a - b));
    });
  }
}

Deno.test("quip rotation mode 1 is P_out (A ⊗ B) P_in; the seed decides it", () => {
  const n = 64;
  const rot = quipRotation(3, n, 1);
  const [p0, p1] = [rot.p0, rot.p1];
  assert.equal(rot.count0, 1);
  assert.equal(rot.count1, 1);
  const u = denseQuipRotation(rot);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      // U[i][j] = (A ⊗ B)[permOut[i]][k] with P_in e_j = e_k, permIn[k] = j.
      const row = rot.permOut[i]!;
      const k = rot.permIn.indexOf(j);
      const a = rot.b0[Math.floor(row / p1) * p0 + Math.floor(k / p1)]!;
      const b = rot.b1[(row % p1) * p1 + (k % p1)]!;
      assert.ok(Math.abs(u[i * n + j]! - a * b) < 1e-12);
    }
  }
  assert.deepEqual(denseQuipRotation(quipRotation(3, n, 1)), u);
  assert.notDeepEqual(denseQuipRotation(quipRotation(4, n, 1)), u);
});
