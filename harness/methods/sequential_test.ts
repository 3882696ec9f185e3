import assert from "node:assert/strict";
import {
  firstReader,
  groupsOf,
  type LinearGroup,
  quantizeLayers,
  SequentialCalibrationError,
} from "./sequential.ts";
import { CalibrationBlock } from "./calibration.ts";
import { tinyModel } from "../models/testing.ts";
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
