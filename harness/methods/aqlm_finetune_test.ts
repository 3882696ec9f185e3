import assert from "node:assert/strict";
import {
  AqlmBlock,
  aqlmDecoded,
  aqlmFinetune,
  AqlmFinetuneError,
  type AqlmFloatParts,
} from "./aqlm_finetune.ts";
import { aqlm, aqlmQuantize, meanGram } from "./aqlm.ts";
import { decodeMatrix } from "./gptq.ts";
import { CALIBRATION_SETS, heldOutNll } from "./testing.ts";
import { CalibrationBlock, calibrationWindows, resolveCalibration } from "./calibration.ts";
import { quantizeLayers } from "./sequential.ts";
import { tinyModel } from "../models/testing.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { gradError } from "../../kernels/cpu/grad_check.ts";
import { aqlmGroups, type AqlmScheme, buildAqlmMatrix } from "../../kernels/formats/aqlm.ts";
import { seededRandom } from "../../core/random.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { type LayerWeights, LINEAR_NAMES, type LinearName } from "../../core/model.ts";

/** Random AQLM parts for every linear of `layer`, codebook values and scales exact in halves. */
function randomParts(layer: LayerWeights, scheme: AqlmScheme, seed: number) {
  const random = seededRandom(seed, "aqlm finetune test");
  const half = (v: number) => Math.round(v * 1024) / 1024;
  const size = 2 ** scheme.bits;
  return Object.fromEntries(LINEAR_NAMES.map((name) => {
    const { rows, cols } = layer[name];
    const parts: AqlmFloatParts = {
      scheme,
      rows,
      cols,
      codes: Int32Array.from(
        { length: rows * aqlmGroups(scheme, cols) * scheme.codebooks },
        () => Math.floor(random() * size),
      ),
      codebooks: Float64Array.from(
        { length: scheme.codebooks * size * scheme.groupSize },
        () => half(random() - 0.5),
      ),
      scales: Float64Array.from({ length: rows }, () => half(0.2 + 0.3 * random())),
    };
    return [name, parts];
  })) as Record<LinearName, AqlmFloatParts>;
}

Deno.test("aqlm finetune: Ŵ is the stored matrix's decoding; the block's gradients match finite differences", () => {
  const model = tinyModel();
  const layer = model.weights.layers[0]!;
  // 32 columns in groups of 3: the last group is padded.
  const scheme = { codebooks: 2, bits: 2, groupSize: 3 };
  const parts = randomParts(layer, scheme, 1);
  const close = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => {
    assert.equal(a.length, b.length, what);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-6, `${what}[${i}]`);
  };
  for (const name of LINEAR_NAMES) {
    close(aqlmDecoded(parts[name]), decodeMatrix(buildAqlmMatrix(parts[name])), name);
  }
  const block = new AqlmBlock(model.config, layer, parts);
  const random = seededRandom(2, "windows");
  const window = () => Float32Array.from({ length: 4 * model.config.dim }, () => random() - 0.5);
  const inputs = [window(), window(), window()];
  const targets = [window(), window(), window()];
  const batch = [2, 0];
  const grads = new Map(
    [...block.parameters].map(([name, p]) => [name, new Float64Array(p.length)]),
  );
  block.loss(inputs, targets, batch, grads);
  // 7 linears' codebooks and scales, and the two norms.
  assert.equal(grads.size, 16);
  const loss = () => block.loss(inputs, targets, batch);
  for (const [name, p] of block.parameters) {
    const g = grads.get(name)!;
    assert.ok(g.some((v) => v !== 0), `${name} has a zero gradient`);
    const error = gradError(loss, p, g);
    assert.ok(error.relative < 1e-5, `${name}: relative error ${error.relative}`);
  }
  // The stored layer: halves of the parts, the norms as they train.
  block.parameters.get("attnNorm")![0] = 3;
  const stored = block.weights();
  assert.equal(stored.attnNorm[0], 3);
  close(decodeMatrix(stored.w2), aqlmDecoded(parts.w2), "stored w2");
});

Deno.test("aqlm finetune: a batch larger than the windows is a named error", () => {
  const model = tinyModel();
  const layer = model.weights.layers[0]!;
  const block = new AqlmBlock(
    model.config,
    layer,
    randomParts(layer, { codebooks: 1, bits: 2, groupSize: 2 }, 3),
  );
  const x = new Float32Array(2 * model.config.dim);
  const settings = { maxEpochs: 1, lr: 1e-3, batchSize: 3, beta1: 0.9, beta2: 0.95 };
  assert.throws(
    () => aqlmFinetune(block, [x, x], [x, x], settings, seededRandom(0, "order")),
    AqlmFinetuneError,
  );
});

Deno.test("aqlm finetune: held-out windows that only get worse stop the training and keep the start", () => {
  const model = tinyModel();
  const layer = model.weights.layers[0]!;
  const parts = randomParts(layer, { codebooks: 2, bits: 2, groupSize: 4 }, 5);
  const block = new AqlmBlock(model.config, layer, parts);
  const random = seededRandom(6, "windows");
  const window = () => Float32Array.from({ length: 4 * model.config.dim }, () => random() - 0.5);
  const inputs = [window(), window(), window(), window()];
  const targets = inputs.map(() => window());
  // The held-out targets are the block's own outputs: any step away from the start is worse.
  const held = [window(), window()];
  const cpu = new CalibrationBlock(model.config);
  const validation = {
    inputs: held,
    targets: held.map((x) => cpu.forward(block.weights(), x)),
    earlyStop: 2,
  };
  const start = new Map([...block.parameters].map(([name, p]) => [name, p.slice()]));
  const settings = { maxEpochs: 10, lr: 1e-2, batchSize: 2, beta1: 0.9, beta2: 0.95 };
  const losses = aqlmFinetune(
    block,
    inputs,
    targets,
    settings,
    seededRandom(0, "o"),
    undefined,
    validation,
  );
  assert.equal(losses.train.length, 2, `${losses.valid}`);
  assert.equal(losses.valid.length, 3);
  assert.ok(losses.valid[2]! > losses.valid[1]! && losses.valid[1]! > losses.valid[0]!);
  assert.ok(losses.train[1]! < losses.train[0]!, `${losses.train}`);
  for (const [name, p] of block.parameters) assert.deepEqual(p, start.get(name), name);
  // Without held-out windows every epoch runs and the last parameters stay.
  const free = aqlmFinetune(
    block,
    inputs,
    targets,
    { ...settings, maxEpochs: 3 },
    seededRandom(0, "o"),
  );
  assert.equal(free.train.length, 3);
  assert.notDeepEqual(block.parameters.get("wq.codebooks"), start.get("wq.codebooks"));
});

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

function spec(weights: string): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {} };
}

Deno.test({
  name: "aqlm finetune: on stories260K's first block the block loss falls and the codebooks change",
  ignore: !haveStories,
  async fn() {
    const full = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const model = {
      ...full,
      weights: { ...full.weights, layers: full.weights.layers.slice(0, 1) },
    };
    const ctx = { seed: 0, datasets: CALIBRATION_SETS };
    const calibration = resolveCalibration(
      "aqlm",
      { dataset: "shakespeare", samples: 4, seq_len: 64 },
      ctx,
      model.config.maxSeqLen,
    );
    const windows = await calibrationWindows(model, calibration, 0);
    const scheme = { codebooks: 1, bits: 4, groupSize: 2 };
    const settings = {
      beamSize: 1,
      lr: 1e-4,
      maxEpochs: 2,
      stepsPerEpoch: 10,
      relativeMseTolerance: null,
      initMaxIter: 20,
    };
    const parts = {} as Record<LinearName, AqlmFloatParts>;
    let checked = false;
    // The method's path: each linear from the float block's inputs, then the block fine-tuned.
    await quantizeLayers(model, {
      kind: "groups",
      sequential: false,
      quantizeGroup({ names }, inputs, { original }) {
        const xtx = meanGram(inputs!, original[names[0]!].cols);
        return Object.fromEntries(names.map((name) => {
          const m = original[name];
          const r = aqlmQuantize(decodeMatrix(m), xtx, m.rows, m.cols, scheme, settings, () => 0.5);
          parts[name] = r.parts;
          return [name, r.matrix];
        }));
      },
      finishLayer(weights, { inputs, targets }) {
        const block = new AqlmBlock(model.config, weights, parts);
        const all = inputs.map((_, i) => i);
        const before = block.loss(inputs, targets, all);
        const codebooks = parts.wq.codebooks.slice();
        const norm = weights.ffnNorm.slice();
        const { train: losses } = aqlmFinetune(
          block,
          inputs,
          targets,
          { maxEpochs: 3, lr: 1e-3, batchSize: 2, beta1: 0.9, beta2: 0.95 },
          seededRandom(0, "order"),
        );
        const after = block.loss(inputs, targets, all);
        assert.ok(after < 0.9 * before, `block MSE ${before} → ${after} (${losses})`);
        assert.ok(losses.at(-1)! < losses[0]!, `${losses}`);
        assert.ok(parts.wq.codebooks.some((v, i) => v !== codebooks[i]), "codebooks unchanged");
        const stored = block.weights();
        assert.notDeepEqual(stored.ffnNorm, norm);
        // The stored block (codebooks and scales as halves) keeps the gain.
        const cpu = new CalibrationBlock(model.config);
        let err = 0;
        let n = 0;
        inputs.forEach((x, i) =>
          cpu.forward(stored, x).forEach((v, k) => {
            err += (v - targets[i]![k]!) ** 2;
            n++;
          })
        );
        assert.ok(err / n < 0.95 * before, `stored block MSE ${err / n} vs ${before}`);
        checked = true;
        return stored;
      },
    }, windows);
    assert.ok(checked);
  },
});

Deno.test({
  name: "aqlm finetune: stories260K perplexity with fine-tuning is at most without",
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const ids = model.tokenizer.encode(
      await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt")),
    ).slice(0, 1024);
    const ctx = { seed: 0, datasets: CALIBRATION_SETS };
    const options = {
      ...structuredClone(aqlm.options),
      calibration: { dataset: "shakespeare", samples: 4, seq_len: 128 },
      relative_mse_tolerance: 0.01,
      steps_per_epoch: 10,
      max_epochs: 3,
      init_max_iter: 20,
    };
    const format = spec("aqlm_1x4_g2");
    const plain = await aqlm.quantize(model, format, options, ctx);
    const tuned = await aqlm.quantize(model, format, {
      ...options,
      finetune: true,
      finetune_lr: 1e-3,
    }, ctx);
    const [p, t] = await Promise.all([heldOutNll(plain, ids), heldOutNll(tuned, ids)]);
    assert.ok(t <= p, `NLL with fine-tuning ${t}, without ${p}`);
  },
});
