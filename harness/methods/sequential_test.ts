import assert from "node:assert/strict";
import {
  firstReader,
  groupsOf,
  type LinearGroup,
  quantizeLayers,
  SequentialCalibrationError,
  withGroupTap,
} from "./sequential.ts";
import { CalibrationBlock, layerBuffers, weightBytes, type WindowKernels } from "./calibration.ts";
import { rtn } from "./rtn.ts";
import { seededRandom, tinyModel } from "../models/testing.ts";
import { loadHfModel } from "../models/hf/load.ts";
import { writeHfModel } from "../models/writers/hf.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { rmsnorm } from "../../kernels/cpu/ops.ts";
import type { BlockValues } from "../../kernels/cpu/block_interpreter.ts";
import { blockShape, blockSteps, type BlockValue, producerIndex } from "../../core/graph.ts";
import {
  dense,
  type DenseMatrix,
  type LayerWeights,
  type LinearName,
  type LlamaModel,
  type Matrix,
} from "../../core/model.ts";

/** The tiny model with a second layer (its first one's weights negated), for propagation. */
function twoLayers(): LlamaModel {
  const model = tinyModel();
  const [first] = model.weights.layers;
  const second = Object.fromEntries(
    Object.entries(first!).map(([k, v]) =>
      v instanceof Float32Array
        ? [k, v]
        : [k, dense(v.rows, v.cols, (v as DenseMatrix).data.map((x) => -x))]
    ),
  ) as unknown as LayerWeights;
  return {
    ...model,
    config: { ...model.config, nLayers: 2 },
    weights: { ...model.weights, layers: [first!, second] },
  };
}

/** "Quantization" that halves a linear's weights: visibly not the float block. */
function halved(m: Matrix): Matrix {
  return dense(m.rows, m.cols, (m as DenseMatrix).data.map((v) => v / 2));
}

const windows = [[1, 5, 9, 2, 7, 3], [4, 4, 8, 1, 0, 6]];

/** The value `name` of the block of `layer` over `x`. */
function valueOf(model: LlamaModel, layer: LayerWeights, x: Float32Array, name: BlockValue) {
  const block = new CalibrationBlock(model.config);
  const values: BlockValues = new Map([["x", x]]);
  const steps = blockSteps(blockShape(layer));
  block.run(steps, layer, values, x.length / model.config.dim, {
    to: producerIndex(steps, name) + 1,
  });
  return values.get(name)!;
}

function embedded(model: LlamaModel, ids: number[]): Float32Array {
  const { dim } = model.config;
  const x = new Float32Array(ids.length * dim);
  ids.forEach((id, t) =>
    x.set(model.weights.tokenEmbedding.subarray(id * dim, (id + 1) * dim), t * dim)
  );
  return x;
}

/** Every group's inputs per layer, and the layers, of a `groups` run that halves weights. */
async function groupsRun(model: LlamaModel, sequential: boolean) {
  const seen: { layer: number; group: LinearGroup; inputs: Float32Array[] }[] = [];
  const layers = await quantizeLayers(model, {
    kind: "groups",
    sequential,
    quantizeGroup(group, inputs, { index, original }) {
      seen.push({ layer: index, group, inputs: inputs!.map((x) => x.slice()) });
      return Object.fromEntries(group.names.map((n) => [n, halved(original[n])]));
    },
  }, windows);
  return { seen, layers };
}

Deno.test("sequential: groups and their tap points come from the block's steps", () => {
  const steps = blockSteps(blockShape(tinyModel().weights.layers[0]!));
  assert.deepEqual(groupsOf(steps), [
    { names: ["wq", "wk", "wv"], input: "xb" },
    { names: ["wo"], input: "att" },
    { names: ["w1", "w3"], input: "fb" },
    { names: ["w2"], input: "mid" },
  ]);
  assert.equal(steps[firstReader(steps, "att")]!.op, "linear");
});

Deno.test("sequential: taps capture each group's input, with the earlier groups quantized", async () => {
  const model = twoLayers();
  const { seen, layers } = await groupsRun(model, true);
  assert.deepEqual(
    seen.map((s) => `${s.layer}:${s.group.names.join(",")}`),
    ["0:wq,wk,wv", "0:wo", "0:w1,w3", "0:w2", "1:wq,wk,wv", "1:wo", "1:w1,w3", "1:w2"],
  );
  const [l0, l1] = model.weights.layers;
  const half = (layer: LayerWeights, names: LinearName[]) => ({
    ...layer,
    ...Object.fromEntries(names.map((n) => [n, halved(layer[n])])),
  });
  windows.forEach((ids, i) => {
    const x = embedded(model, ids);
    const xb = new Float32Array(x.length);
    rmsnorm(xb, x, l0!.attnNorm, model.config.normEps);
    assert.deepEqual(seen[0]!.inputs[i], xb);
    // wo's input: attention with the quantized q, k, v projections.
    assert.deepEqual(seen[1]!.inputs[i], valueOf(model, half(l0!, ["wq", "wk", "wv"]), x, "att"));
    assert.notDeepEqual(seen[1]!.inputs[i], valueOf(model, l0!, x, "att"));
    assert.deepEqual(
      seen[3]!.inputs[i],
      valueOf(model, half(l0!, ["wq", "wk", "wv", "wo", "w1", "w3"]), x, "mid"),
    );
    // The next layer's input: the output of the quantized block.
    const next = new CalibrationBlock(model.config).forward(layers[0]!, x);
    assert.deepEqual(seen[4]!.inputs[i], valueOf(model, l1!, next, "xb"));
  });
  assert.deepEqual(layers[1]!.w2, halved(l1!.w2));
});

Deno.test("sequential: withGroupTap sees each group's inputs as the method gets them, then goes", async () => {
  const model = twoLayers();
  const tapped: { layer: number; names: string; inputs: Float32Array[] }[] = [];
  const { seen } = await withGroupTap(
    (layer, group, inputs, cols) => {
      const { dim, hiddenDim } = model.config;
      assert.equal(cols, group.names[0] === "w2" ? hiddenDim : dim);
      tapped.push({ layer, names: group.names.join(","), inputs: inputs.map((x) => x.slice()) });
    },
    () => groupsRun(model, true),
  );
  assert.deepEqual(
    tapped.map((t) => `${t.layer}:${t.names}`),
    seen.map((s) => `${s.layer}:${s.group.names.join(",")}`),
  );
  tapped.forEach((t, i) => assert.deepEqual(t.inputs, seen[i]!.inputs));
  // Removed once the work settles, also when it throws; one tap at a time.
  await assert.rejects(
    withGroupTap(() => {}, () => withGroupTap(() => {}, () => Promise.resolve())),
    SequentialCalibrationError,
  );
  const before = tapped.length;
  await groupsRun(model, true);
  assert.equal(tapped.length, before);
});

Deno.test("sequential: without `sequential` every input is the float block's; the windows still go through the quantized one", async () => {
  const model = twoLayers();
  const { seen, layers } = await groupsRun(model, false);
  const [l0, l1] = model.weights.layers;
  windows.forEach((ids, i) => {
    const x = embedded(model, ids);
    assert.deepEqual(seen[1]!.inputs[i], valueOf(model, l0!, x, "att"));
    assert.deepEqual(seen[3]!.inputs[i], valueOf(model, l0!, x, "mid"));
    const next = new CalibrationBlock(model.config).forward(layers[0]!, x);
    assert.deepEqual(seen[4]!.inputs[i], valueOf(model, l1!, next, "xb"));
  });
});

Deno.test("sequential: finishLayer sees the block's inputs and reference outputs; its layer propagates", async () => {
  const model = twoLayers();
  const [l0, l1] = model.weights.layers;
  for (const sequential of [false, true]) {
    const finished: { inputs: Float32Array[]; targets: Float32Array[] }[] = [];
    const layers = await quantizeLayers(model, {
      kind: "groups",
      sequential,
      quantizeGroup: (group, _inputs, { original }) =>
        Object.fromEntries(group.names.map((n) => [n, halved(original[n])])),
      finishLayer(weights, { inputs, targets }) {
        finished.push({
          inputs: inputs.map((x) => x.slice()),
          targets: targets.map((x) => x.slice()),
        });
        return { ...weights, ffnNorm: weights.ffnNorm.map((v) => 2 * v) };
      },
    }, windows);
    assert.equal(finished.length, 2);
    assert.deepEqual(layers[0]!.ffnNorm, l0!.ffnNorm.map((v) => 2 * v));
    // The reference block: the float one, or with `sequential` all but the last group (w2) halved.
    const names: LinearName[] = sequential ? ["wq", "wk", "wv", "wo", "w1", "w3"] : [];
    const reference = {
      ...l0!,
      ...Object.fromEntries(names.map((n) => [n, halved(l0![n])])),
    };
    windows.forEach((ids, i) => {
      const x = embedded(model, ids);
      assert.deepEqual(finished[0]!.inputs[i], x);
      assert.deepEqual(finished[0]!.targets[i], valueOf(model, reference, x, "out"));
      // The next layer's input: the output of the finished block.
      const next = new CalibrationBlock(model.config).forward(layers[0]!, x);
      assert.deepEqual(finished[1]!.inputs[i], next);
      if (!sequential) assert.deepEqual(finished[1]!.targets[i], valueOf(model, l1!, next, "out"));
    });
  }
});

Deno.test("sequential: a layer method sees the float block's captures; the float block propagates", async () => {
  const model = twoLayers();
  const [l0, l1] = model.weights.layers;
  const captured: Map<BlockValue, Float32Array[]>[] = [];
  const layers = await quantizeLayers(model, {
    kind: "layer",
    taps: ({ input }) => input !== "att",
    quantizeLayer(captures, { original }) {
      captured.push(new Map([...captures].map(([k, v]) => [k, v.map((x) => x.slice())])));
      return { ...original, w2: halved(original.w2) };
    },
  }, windows);
  assert.deepEqual([...captured[0]!.keys()], ["xb", "fb", "mid"]);
  windows.forEach((ids, i) => {
    const x = embedded(model, ids);
    assert.deepEqual(captured[0]!.get("mid")![i], valueOf(model, l0!, x, "mid"));
    const next = new CalibrationBlock(model.config).forward(l0!, x);
    assert.deepEqual(captured[1]!.get("xb")![i], valueOf(model, l1!, next, "xb"));
  });
  assert.deepEqual(layers[0]!.w2, halved(l0!.w2));
});

Deno.test("sequential: a layer method's window kernels run its float block over all windows at once", async () => {
  const model = twoLayers();
  const block = new CalibrationBlock(model.config);
  const width = model.config.nHeads * model.config.headDim;
  // The CPU backend's kernels, one window at a time: the captures must be the CPU path's.
  const calls: string[] = [];
  const windowKernels: WindowKernels = {
    linear(xs, name, layer) {
      calls.push(`linear ${name} × ${xs.length}`);
      const T = (x: Float32Array) => x.length / layer[name].cols;
      return Promise.resolve(xs.map((x) => block.kernels(T(x)).linear(x, name, layer)));
    },
    attention(qs, ks, vs) {
      calls.push(`attention × ${qs.length}`);
      return Promise.resolve(
        qs.map((q, i) => block.kernels(q.length / width).attention(q, ks[i]!, vs[i]!)),
      );
    },
  };
  const run = async (windowsOn?: WindowKernels) => {
    const captured: Map<BlockValue, Float32Array[]>[] = [];
    const layers = await quantizeLayers(model, {
      kind: "layer",
      windows: windowsOn,
      quantizeLayer(captures, { original }) {
        captured.push(new Map([...captures].map(([k, v]) => [k, v.map((x) => x.slice())])));
        return Promise.resolve({ ...original, w2: halved(original.w2) });
      },
    }, windows);
    return { captured, layers };
  };
  const [cpu, batched] = [await run(), await run(windowKernels)];
  assert.deepEqual(batched.captured, cpu.captured);
  assert.deepEqual(batched.layers, cpu.layers);
  // Every window at once: one call per linear and attention of each layer.
  assert.ok(calls.includes(`linear wq × ${windows.length}`), calls.join(", "));
  assert.equal(calls.filter((c) => c.startsWith("attention")).length, model.weights.layers.length);
});

Deno.test("sequential: a block method gets the quantized stream, the float model's targets and captures", async () => {
  const model = twoLayers();
  const [l0, l1] = model.weights.layers;
  const seen: { inputs: Float32Array[]; targets: Float32Array[]; xb: Float32Array[] }[] = [];
  const block = new CalibrationBlock(model.config);
  await quantizeLayers(model, {
    kind: "block",
    quantizeBlock({ inputs, targets, captures }, { original }) {
      seen.push({ inputs, targets, xb: captures.get("xb")! });
      const weights = { ...original, w2: halved(original.w2) };
      return { weights, outputs: inputs.map((x) => block.forward(weights, x)) };
    },
  }, windows);
  windows.forEach((ids, i) => {
    const x = embedded(model, ids);
    const float0 = block.forward(l0!, x);
    const quant0 = block.forward({ ...l0!, w2: halved(l0!.w2) }, x);
    assert.deepEqual(seen[0]!.inputs[i], x);
    assert.deepEqual(seen[0]!.targets[i], float0);
    // Layer 1: its input from the quantized block, its target and captures from the float model.
    assert.deepEqual(seen[1]!.inputs[i], quant0);
    assert.deepEqual(seen[1]!.targets[i], block.forward(l1!, float0));
    assert.deepEqual(seen[1]!.xb[i], valueOf(model, l1!, float0, "xb"));
    assert.notDeepEqual(quant0, float0);
  });
});

Deno.test("sequential: without windows each group of each layer is handed over once, with no inputs", async () => {
  const model = twoLayers();
  const calls: string[] = [];
  const layers = await quantizeLayers(model, {
    kind: "groups",
    sequential: true,
    quantizeGroup({ names }, inputs, { index, original }) {
      calls.push(`${index}:${names.join(",")}:${inputs === undefined}`);
      return Object.fromEntries(names.map((n) => [n, halved(original[n])]));
    },
  }, undefined);
  assert.equal(calls.length, 8);
  await assert.rejects(
    () =>
      quantizeLayers(
        model,
        { kind: "layer", quantizeLayer: (_, { original }) => original },
        undefined,
      ),
    SequentialCalibrationError,
  );
  assert.ok(calls.every((c) => c.endsWith(":true")));
  assert.deepEqual(layers[1]!.wk, halved(model.weights.layers[1]!.wk));
});

/**
 * A random 6-layer model (dim 512, FFN 1536) whose float32 layers outweigh its int4 form almost
 * four times, with the tiny model's tokenizer.
 */
function wideModel(): LlamaModel {
  const base = tinyModel();
  const random = seededRandom(11);
  const values = (n: number, scale: number, offset = 0) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = offset + scale * (2 * random() - 1);
    return out;
  };
  const [dim, hidden, heads, kvHeads, headDim, nLayers] = [512, 1536, 8, 4, 64, 6];
  const vocab = base.config.vocabSize;
  const matrix = (rows: number, cols: number) => dense(rows, cols, values(rows * cols, 0.05));
  const layers = Array.from({ length: nLayers }, (): LayerWeights => ({
    attnNorm: values(dim, 0.2, 1),
    wq: matrix(heads * headDim, dim),
    wk: matrix(kvHeads * headDim, dim),
    wv: matrix(kvHeads * headDim, dim),
    wo: matrix(dim, heads * headDim),
    ffnNorm: values(dim, 0.2, 1),
    w1: matrix(hidden, dim),
    w2: matrix(dim, hidden),
    w3: matrix(hidden, dim),
  }));
  return {
    ...base,
    config: {
      ...base.config,
      dim,
      hiddenDim: hidden,
      nLayers,
      nHeads: heads,
      nKvHeads: kvHeads,
      headDim,
    },
    weights: {
      tokenEmbedding: values(vocab * dim, 1),
      layers,
      finalNorm: values(dim, 0.2, 1),
      output: matrix(vocab, dim),
      tiedEmbeddings: false,
    },
  };
}

Deno.test("sequential: a streamed model is quantized layer by layer, within 1.3 × (int4 model + one f32 layer), to the eager path's codes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeHfModel(wideModel(), dir, { dtype: "F16" });
    const format: FormatSpec = {
      id: "int4-g128",
      weights: "int4",
      group: 128,
      symmetric: false,
      options: {},
    };
    const quantize = async (model: LlamaModel) => {
      const stats: Record<string, number> = {};
      const q = await rtn.quantize(model, format, {}, {
        seed: 0,
        record: (s) => Object.assign(stats, s),
      });
      return { q, peak: stats.quantize_peak_bytes! };
    };
    const eagerModel = await loadHfModel(dir);
    const eager = await quantize(eagerModel);
    const streamedModel = await loadHfModel(dir, { stream: true });
    const streamed = await quantize(streamedModel).finally(() => streamedModel.stream!.close());

    assert.deepEqual(streamed.q.weights, eager.q.weights);
    const bytes = (b: ArrayBufferView[]) => b.reduce((n, x) => n + x.byteLength, 0);
    const quantized = weightBytes(streamed.q.weights);
    const floatLayer = bytes(layerBuffers(eagerModel.weights.layers[0]!));
    const floatModel = weightBytes(eagerModel.weights);
    assert.ok(floatModel > 3.5 * quantized, `f32 ${floatModel} B, int4 ${quantized} B`);
    const bound = 1.3 * (quantized + floatLayer);
    // All of the quantized model is held at the end, besides the last float layer at its peak.
    assert.ok(streamed.peak >= quantized + floatLayer / 2, `${streamed.peak} B`);
    assert.ok(streamed.peak <= bound, `streamed peak ${streamed.peak} B > ${bound} B`);
    // The eager load holds every float layer throughout: its figure says so.
    assert.ok(eager.peak >= floatModel + quantized - 2 * floatLayer, `${eager.peak} B`);
    assert.ok(eager.peak > bound, `eager peak ${eager.peak} B`);
    console.log(
      `f32 ${floatModel} B, int4 ${quantized} B, one f32 layer ${floatLayer} B; peak streamed ` +
        `${streamed.peak} B (${(streamed.peak / (quantized + floatLayer)).toFixed(3)} × int4 + ` +
        `layer), eager ${eager.peak} B`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
