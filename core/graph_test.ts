import assert from "node:assert/strict";
import {
  BLOCK_OUTPUT,
  blockShape,
  type BlockStep,
  blockSteps,
  linearGroups,
  linearInputs,
  modelGraph,
  producerIndex,
  stepInputs,
  stepOutput,
} from "./graph.ts";
import { dense, type LayerWeights } from "./model.ts";

/** A layer of zero weights (dim 4) with the optional tensors asked for. */
function layer(extra: Partial<LayerWeights> = {}): LayerWeights {
  const m = dense(4, 4, new Float32Array(16));
  const norm = new Float32Array(4);
  return {
    attnNorm: norm,
    ffnNorm: norm,
    wq: m,
    wk: m,
    wv: m,
    wo: m,
    w1: m,
    w2: m,
    w3: m,
    ...extra,
  };
}

const bias = new Float32Array(4);
const llama = blockSteps(blockShape(layer()));
const qwen2 = blockSteps(blockShape(layer({ bq: bias, bk: bias, bv: bias })));
const qwen3 = blockSteps(blockShape(layer({ qNorm: bias, kNorm: bias })));

Deno.test("graph: a Llama block's steps, taps and groups", () => {
  assert.deepEqual(llama.map((s) => s.op), [
    "rmsnorm",
    "linear",
    "linear",
    "linear",
    "rope",
    "rope",
    "attention",
    "linear",
    "add",
    "rmsnorm",
    "linear",
    "linear",
    "swiglu",
    "linear",
    "add",
  ]);
  assert.deepEqual(
    Object.fromEntries(linearInputs(llama)),
    { wq: "xb", wk: "xb", wv: "xb", wo: "att", w1: "fb", w3: "fb", w2: "mid" },
  );
  assert.deepEqual(linearGroups(llama), [["wq", "wk", "wv"], ["wo"], ["w1", "w3"], ["w2"]]);
  assert.ok(llama.every((s) => s.op !== "linear" || s.bias === undefined));
  assert.equal(stepOutput(llama.at(-1)!), BLOCK_OUTPUT);
});

Deno.test("graph: Qwen2's biases sit on their linears; Qwen3's head norms precede RoPE", () => {
  const biases = (steps: BlockStep[]) =>
    steps.flatMap((s) => s.op === "linear" && s.bias ? [[s.weight, s.bias]] : []);
  assert.deepEqual(biases(qwen2), [["wq", "bq"], ["wk", "bk"], ["wv", "bv"]]);
  assert.deepEqual(biases(blockSteps({ biases: true, qkNorm: false })), biases(qwen2));
  assert.deepEqual(
    biases(blockSteps(blockShape(layer({ bq: bias, bk: bias, bv: bias, bo: bias })))).at(-1),
    ["wo", "bo"],
  );
  assert.deepEqual(qwen3.slice(4, 8), [
    { op: "head_rmsnorm", value: "q", weight: "qNorm", heads: "query" },
    { op: "head_rmsnorm", value: "k", weight: "kNorm", heads: "kv" },
    { op: "rope", value: "q", heads: "query" },
    { op: "rope", value: "k", heads: "kv" },
  ]);
  // Neither changes where a linear's input is tapped or how they group.
  for (const steps of [qwen2, qwen3]) {
    assert.deepEqual(linearInputs(steps), linearInputs(llama));
    assert.deepEqual(linearGroups(steps), linearGroups(llama));
  }
});

Deno.test("graph: every value is written before it is read, by one step", () => {
  for (const steps of [llama, qwen2, qwen3]) {
    const written = new Set(["x"]);
    for (const s of steps) {
      for (const v of stepInputs(s)) assert.ok(written.has(v), `${v} read before written`);
      written.add(stepOutput(s));
    }
    assert.equal(producerIndex(steps, "x"), -1);
    assert.equal(steps[producerIndex(steps, "att")]!.op, "attention");
    assert.equal(steps[producerIndex(steps, "mid")]!.op, "swiglu");
    assert.deepEqual(stepInputs(steps[producerIndex(steps, "h")]!), ["x", "attnOut"]);
  }
});

Deno.test("modelGraph: each layer's own steps between the embedding and the head", () => {
  const m = dense(4, 4, new Float32Array(16));
  const graph = modelGraph({
    tokenEmbedding: new Float32Array(16),
    layers: [layer(), layer({ bq: new Float32Array(4), qNorm: new Float32Array(4) })],
    finalNorm: new Float32Array(4),
    output: m,
    tiedEmbeddings: true,
  });
  assert.equal(graph.blocks.length, 2);
  assert.deepEqual(graph.blocks[0], blockSteps(blockShape(layer())));
  assert.ok(graph.blocks[1]!.some((s) => s.op === "head_rmsnorm"));
  assert.ok(!graph.blocks[0]!.some((s) => s.op === "head_rmsnorm"));
  assert.deepEqual([graph.embedding, graph.finalNorm, graph.head, graph.tied], [
    "tokenEmbedding",
    "finalNorm",
    "output",
    true,
  ]);
});
