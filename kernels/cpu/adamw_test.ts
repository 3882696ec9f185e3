import assert from "node:assert/strict";
import { AdamW } from "./adamw.ts";

Deno.test("AdamW's first two steps match updates computed by hand", () => {
  const p = new Float64Array([1, -2]);
  const adamw = new AdamW({ lr: 0.1, beta1: 0.5, beta2: 0.75, eps: 0, weightDecay: 0.5 });
  const params = new Map([["p", p]]);
  adamw.step(params, new Map([["p", new Float64Array([0.4, -1])]]));
  // Step 1: decay p·(1 − 0.05); m̂ = g, v̂ = g², so the step is lr·sign(g).
  // 1 → 0.95 − 0.1 = 0.85; −2 → −1.9 + 0.1 = −1.8.
  assert.ok(Math.abs(p[0]! - 0.85) < 1e-14 && Math.abs(p[1]! + 1.8) < 1e-14, `${p}`);
  adamw.step(params, new Map([["p", new Float64Array([0.2, 1])]]));
  // Step 2, element 0: m = 0.5·0.2 + 0.5·0.2 = 0.2 (step 1 left 0.5·0.4), m̂ = 0.2/0.75;
  // v = 0.75·0.04 + 0.25·0.04 = 0.04 (step 1 left 0.25·0.16), v̂ = 0.04/(1 − 0.75²);
  // p = 0.85·0.95 − 0.1·m̂/sqrt(v̂).
  const step0 = (0.1 * (0.2 / 0.75)) / Math.sqrt(0.04 / (1 - 0.75 ** 2));
  assert.ok(Math.abs(p[0]! - (0.85 * 0.95 - step0)) < 1e-14, `${p[0]}`);
  // Element 1: m = 0.5·(0.5·−1) + 0.5·1 = 0.25, m̂ = 1/3; v = 0.75·0.25 + 0.25·1 = 0.4375,
  // v̂ = 1; p = −1.8·0.95 − 0.1/3.
  assert.ok(Math.abs(p[1]! - (-1.8 * 0.95 - 0.1 / 3)) < 1e-14, `${p[1]}`);
  assert.equal(adamw.steps, 2);
});

Deno.test("AdamW's defaults are PyTorch's and a missing gradient is an error", () => {
  const p = new Float64Array([0.5]);
  const adamw = new AdamW({ lr: 1e-3 });
  adamw.step(new Map([["p", p]]), new Map([["p", new Float64Array([3])]]));
  // weight_decay 0.01, eps 1e-8: p·(1 − 1e-5) − 1e-3·3/(3 + 1e-8).
  assert.ok(Math.abs(p[0]! - (0.5 * (1 - 1e-5) - (1e-3 * 3) / (3 + 1e-8))) < 1e-16);
  assert.throws(
    () => adamw.step(new Map([["q", p]]), new Map()),
    /Parameter "q" \(1 values\) has no gradient values/,
  );
});
