/**
 * AWQ with `device: webgpu` against the CPU path: on the same captures, every group's scale
 * search on the GPU chooses the CPU's ratio (or one whose CPU loss is within float32 rounding of
 * the chosen one's) with losses equal up to float32 rounding, on stories260K (every layer) and
 * the mini fixture (grouped-query attention); the clip search on the GPU picks the CPU's clamps;
 * end to end, the quantized model's perplexity is within 1e-4 of the CPU path's.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { awq, clipWeights, decoded, scaleGroups, searchScales } from "./awq.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import { normCopies, quantizeLayers } from "./sequential.ts";
import { calibrationWindows, resolveCalibration } from "./calibration.ts";
import { gpuWindowKernels } from "./gptq_webgpu.ts";
import { CALIBRATION_SETS, heldOutNll } from "./testing.ts";
import { dense, type DenseMatrix, LINEAR_NAMES, type LinearName } from "../../core/model.ts";
import type { LlamaModel } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { loadModelPath } from "../models/load.ts";
import { adapterUnavailable } from "../../kernels/webgpu/device.ts";
import { CalibrationDeviceError } from "./calibration_device.ts";

const unavailable = await adapterUnavailable();
const haveStories = hasShared("models/stories260K", "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {}, ...extra };
}

/** What the searches of every layer found on both devices. */
interface Choice {
  label: string;
  cpu: { ratio: number; losses: number[] };
  gpu: { ratio: number; losses: number[] };
}

/**
 * Every layer's scale searches (`nGrid` ratios) on the CPU and on the GPU over the same (CPU)
 * captures of the float model's calibration forward.
 */
async function choices(
  model: LlamaModel,
  format: FormatSpec,
  calibration: Record<string, unknown>,
  nGrid: number,
): Promise<Choice[]> {
  const ctx = { seed: 0, datasets: CALIBRATION_SETS };
  const resolved = resolveCalibration("awq", calibration, ctx, model.config.maxSeqLen);
  const windows = await calibrationWindows(model, resolved, 0);
  const kernels = gpuWindowKernels(model.config);
  const out: Choice[] = [];
  await quantizeLayers(model, {
    kind: "layer",
    async quantizeLayer(captures, layer) {
      const { original, steps } = layer;
      const w = Object.fromEntries(
        LINEAR_NAMES.map((
          n,
        ) => [n, dense(original[n].rows, original[n].cols, decoded(original[n]))]),
      ) as Record<LinearName, DenseMatrix>;
      const norms = normCopies(steps, original);
      const cpu = scaleGroups(layer, captures, w, norms);
      const gpu = scaleGroups(layer, captures, w, norms, kernels);
      assert.equal(gpu.length, cpu.length);
      for (const [i, search] of cpu.entries()) {
        const a = await searchScales(search.group, w, format, nGrid);
        const b = await searchScales(gpu[i]!.group, w, format, nGrid);
        gpu[i]!.release?.();
        const label = `layer ${layer.index} [${search.group.names}]`;
        out.push({ label, cpu: a, gpu: b });
      }
      return original;
    },
  }, windows);
  return out;
}

/** Asserts the choices agree as the module notes say; returns the worst relative loss gap. */
function check(found: Choice[]): number {
  let worst = 0;
  for (const { label, cpu, gpu } of found) {
    cpu.losses.forEach((l, i) => worst = Math.max(worst, Math.abs(gpu.losses[i]! / l - 1)));
    if (gpu.ratio !== cpu.ratio) {
      const [l0, l1] = [cpu.losses[cpu.ratio]!, cpu.losses[gpu.ratio]!];
      assert.ok(
        l1 / l0 - 1 < 1e-5,
        `${label}: ratio ${gpu.ratio} vs ${cpu.ratio} (${l1} vs ${l0})`,
      );
    }
  }
  assert.ok(worst < 1e-4, `losses differ by ${worst} (relative)`);
  return worst;
}

/** The first `n` layers of `model` (the tests' time: each GPU loss is a few round trips). */
function firstLayers(model: LlamaModel, n: number): LlamaModel {
  const layers = model.weights.layers.slice(0, n);
  return {
    ...model,
    config: { ...model.config, nLayers: n },
    weights: { ...model.weights, layers },
  };
}

Deno.test({
  name: "awq webgpu: stories260K scale searches choose the CPU's ratios; perplexity as on the CPU",
  ignore: unavailable !== undefined || !haveStories,
  async fn() {
    const model = firstLayers(
      await loadLlama2c(sharedPath("models/stories260K", "stories260K.bin")),
      2,
    );
    const format = spec("int3", { group: 32 });
    const calibration = { dataset: "shakespeare", samples: 2, seq_len: 128 };
    const found = await choices(model, format, calibration, 20);
    // [wq, wk, wv], [w1, w3], [w2]: no [wo] with grouped-query attention.
    assert.equal(found.length, 3 * model.config.nLayers);
    const worst = check(found);
    const quantized: LlamaModel[] = [];
    for (const device of ["cpu", "webgpu"]) {
      const options = { ...structuredClone(awq.options), calibration, n_sample_token: 64, device };
      quantized.push(
        await awq.quantize(model, format, options, { seed: 0, datasets: CALIBRATION_SETS }),
      );
    }
    const text = await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt"));
    const ids = model.tokenizer.encode(text).slice(0, 4 * 256);
    const [nc, ng] = [await heldOutNll(quantized[0]!, ids), await heldOutNll(quantized[1]!, ids)];
    assert.ok(Math.abs(Math.expm1(ng - nc)) < 1e-4, `perplexity: NLL ${ng} vs ${nc}`);
    console.log(`awq webgpu stories260K: losses within ${worst}; NLL ${ng} vs ${nc}`);
  },
});

Deno.test({
  name: "awq webgpu: mini fixture scale searches choose the CPU's ratios",
  ignore: unavailable !== undefined || !haveStories,
  async fn() {
    const model = firstLayers(await loadModelPath(join(REPO_ROOT, "fixtures/models/mini")), 1);
    const calibration = { dataset: "shakespeare", samples: 2, seq_len: 64 };
    // Ten ratios: its 768-wide w2 costs lavapipe half a second a loss.
    const found = await choices(model, spec("int4", { group: 128 }), calibration, 10);
    assert.equal(found.length, 3);
    console.log(`awq webgpu mini: losses within ${check(found)}`);
  },
});

Deno.test({
  name: "awq webgpu: the clip search on the GPU picks the CPU's clamps",
  ignore: unavailable !== undefined,
  async fn() {
    const cases = [
      { rows: 24, cols: 96, tokens: [120, 80], format: spec("int3", { group: 32 }), nSample: 64 },
      // A short last group, one group per row (no group), asymmetric.
      { rows: 9, cols: 40, tokens: [50], format: spec("int4", { group: 16 }), nSample: 512 },
      { rows: 7, cols: 24, tokens: [60], format: spec("int2", { symmetric: false }), nSample: 512 },
    ];
    for (const { rows, cols, tokens, format, nSample } of cases) {
      const w = dense(rows, cols, pseudoRandom(rows * cols, rows));
      // Unequal channels, as captures have.
      const xs = tokens.map((T, k) =>
        pseudoRandom(T * cols, 10 + k).map((v, i) => v * (1 + (i % cols) % 5))
      );
      const cpu = await clipWeights(w, xs, format, 20, 0.5, nSample);
      const gpu = await clipWeights(w, xs, format, 20, 0.5, nSample, true);
      assert.deepEqual(gpu, cpu, `${format.weights} g${format.group}`);
    }
  },
});

Deno.test("awq webgpu: an unknown device is refused", () => {
  assert.throws(
    () => awq.checkOptions!({ ...structuredClone(awq.options), device: "tpu" }),
    CalibrationDeviceError,
  );
});
