import assert from "node:assert/strict";
import { dequantizeInt, quantizeInt } from "../formats/int.ts";
import { dot, gradError, randomValues } from "./grad_check.ts";
import { linearForward } from "./grad_ops.ts";
import { type FakeQuant, fakeQuantize, fakeQuantLinear, initFakeQuant } from "./fake_quant.ts";

for (const symmetric of [true, false]) {
  Deno.test(`fake quantization decodes as the int format (${symmetric ? "" : "a"}symmetric)`, () => {
    const [rows, cols] = [3, 10];
    const w = randomValues(rows * cols, 30);
    const config = { bits: 3, group: 4, symmetric };
    const fq = initFakeQuant(w, rows, cols, config);
    const int = dequantizeInt(
      quantizeInt(Float32Array.from(w), rows, cols, { ...config, scaleDtype: "f32" }),
    );
    const { wq } = fakeQuantize(w, rows, cols, fq);
    for (let i = 0; i < wq.length; i++) assert.ok(Math.abs(wq[i]! - int[i]!) < 1e-6, `at ${i}`);
  });
}

Deno.test("fake quantization rejects unsupported widths and groups", () => {
  const w = new Float64Array(4);
  assert.throws(() => initFakeQuant(w, 1, 4, { bits: 9, group: 0, symmetric: true }), /9 bits/);
  assert.throws(() => initFakeQuant(w, 1, 4, { bits: 4, group: -1, symmetric: true }), /-1/);
});

/**
 * The straight-through estimator stated as a function: rounding frozen at the point of
 * linearization (`round(u) = u + δ`, δ fixed), clamped elements frozen at their code. Its ordinary
 * derivatives are, by definition, the STE/LSQ gradients.
 */
function steSurrogate(
  x: Float64Array,
  w: Float64Array,
  rows: number,
  cols: number,
  fq: FakeQuant,
  frozen: { inRange: Uint8Array; scaleGrad: Float64Array },
  bias: Float64Array,
): Float64Array {
  const groups = Math.ceil(cols / fq.groupSize);
  const c = fq.channel!;
  const wq = w.map((v, i) => {
    const j = i % cols;
    const s = fq.scales[Math.floor(i / cols) * groups + Math.floor(j / fq.groupSize)]!;
    return (frozen.inRange[i] ? v * c[j]! : 0) + s * frozen.scaleGrad[i]!;
  });
  return linearForward(x.map((v, i) => v / c[i % cols]!), wq, rows, cols, bias);
}

Deno.test("a fake-quantized linear's STE gradients match finite differences of the STE", () => {
  const [T, rows, cols] = [3, 4, 6];
  const w = randomValues(rows * cols, 31);
  const fq = initFakeQuant(w, rows, cols, { bits: 3, group: 4, symmetric: false, channel: true });
  // Narrower scales than RTN's so that the clamp bites somewhere; channel factors away from 1.
  fq.scales.forEach((s, i) => (fq.scales[i] = 0.7 * s));
  fq.channel!.set(randomValues(cols, 32, 0.3, 1));
  const x = randomValues(T * cols, 33);
  const bias = randomValues(rows, 34);
  const r = randomValues(T * rows, 35);
  const frozen = fakeQuantize(w, rows, cols, fq);
  assert.ok(frozen.inRange.includes(0) && frozen.inRange.includes(1));

  const { y, back } = fakeQuantLinear(x, w, rows, cols, fq, bias);
  const at = steSurrogate(x, w, rows, cols, fq, frozen, bias);
  for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i]! - at[i]!) < 1e-12);
  const dbias = new Float64Array(rows);
  const g = back(r, dbias);
  const loss = () => dot(steSurrogate(x, w, rows, cols, fq, frozen, bias), r);
  for (
    const [what, value, grad] of [
      ["x", x, g.dx],
      ["w", w, g.dw],
      ["scales", fq.scales, g.dscales],
      ["channel", fq.channel!, g.dchannel!],
      ["bias", bias, dbias],
    ] as const
  ) {
    const { relative } = gradError(loss, value, grad);
    assert.ok(relative < 1e-6, `${what}: relative error ${relative}`);
  }
  // Clamped weights get no gradient.
  frozen.inRange.forEach((inside, i) => inside || assert.equal(g.dw[i], 0));
});
