/**
 * SmoothQuant with `device: webgpu` (the calibration forward on the GPU) against the CPU path on
 * stories260K: the first group's smoothing scales bit for bit (its input, embeddings through a
 * norm, is rounded as the CPU's on the GPU too), every later one's up to the GPU GEMMs' float32
 * rounding of the captured activations, and W8A16 perplexity within 1e-4 (W8A8's activation
 * rounding amplifies any float rounding: see the test).
 */
import assert from "node:assert/strict";
import { smoothquant } from "./smoothquant.ts";
import type { LlamaModel } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { adapterUnavailable } from "../../kernels/webgpu/device.ts";
import { CalibrationDeviceError } from "./calibration_device.ts";
import { CALIBRATION_SETS, heldOutNll } from "./testing.ts";

const unavailable = await adapterUnavailable();
const haveStories = hasShared("models/stories260K", "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

const W8A8: FormatSpec = {
  id: "w8a8",
  weights: "int8",
  group: 0,
  symmetric: true,
  options: { activations: "int8" },
};

/** SmoothQuant of stories260K into `format` on the CPU and on the GPU. */
async function bothDevices(model: LlamaModel, format: FormatSpec): Promise<LlamaModel[]> {
  const ctx = { seed: 0, datasets: CALIBRATION_SETS };
  const out: LlamaModel[] = [];
  for (const device of ["cpu", "webgpu"]) {
    const options = {
      ...structuredClone(smoothquant.options),
      calibration: { dataset: "shakespeare", samples: 4, seq_len: 256 },
      device,
    };
    out.push(await smoothquant.quantize(model, format, options, ctx));
  }
  return out;
}

Deno.test({
  name: "smoothquant webgpu: stories260K smoothing scales and perplexity as on the CPU",
  ignore: unavailable !== undefined || !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath("models/stories260K", "stories260K.bin"));
    const ids = model.tokenizer.encode(
      await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt")),
    ).slice(0, 4 * 256);
    const [a, b] = await bothDevices(model, { ...W8A8, options: {} }) as [LlamaModel, LlamaModel];
    // The smoothed norms are the original divided by the scales: equal norms, equal scales.
    let worst = 0;
    a.weights.layers.forEach((layer, i) => {
      for (const norm of ["attnNorm", "ffnNorm"] as const) {
        const [x, y] = [layer[norm], b.weights.layers[i]![norm]];
        // Layer 0's attention input is embeddings through a norm (the GPU's rounds as the CPU's).
        if (i === 0 && norm === "attnNorm") assert.deepEqual(y, x, `layer 0 ${norm}`);
        x.forEach((v, j) => worst = Math.max(worst, Math.abs(y[j]! / v - 1)));
      }
    });
    assert.ok(worst < 1e-5, `smoothing scales differ by ${worst} (relative)`);
    // W8A16: within 1e-4 (measured 1.2e-5; 65 of 226560 weight codes differ).
    const [nc, ng] = [await heldOutNll(a, ids), await heldOutNll(b, ids)];
    assert.ok(Math.abs(Math.expm1(ng - nc)) < 1e-4, `W8A16 perplexity: NLL ${ng} vs ${nc}`);
    // W8A8's per-token activation rounding is discontinuous: nudging the CPU path's smoothed
    // norms by 2 ulp alone moves its perplexity by 4e-4; the GPU path's moves it by 1.1e-3.
    const [c8, g8] = await bothDevices(model, W8A8) as [LlamaModel, LlamaModel];
    const [nc8, ng8] = [await heldOutNll(c8, ids), await heldOutNll(g8, ids)];
    assert.ok(Math.abs(Math.expm1(ng8 - nc8)) < 2e-3, `W8A8 perplexity: NLL ${ng8} vs ${nc8}`);
    console.log(
      `smoothquant webgpu stories260K: scales within ${worst}; W8A16 NLL ${ng} vs ${nc}; ` +
        `W8A8 NLL ${ng8} vs ${nc8}`,
    );
  },
});

Deno.test("smoothquant webgpu: an unknown device is refused", () => {
  assert.throws(
    () => smoothquant.checkOptions!({ ...structuredClone(smoothquant.options), device: "tpu" }),
    CalibrationDeviceError,
  );
});
