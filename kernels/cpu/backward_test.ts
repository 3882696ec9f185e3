import assert from "node:assert/strict";
import { dense, LINEAR_NAMES, type LlamaModel } from "../../core/model.ts";
import { dot, gradError, randomValues } from "./grad_check.ts";
import {
  blockGradients,
  lossAndGradients,
  type Objective,
  parameters,
  quantizeTokens,
  type TrainConfig,
  type TrainLayer,
  type TrainLinear,
  type TrainParams,
  trainParams,
} from "./backward.ts";
import { initFakeQuant } from "./fake_quant.ts";
import { CpuRunner } from "./backend.ts";
import { quantizeActivations } from "../formats/runtime_quant.ts";

const T = 5;

function tinyConfig(ropeStyle: "interleaved" | "half"): TrainConfig {
  // Query width 16 differs from the model width 8, as with Qwen3's explicit head_dim.
  return {
    dim: 8,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 4,
    vocabSize: 11,
    normEps: 1e-5,
    ropeTheta: 10,
    ropeStyle,
  };
}

/**
 * A random 2-layer model: layer 0 with q/k/v/o biases and q/k norms, layer 1 without; an untied
 * classifier unless `tied`.
 */
function tinyParams(c: TrainConfig, tied: boolean, seed = 40): TrainParams {
  let next = seed;
  const values = (n: number, scale = 0.5, offset = 0) => randomValues(n, next++, scale, offset);
  const linear = (rows: number, cols: number): TrainLinear => ({
    rows,
    cols,
    w: values(rows * cols),
  });
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  const hidden = 12;
  const layer = (extras: boolean): TrainLayer => ({
    attnNorm: values(c.dim, 0.2, 1),
    ffnNorm: values(c.dim, 0.2, 1),
    wq: linear(qDim, c.dim),
    wk: linear(kvDim, c.dim),
    wv: linear(kvDim, c.dim),
    wo: linear(c.dim, qDim),
    w1: linear(hidden, c.dim),
    w2: linear(c.dim, hidden),
    w3: linear(hidden, c.dim),
    ...(extras && {
      bq: values(qDim),
      bk: values(kvDim),
      bv: values(kvDim),
      bo: values(c.dim),
      qNorm: values(c.headDim, 0.2, 1),
      kNorm: values(c.headDim, 0.2, 1),
    }),
  });
  const params: TrainParams = {
    tokenEmbedding: values(c.vocabSize * c.dim, 1),
    layers: [layer(true), layer(false)],
    finalNorm: values(c.dim, 0.2, 1),
  };
  if (!tied) params.output = linear(c.vocabSize, c.dim);
  return params;
}

const TOKENS = [3, 7, 1, 3, 10];

function objectives(c: TrainConfig): [string, Objective][] {
  return [
    ["cross-entropy", { kind: "cross_entropy", targets: [7, 1, 3, 10, -1] }],
    ["KL to a teacher", { kind: "kl", teacher: randomValues(T * c.vocabSize, 99, 2) }],
  ];
}

/** Checks every element of every parameter not in `skip` against central differences. */
function assertModelGradients(
  c: TrainConfig,
  params: TrainParams,
  objective: Objective,
  skip: (name: string) => boolean = () => false,
): number {
  const { gradients } = lossAndGradients(c, params, TOKENS, objective);
  const loss = () => lossAndGradients(c, params, TOKENS, objective).loss;
  let checked = 0;
  for (const [name, value] of parameters(params)) {
    if (skip(name)) continue;
    const grad = gradients.get(name)!;
    assert.ok(grad.some((g) => g !== 0), `${name} has a zero gradient`);
    const error = gradError(loss, value, grad);
    assert.ok(error.relative < 1e-5, `${name}: relative error ${error.relative}`);
    checked++;
  }
  return checked;
}

for (const style of ["interleaved", "half"] as const) {
  for (const tied of [false, true]) {
    for (const [what, objective] of objectives(tinyConfig(style))) {
      Deno.test(
        `the whole model's ${what} gradient matches finite differences (RoPE ${style}, ` +
          `${tied ? "tied" : "untied"} classifier)`,
        () => {
          const c = tinyConfig(style);
          const params = tinyParams(c, tied);
          const checked = assertModelGradients(c, params, objective);
          // embedding, final norm, 9 + 6 extras in layer 0, 9 in layer 1, the untied classifier.
          assert.equal(checked, 2 + 15 + 9 + (tied ? 0 : 1));
        },
      );
    }
  }
}

Deno.test("one block's gradients (parameters and input) match finite differences", () => {
  const c = tinyConfig("half");
  const layer = tinyParams(c, false).layers[0]!;
  const x = randomValues(T * c.dim, 5);
  const r = randomValues(T * c.dim, 6);
  // The loss Σ y·r has the gradient r at the output.
  const { output, gradients, dx } = blockGradients(c, layer, x, () => r);
  const loss = () => dot(blockGradients(c, layer, x, () => r).output, r);
  assert.equal(dot(output, r), loss());
  assert.equal(gradients.size, 15);
  const named = parameters({
    tokenEmbedding: new Float64Array(0),
    layers: [layer],
    finalNorm: new Float64Array(0),
  });
  for (const [name, grad] of gradients) {
    const error = gradError(loss, named.get(`layers.0.${name}`)!, grad);
    assert.ok(error.relative < 1e-5, `${name}: relative error ${error.relative}`);
  }
  assert.ok(gradError(loss, x, dx).relative < 1e-5, "input");
});

Deno.test("with run-time Hadamard transforms (a rotated model's), the gradient matches finite differences", () => {
  const c = tinyConfig("half");
  const params = tinyParams(c, false);
  // q/k per head (4), the attention output (16) and the MLP's down input (12, a stored factor).
  for (const layer of params.layers) layer.hadamard = { qk: true, attention: true, down: true };
  const [, objective] = objectives(c)[0]!;
  assert.equal(assertModelGradients(c, params, objective), 2 + 15 + 9 + 1);
});

Deno.test("with fake-quantized linears, the other parameters' gradients match finite differences", () => {
  const c = tinyConfig("half");
  const params = tinyParams(c, false);
  for (const layer of params.layers) {
    for (const name of ["wo", "w2"] as const) {
      const lin = layer[name];
      lin.quant = initFakeQuant(lin.w, lin.rows, lin.cols, {
        bits: 3,
        group: 4,
        symmetric: true,
        channel: true,
      });
      lin.quant.channel!.set(randomValues(lin.cols, 50, 0.3, 1));
    }
  }
  const names = [...parameters(params).keys()];
  assert.ok(names.includes("layers.1.w2.scales") && names.includes("layers.0.wo.channel"));
  // Rounding is flat almost everywhere, so finite differences say nothing of the STE's gradients
  // (fake_quant_test.ts checks those); every smooth path must still agree.
  const quantized = (n: string) => /\.(wo|w2)(\.|$)/.test(n);
  const objective = objectives(c)[0]![1];
  assertModelGradients(c, params, objective, quantized);
  const { gradients } = lossAndGradients(c, params, TOKENS, objective);
  for (const n of names.filter(quantized)) {
    assert.ok(gradients.get(n)!.some((g) => g !== 0), `${n} has a zero gradient`);
  }
});

Deno.test("the training forward pass gives the CPU backend's logits", () => {
  const c = tinyConfig("interleaved");
  const p = tinyParams(c, false);
  const f32 = (a: Float64Array) => Float32Array.from(a);
  const mat = (l: TrainLinear) => dense(l.rows, l.cols, f32(l.w));
  const model: LlamaModel = {
    config: { ...c, hiddenDim: 12, nLayers: 2, maxSeqLen: 8 },
    weights: {
      tokenEmbedding: f32(p.tokenEmbedding),
      finalNorm: f32(p.finalNorm),
      output: mat(p.output!),
      tiedEmbeddings: false,
      layers: p.layers.map((l) => ({
        attnNorm: f32(l.attnNorm),
        ffnNorm: f32(l.ffnNorm),
        ...Object.fromEntries(LINEAR_NAMES.map((n) => [n, mat(l[n])])),
        ...Object.fromEntries(
          (["bq", "bk", "bv", "bo", "qNorm", "kNorm"] as const).flatMap((n) =>
            l[n] ? [[n, f32(l[n])]] : []
          ),
        ),
      })) as LlamaModel["weights"]["layers"],
    },
    tokenizer: { vocabSize: 11, bosId: 1, eosId: 2, encode: () => [], decode: () => "" },
  };
  const expected = new CpuRunner(model).forwardSync(TOKENS, 0);
  // Round-tripped through float32, the parameters are those of the model.
  const { logits } = lossAndGradients(c, trainParams(model), TOKENS, objectives(c)[0]![1]);
  for (let i = 0; i < logits.length; i++) {
    assert.ok(
      Math.abs(logits[i]! - expected[i]!) < 1e-4,
      `logit ${i}: ${logits[i]} vs ${expected[i]}`,
    );
  }
  assert.ok(dot(logits, logits) > 0);
});

Deno.test("backward: activation quantization of the tape is the runtime's (per token, absmax)", () => {
  const x = randomValues(3 * 16, 77, 2);
  const ours = quantizeTokens(x, 16, 4);
  const runtime = quantizeActivations(Float32Array.from(x), 16, "int4");
  ours.forEach((v, i) => assert.ok(Math.abs(v - runtime[i]!) < 1e-5, `${v} vs ${runtime[i]}`));
  // Each token's largest magnitude is a code (±7 steps).
  const amax = Math.max(...x.subarray(0, 16).map(Math.abs));
  assert.ok(ours.subarray(0, 16).some((v) => Math.abs(Math.abs(v) - amax) < 1e-12));
});
