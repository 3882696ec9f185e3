import assert from "node:assert/strict";
import {
  BLOCK_OUTPUT,
  blockShape,
  type BlockStep,
  blockSteps,
  hadamardSize,
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

const rotated = blockSteps(
  blockShape(layer({ hadamard: { qk: true, attention: true, down: true } })),
);

Deno.test("graph: a rotated layer's Hadamard steps sit after RoPE and before wo and w2", () => {
  const at = (op: string, value: string) =>
    rotated.findIndex((s) => s.op === op && stepInputs(s).includes(value as "q"));
  assert.equal(rotated.filter((s) => s.op === "hadamard").length, 5);
  assert.ok(at("rope", "k") < at("hadamard", "q") && at("hadamard", "k") < at("attention", "k"));
  assert.ok(
    at("attention", "q") < at("hadamard", "att") && at("hadamard", "att") < at("linear", "att"),
  );
  assert.ok(
    at("swiglu", "gate") < at("hadamard", "mid") && at("hadamard", "mid") < at("linear", "mid"),
  );
  // In place: taps and groups are a plain block's; the producer of `att` is still attention.
  assert.deepEqual(linearInputs(rotated), linearInputs(llama));
  assert.deepEqual(linearGroups(rotated), linearGroups(llama));
  const c = { dim: 64, hiddenDim: 172, nHeads: 8, nKvHeads: 4, headDim: 8 };
  const sizes = rotated.flatMap((s) => s.op === "hadamard" ? [hadamardSize(c, s)] : []);
  assert.deepEqual(sizes, [8, 8, 8, 64, 172]);
  const some = blockSteps(
    blockShape(layer({ hadamard: { qk: false, attention: false, down: true } })),
  );
  assert.deepEqual(some.filter((s) => s.op === "hadamard"), [{
    op: "hadamard",
    value: "mid",
    block: "row",
  }]);
});

Deno.test("graph: every value is written before it is read, by one step", () => {
  for (const steps of [llama, qwen2, qwen3, rotated]) {
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
