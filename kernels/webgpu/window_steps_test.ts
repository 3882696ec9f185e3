/**
 * The block's cheap steps over windows' device buffers equal the CPU's kernels bit for bit: the
 * add, biases, RMSNorm, head norms and RoPE of both pairings (double-float: `rmsnorm_dd_wgsl.ts`,
 * `rope_dd_wgsl.ts`).
 */
import { relativeError } from "../../core/test_values.ts";
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { getGpu } from "./device.ts";
import { GpuWindowInputs } from "./window_inputs.ts";
import { GpuWindowSteps, WindowStepError } from "./window_steps.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import { rmsnorm, ropeAngles, rotate } from "../cpu/ops.ts";
import { ropeInverseFrequencies } from "../../core/rope.ts";

const unavailable = await createWebGpuBackend().unavailable();

Deno.test({
  name: "webgpu: window steps (RMSNorm, add, RoPE of both pairings, bias, head norm) as on the CPU",
  ignore: unavailable !== undefined,
  async fn() {
    const gpu = await getGpu();
    const [nHeads, headDim] = [3, 8];
    const dim = nHeads * headDim;
    const invFreq = ropeInverseFrequencies({ headDim, ropeTheta: 10000 });
    const store = new GpuWindowInputs(gpu);
    const steps = new GpuWindowSteps(gpu, invFreq);
    try {
      const tokens = [7, 2, 19];
      const xs = tokens.map((T, w) => pseudoRandom(T * dim, w + 1));
      const ys = tokens.map((T, w) => pseudoRandom(T * dim, w + 11));
      const weight = pseudoRandom(dim, 99);
      const fresh = () => tokens.map((T) => new Float32Array(T * dim));

      const sums = fresh();
      await steps.add(store.get(xs), store.get(ys), store.produce(sums), dim);
      await store.read(sums);
      sums.forEach((s, w) => assert.deepEqual(s, xs[w]!.map((v, i) => v + ys[w]![i]!)));

      const normed = fresh();
      await steps.rmsnorm(store.get(xs), store.produce(normed), weight, 1e-5);
      await store.read(normed);
      normed.forEach((n, w) => {
        const expected = new Float32Array(n.length);
        rmsnorm(expected, xs[w]!, weight, 1e-5);
        assert.deepEqual(n, expected, `rmsnorm window ${w}`);
      });

      // Rows of 300 (more than a workgroup's threads) over six orders of magnitude, eps too.
      const wide = [3, 5].map((T, w) =>
        pseudoRandom(T * 300, w + 21).map((v, i) => v * 10 ** ((Math.floor(i / 300) % 7) - 3))
      );
      const wideWeight = pseudoRandom(300, 98);
      const wideOut = wide.map((x) => new Float32Array(x.length));
      await steps.rmsnorm(store.get(wide), store.produce(wideOut), wideWeight, 1e-6);
      await store.read(wideOut);
      wideOut.forEach((n, w) => {
        const expected = new Float32Array(n.length);
        rmsnorm(expected, wide[w]!, wideWeight, 1e-6);
        assert.deepEqual(n, expected, `rmsnorm of rows of 300, window ${w}`);
      });

      for (const style of ["interleaved", "half"] as const) {
        const rotated = xs.map((x) => x.slice());
        await steps.rope(store.get(rotated), { nHeads, headDim, style });
        store.rewritten(rotated);
        await store.read(rotated);
        rotated.forEach((r, w) => {
          const expected = xs[w]!.slice();
          rotate(expected, nHeads, headDim, style, ropeAngles(tokens[w]!, 0, invFreq));
          assert.deepEqual(r, expected, `${style} window ${w}`);
          // The other pairing gives other values: the style is the one asked for.
          const other = xs[w]!.slice();
          const otherStyle = style === "half" ? "interleaved" : "half";
          rotate(other, nHeads, headDim, otherStyle, ropeAngles(tokens[w]!, 0, invFreq));
          if (tokens[w]! > 1) assert.ok(relativeError(r, other) > 1e-3, `${style} ≠ ${otherStyle}`);
        });
      }
      // Biases and head norms, in place: rows of nHeads heads of headDim.
      const biased = xs.map((x) => x.slice());
      const bias = pseudoRandom(dim, 97);
      await steps.bias(store.get(biased), bias);
      const headed = xs.map((x) => x.slice());
      const headWeight = pseudoRandom(headDim, 96);
      await steps.headNorm(store.get(headed), headWeight, 1e-6);
      store.rewritten([...biased, ...headed]);
      await store.read([...biased, ...headed]);
      xs.forEach((x, w) => {
        assert.deepEqual(biased[w], x.map((v, i) => v + bias[i % dim]!), `bias window ${w}`);
        const expected = new Float32Array(x.length);
        rmsnorm(expected, x, headWeight, 1e-6);
        assert.deepEqual(headed[w], expected, `head norm window ${w}`);
      });
      await assert.rejects(
        () => steps.add(store.get(xs), store.get(ys.slice(1)), store.produce(fresh()), dim),
        WindowStepError,
      );
    } finally {
      steps.destroy();
      store.clear();
    }
  },
});
