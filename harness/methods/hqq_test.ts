import assert from "node:assert/strict";
import { hqq, hqqQuantize } from "./hqq.ts";
import { rtn } from "./rtn.ts";
import { decoded } from "./awq.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { linearBitsPerWeight } from "../models/bits.ts";
import { LINEAR_NAMES } from "../../core/model.ts";

const SETTINGS = { lpNorm: 0.7, beta: 10, kappa: 1.01, iters: 20, earlyStop: true };

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: false, options: {}, ...extra };
}

Deno.test("hqq: one proximal step on a 4-weight group (hand-computed)", () => {
  // 2 bits, values [0, 0.2, 0.7, 1.5] (as float32): inverseScale 3/1.5 = 2, zero 0 (not rounded: 2 bits).
  // Step 1: W·2 = [0, 0.4, 1.4, 3] → W_q = [0, 0, 1, 3], W_r = [0, 0, 0.5, 1.5], errors
  // [0, 0.2, 0.2, 0]; shrink with β = 10, p = 0.7: 0.2 − 0.2^(−0.3)/10 = 0.2 − 0.16206 = 0.03794;
  // zero = mean(W_q − (W − W_e)·2) = mean([0, −0.4 + 0.07589, 1 − 1.4 + 0.07589, 0]) = −0.16206.
  const w = Float32Array.from([0, 0.2, 0.7, 1.5]);
  const one = hqqQuantize(w, 1, 4, 2, 0, { ...SETTINGS, iters: 1, earlyStop: false });
  const shrunk = 0.2 - Math.pow(0.2, -0.3) / 10;
  const zero = ((-0.4 + 2 * shrunk) + (1 - 1.4 + 2 * shrunk)) / 4;
  assert.ok(Math.abs(one.groups[0]!.zero - zero) < 1e-7, `${one.groups[0]!.zero} vs ${zero}`);
  assert.equal(one.groups[0]!.scale, 0.5);
  // Codes with the new zero: round(W·2 − 0.162) = [0, 0, 1, 3] (clamped at 0).
  assert.deepEqual([...one.codes], [0, 0, 1, 3]);
  // Without optimisation: codes and parameters are the starting ones; 4 bits round the zero.
  const plain = hqqQuantize(Float32Array.from([-1, 0, 2]), 1, 3, 4, 0, undefined);
  assert.deepEqual(plain.groups, [{ scale: 3 / 15, zero: 5 }]);
  assert.deepEqual([...plain.codes], [0, 5, 15]);
});

Deno.test("hqq: symmetric and non-integer formats are refused with a reason", () => {
  assert.match(hqq.unsupported(spec("int4", { symmetric: true }))!, /symmetric: false/);
  assert.match(hqq.unsupported(spec("q4_0"))!, /integer formats/);
  assert.match(hqq.unsupported(spec("int4", { group: -1 }))!, /not per tensor/);
  assert.equal(hqq.unsupported(spec("int3", { group: 64 })), undefined);
});

Deno.test({
  name: "hqq: stories260K int4-g64 — lower weight error than its start, HQQ's bits per weight",
  ignore: !hasShared("models/stories260K/stories260K.bin"),
  async fn() {
    const model = await loadLlama2c(sharedPath("models/stories260K/stories260K.bin"));
    const format = spec("int4", { group: 64 });
    const error = (q: typeof model) => {
      let e = 0;
      for (const [l, layer] of q.weights.layers.entries()) {
        for (const name of LINEAR_NAMES) {
          const a = decoded(model.weights.layers[l]![name]);
          const b = decoded(layer[name]);
          for (let i = 0; i < a.length; i++) e += Math.abs(a[i]! - b[i]!);
        }
      }
      return e;
    };
    const optimized = await hqq.quantize(model, format, structuredClone(hqq.options), { seed: 0 });
    const start = await hqq.quantize(model, format, { ...hqq.options, optimize: false }, {
      seed: 0,
    });
    assert.ok(error(optimized) < 0.98 * error(start), `${error(optimized)} vs ${error(start)}`);
    // 4-bit codes plus an f16 scale and an f16 zero per group of 64 (172-column rows: 3 groups).
    const weights = 64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 3;
    const bits = (64 * 64 * 2 + 32 * 64 * 2) * (4 + 32 / 64) + 172 * 64 * 2 * (4 + 32 / 64) +
      64 * (3 * 32 + 172 * 4);
    assert.equal(linearBitsPerWeight(optimized), bits / weights);
    const r = await rtn.quantize(model, format, structuredClone(rtn.options), { seed: 0 });
    assert.ok(linearBitsPerWeight(r) < linearBitsPerWeight(optimized), "HQQ stores float zeros");
  },
});
