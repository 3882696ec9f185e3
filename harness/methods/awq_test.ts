import assert from "node:assert/strict";
import {
  awq,
  clipGroup,
  clipWeights,
  fakeQuantize,
  meanAbs,
  ratioScales,
  searchScales,
} from "./awq.ts";
import { rtn } from "./rtn.ts";
import { dense } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { cpuBackend } from "../../kernels/cpu/backend.ts";
import { CALIBRATION_SETS, heldOutNll } from "./testing.ts";

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {}, ...extra };
}

Deno.test("awq: activation means and candidate scales (hand-computed)", () => {
  assert.deepEqual(
    [...meanAbs([Float32Array.from([1, -4, 3, 0]), Float32Array.from([-2, 8])], 2)],
    [
      2,
      4,
    ],
  );
  // x = [1, 4], α = 1/2: s = [1, 2] / sqrt(2 · 1).
  const s = ratioScales(Float64Array.from([1, 4]), 0.5);
  assert.deepEqual([...s], [Math.fround(1 / Math.SQRT2), Math.fround(2 / Math.SQRT2)]);
  // α = 0: all ones; a zero mean is clamped at 1e-4 before normalising.
  assert.deepEqual([...ratioScales(Float64Array.from([0, 9]), 0)], [1, 1]);
  const z = ratioScales(Float64Array.from([0, 1]), 1);
  assert.deepEqual([...z], [Math.fround(1e-4 / Math.sqrt(1e-4)), Math.fround(1 / Math.sqrt(1e-4))]);
  assert.equal(clipGroup(spec("int4", { group: 32 }), 172), 32);
  assert.equal(clipGroup(spec("mxfp4"), 172), 32);
  assert.equal(clipGroup(spec("int4"), 172), 172);
});

Deno.test("awq: the scale search keeps the best α; α = 0 is plain RTN", async () => {
  const [rows, cols, T] = [8, 32, 64];
  const w = dense(rows, cols, Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i)));
  // One outlier channel: activation-aware scaling should protect it.
  const x = Float32Array.from(
    { length: T * cols },
    (_, i) => Math.cos(i * 0.3) * (i % cols === 3 ? 30 : 1),
  );
  const format = spec("int3", { group: 16 });
  const matmul = (m: Float32Array) => {
    const out = new Float32Array(T * rows);
    for (let t = 0; t < T; t++) {
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += x[t * cols + c]! * m[r * cols + c]!;
        out[t * rows + r] = s;
      }
    }
    return out;
  };
  const ref = matmul(w.data);
  const { scales, losses } = await searchScales(
    {
      names: ["w2"],
      inputs: [x],
      loss: (r) => matmul(r.w2!.data).reduce((s, v, i) => s + (v - ref[i]!) ** 2, 0) / ref.length,
    },
    { w2: w },
    format,
    20,
  );
  assert.equal(losses.length, 20);
  const rtnOut = matmul(fakeQuantize(format, rows, cols, w.data));
  const rtnLoss = rtnOut.reduce((s, v, i) => s + (v - ref[i]!) ** 2, 0) / ref.length;
  assert.ok(Math.abs(losses[0]! - rtnLoss) <= 1e-6 * rtnLoss, `${losses[0]} vs ${rtnLoss}`);
  const best = Math.min(...losses);
  assert.ok(best < 0.9 * rtnLoss, `search should help here: ${losses}`);
  assert.ok(scales[3]! > 1, "the outlier channel is scaled up");
});

/**
 * The clip search by brute force, as `auto_clip_layer` states it: per row and group, the factor
 * among 1, 0.95, …, 0.55 whose clamped, quantized group output on the sampled tokens (every
 * stride-th row of the concatenated inputs) is closest to the float one; returns the clamps.
 */
function bruteForceClip(
  data: Float32Array,
  rows: number,
  cols: number,
  xs: Float32Array[],
  format: FormatSpec,
  group: number,
  stride: number,
): Float64Array {
  const tokens = xs.flatMap((x) =>
    Array.from({ length: x.length / cols }, (_, t) => x.subarray(t * cols, (t + 1) * cols))
  ).filter((_, i) => i % stride === 0);
  const groups = Math.ceil(cols / group);
  const clamps = new Float64Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const idx = [...Array(Math.min(group, cols - g * group)).keys()].map((k) =>
        r * cols + g * group + k
      );
      const amax = Math.max(...idx.map((i) => Math.abs(data[i]!)));
      let best = { err: 1e9, m: amax };
      for (let i = 0; i < 10; i++) {
        const m = amax * (1 - i / 20);
        const trial = data.map((v) => Math.min(m, Math.max(-m, v)));
        const q = fakeQuantize(format, rows, cols, trial);
        let err = 0;
        for (const x of tokens) {
          let a = 0, b = 0;
          for (const i of idx) {
            a += x[i % cols]! * q[i]!;
            b += x[i % cols]! * data[i]!;
          }
          err += (a - b) ** 2;
        }
        if (err / tokens.length < best.err) best = { err: err / tokens.length, m };
      }
      clamps[r * groups + g] = best.m;
    }
  }
  return clamps;
}

Deno.test("awq: the clip search picks each group's least-error clamp on the sampled tokens", async () => {
  const cases = [
    // Fewer tokens than n_sample_token: every token is sampled.
    { rows: 3, cols: 16, lengths: [40], format: spec("int2", { group: 8 }), nSample: 512 },
    // Two windows, every 3rd token of 70 (n_sample_token 20), a short last group.
    { rows: 5, cols: 40, lengths: [30, 40], format: spec("int4", { group: 16 }), nSample: 20 },
  ];
  for (const { rows, cols, lengths, format, nSample } of cases) {
    const data = Float32Array.from(
      { length: rows * cols },
      (_, i) => (i % 7 === 0 ? 1.5 : Math.sin(i) * 0.3),
    );
    const xs = lengths.map((T, k) =>
      Float32Array.from({ length: T * cols }, (_, i) => Math.cos(i * 0.71 + k))
    );
    const clipped = await clipWeights(dense(rows, cols, data), xs, format, 20, 0.5, nSample);
    const group = clipGroup(format, cols);
    const stride = Math.max(1, Math.floor(lengths.reduce((a, b) => a + b) / nSample));
    const clamps = bruteForceClip(data, rows, cols, xs, format, group, stride);
    for (let i = 0; i < data.length; i++) {
      const m =
        clamps[Math.floor(i / cols) * Math.ceil(cols / group) + Math.floor((i % cols) / group)]!;
      assert.ok(
        Math.abs(clipped[i]! - Math.min(m, Math.max(-m, data[i]!))) < 1e-6,
        `${rows}×${cols}: element ${i}`,
      );
    }
  }
});

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

Deno.test({
  name: "awq: folded scales keep a near-lossless model's logits; int3-g32 beats RTN",
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const ids = model.tokenizer.encode(
      await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt")),
    );
    const options = {
      ...structuredClone(awq.options),
      calibration: { dataset: "shakespeare", samples: 4, seq_len: 128 },
      n_sample_token: 64,
    };
    const ctx = { seed: 0, datasets: CALIBRATION_SETS };
    // f16 rounding is nearly lossless: a mistake in folding 1/s into norms and rows would show
    // as a far larger logit difference than f16 rounding alone makes.
    const logits = async (m: typeof model) => {
      const runner = await cpuBackend.load(m);
      return await runner.forward(ids.slice(0, 64), 0);
    };
    const base = await logits(model);
    const maxDiff = async (m: typeof model) => {
      const l = await logits(m);
      return l.reduce((d, v, i) => Math.max(d, Math.abs(v - base[i]!)), 0);
    };
    const folded = await maxDiff(
      await awq.quantize(model, spec("f16"), { ...options, mse_range: false }, ctx),
    );
    const rounded = await maxDiff(
      await rtn.quantize(model, spec("f16"), structuredClone(rtn.options), ctx),
    );
    assert.ok(folded < 3 * rounded + 1e-3, `AWQ-folded f16 ${folded} vs f16 ${rounded}`);
    const format = spec("int3", { group: 32 });
    const q = await awq.quantize(model, format, options, ctx);
    const r = await rtn.quantize(model, format, structuredClone(rtn.options), { seed: 0 });
    const [na, nr] = [await heldOutNll(q, ids), await heldOutNll(r, ids)];
    assert.ok(na < nr - 0.05, `AWQ ${na} vs RTN ${nr}`);
  },
});
