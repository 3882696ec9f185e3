import assert from "node:assert/strict";
import {
  clipParams,
  clipQuantBackward,
  clipQuantize,
  initClipQuant,
  LWC_INIT,
} from "./clip_quant.ts";
import { dequantizeInt, quantizeInt } from "../formats/int.ts";
import { dot, gradError, randomValues } from "./grad_check.ts";

const ROWS = 3;
const COLS = 8;

Deno.test("clip quant: unclipped factors round as int.ts does", () => {
  const w = randomValues(ROWS * COLS, 1, 1);
  for (const symmetric of [false, true]) {
    for (const group of [0, 4]) {
      const q = initClipQuant(ROWS, COLS, { bits: 4, group, symmetric });
      assert.equal(q.upper[0], LWC_INIT);
      // σ(40) = 1: no clipping.
      q.upper.fill(40);
      q.lower.fill(40);
      const ours = clipQuantize(w, ROWS, COLS, q).wq;
      const config = { bits: 4, group, symmetric, scaleDtype: "f32" as const };
      const m = quantizeInt(Float32Array.from(w), ROWS, COLS, config);
      const ref = dequantizeInt(m);
      // Symmetric: the most negative weight sits on a tie (−(2^b − 1) / 2 steps), which the
      // float32 scale of int.ts may round either way; one step apart at most.
      ours.forEach((v, i) => {
        const step = m.scales[Math.floor(i / m.groupSize)]!;
        const tie = symmetric && Math.abs(Math.abs(w[i]! / step) - 7.5) < 1e-4;
        assert.ok(Math.abs(v - ref[i]!) < (tie ? step + 1e-6 : 1e-6), `${symmetric} ${group}`);
      });
    }
  }
});

Deno.test("clip quant: the factors shrink the range (hand-computed)", () => {
  const q = initClipQuant(1, 4, { bits: 2, group: 0, symmetric: false });
  q.upper[0] = 0; // σ(0) = 1/2
  q.lower[0] = 40;
  // range [−1·1, 3·1/2]: scale 2.5 / 3, zero round(1 / (2.5/3)) = 1.
  const p = clipParams([-1, 0, 1, 3], 1, 4, q);
  assert.ok(Math.abs(p.scales[0]! - 2.5 / 3) < 1e-12);
  assert.equal(p.zeros[0], 1);
  const { wq, inRange } = clipQuantize(Float64Array.from([-1, 0, 1, 3]), 1, 4, q);
  // 3 / (2.5/3) = 3.6 → 4 + 1 clamps to 3: 2 · 2.5/3.
  assert.ok(Math.abs(wq[3]! - 5 / 3) < 1e-12);
  assert.deepEqual([...inRange], [1, 1, 1, 0]);
});

Deno.test("clip quant: STE gradients match finite differences of the straight-through surrogate", () => {
  // With the rounding offsets, clamped codes and zero points held at their values, `w_q` is a
  // smooth function of w, γ and β whose exact gradient is the STE's.
  for (const symmetric of [false, true]) {
    const w = randomValues(ROWS * COLS, 2, 1);
    const q = initClipQuant(ROWS, COLS, { bits: 3, group: 4, symmetric });
    q.upper.set(randomValues(q.upper.length, 3, 1, 1));
    q.lower.set(randomValues(q.lower.length, 4, 1, 1));
    const saved = clipQuantize(w, ROWS, COLS, q);
    const frozen = { ...saved };
    const g = randomValues(w.length, 5, 1);
    const surrogate = () => {
      const p = clipParams(w, ROWS, COLS, q);
      const out = new Float64Array(w.length);
      for (let i = 0; i < w.length; i++) {
        const s = p.scales[Math.floor(i / 4)]!;
        const u = w[i]! / s;
        out[i] = frozen.inRange[i] ? s * (u + frozen.scaleGrad[i]!) : s * frozen.scaleGrad[i]!;
      }
      return dot(out, g);
    };
    const dupper = new Float64Array(q.upper.length);
    const dlower = new Float64Array(q.lower.length);
    const dw = clipQuantBackward(g, ROWS, COLS, q, saved, dupper, dlower);
    for (const [x, analytic] of [[q.upper, dupper], [q.lower, dlower], [w, dw]] as const) {
      const err = gradError(surrogate, x, analytic, undefined, 1e-6);
      assert.ok(err.relative < 1e-5, `${symmetric}: ${err.relative}`);
    }
    assert.ok(dupper.some((v) => v !== 0) && dlower.some((v) => v !== 0));
  }
});
