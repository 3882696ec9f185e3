/**
 * LLM-QAT (Liu et al. 2023, "LLM-QAT: Data-Free Quantization Aware Training for Large Language
 * Models"; facebookresearch/LLM-QAT): quantization-aware training of the whole model by knowledge
 * distillation from the full-precision model, on data the full-precision model generates itself.
 *
 * - **Data** (the authors' `generate_data.py`): each sequence starts from one token (the authors
 *   walk through the vocabulary; here it is drawn uniformly from it with the suite seed), continues
 *   greedily until the sequence holds `3 + (i mod 3)` tokens (their outer loop `j = 3, 4, 5`, as
 *   `generate(max_length = j, do_sample = False)`), then samples to `seq_len` tokens from the
 *   teacher's distribution as Hugging Face `generate(do_sample = True)` does by default: top-k
 *   (`top_k` 50), temperature 1. The sequences can be written to a JSON file (`export`) so that the
 *   PyTorch reference (`fixtures/methods/llmqat_reference.py`) trains on the same data.
 * - **Loss**: KL(teacher ‖ student) of the next-token distributions at every position (the authors'
 *   `kl_div(log_softmax(student), softmax(teacher))`, temperature 1). The authors' `batchmean`
 *   sums over positions; here it is the mean over positions and sequences of a batch, a constant
 *   factor that AdamW's update does not see (up to its ε).
 * - **Quantizers** (the authors' `QuantizeLinear`): weights fake-quantized with the format's own
 *   round-to-nearest (`int4` per output channel, symmetric: the authors' default; scales rounded
 *   to the format's scale type), scales taken
 *   afresh from the current weights at every step (their dynamic max scaling, not learned); the
 *   inputs of every linear per token (`activations: int<b>`, the run-time rule), straight-through
 *   gradients (`kernels/cpu/backward.ts`, `fake_quant.ts`). The KV cache (`kv_cache:`) is trained
 *   as it runs (`kv_quantizer: format`, the default: the format's KIVI groups at attention's
 *   input, every entry quantized, no residual window) or with the authors' rule
 *   (`kv_quantizer: per_token`: keys and values per token, symmetric, before RoPE, `kv_cache`'s
 *   bits). The authors' rule is not what the run-time cache does: on stories260K at W4A8KV4 it
 *   starts training from a KL of 1.7 where the deployed model (RTN) has 0.15, and the trained
 *   model then does worse than RTN; hence the default.
 * - **Optimizer**: AdamW on every weight (embedding, norms, linears), weight decay 0, cosine decay
 *   of the learning rate without warm-up (`run_train.sh`: lr 2e-5, one epoch, batch 1 on each of
 *   8 GPUs, sequences of 2,048 tokens). A 2-core CPU cannot run that: the defaults here are 8
 *   sequences of 256 tokens, batch 1, one epoch (8 steps).
 *
 * The result: the trained weights quantized by the format's RTN (the quantizer trained with), the
 * embedding, norms and classifier as trained, in float32.
 *
 * @module
 */
import type { LinearName, LlamaModel, Matrix } from "../../core/model.ts";
import { dense, LINEAR_NAMES } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { randomInt, seededRandom } from "../../core/random.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import { runtimeQuantization, runtimeUnsupported } from "../../kernels/formats/runtime_quant.ts";
import { cpuBackend } from "../../kernels/cpu/backend.ts";
import { AdamW } from "../../kernels/cpu/adamw.ts";
import {
  lossAndGradients,
  parameters,
  type RuntimeFakeQuant,
  type TrainParams,
  trainParams,
} from "../../kernels/cpu/backward.ts";
import { type FakeQuantConfig, initFakeQuant } from "../../kernels/cpu/fake_quant.ts";
import { klToTeacher } from "../../kernels/cpu/grad_ops.ts";
import type { Method } from "./method.ts";
import { quantizeMatrix } from "./rtn.ts";
import { withRuntime } from "./runtime.ts";

/** Options and their defaults (see the module doc for the authors' values). */
export const LLM_QAT_OPTIONS = {
  samples: 8,
  seq_len: 256,
  top_k: 50,
  /** Optimizer steps; 0: one epoch, `ceil(samples / batch)`. */
  steps: 0,
  batch: 1,
  lr: 2e-5,
  weight_decay: 0,
  /** A JSON file to write the generated sequences to; empty: none. */
  export: "",
  /** How the KV cache is fake-quantized: `format` (as it runs) or `per_token` (the authors'). */
  kv_quantizer: "format",
};

/** Thrown for LLM-QAT options or formats it cannot run with. */
export class LlmQatError extends Error {
  override name = "LlmQatError";
}

/** The checked settings of one run. */
export interface LlmQatSettings {
  samples: number;
  seqLen: number;
  topK: number;
  steps: number;
  batch: number;
  lr: number;
  weightDecay: number;
  export: string;
  kvQuantizer: "format" | "per_token";
}

/** `options` (over the defaults) as settings; throws an {@linkcode LlmQatError} for bad values. */
export function llmQatSettings(options: Record<string, unknown>): LlmQatSettings {
  const o = { ...LLM_QAT_OPTIONS, ...options };
  const positive = (name: string, v: unknown, min = 1): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      throw new LlmQatError(
        `llm_qat option ${name} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  const samples = positive("samples", o.samples);
  const seqLen = positive("seq_len", o.seq_len, 6);
  const topK = positive("top_k", o.top_k);
  const batch = positive("batch", o.batch);
  const steps = positive("steps", o.steps, 0) || Math.ceil(samples / batch);
  if (typeof o.lr !== "number" || !(o.lr > 0)) {
    throw new LlmQatError(
      `llm_qat option lr must be a positive number, got ${JSON.stringify(o.lr)}`,
    );
  }
  if (typeof o.weight_decay !== "number" || !(o.weight_decay >= 0)) {
    throw new LlmQatError(
      `llm_qat option weight_decay must be a number ≥ 0, got ${JSON.stringify(o.weight_decay)}`,
    );
  }
  if (typeof o.export !== "string") {
    throw new LlmQatError(`llm_qat option export must be a path, got ${JSON.stringify(o.export)}`);
  }
  if (o.kv_quantizer !== "format" && o.kv_quantizer !== "per_token") {
    throw new LlmQatError(
      `llm_qat option kv_quantizer must be "format" or "per_token", got ${
        JSON.stringify(o.kv_quantizer)
      }`,
    );
  }
  return {
    kvQuantizer: o.kv_quantizer,
    samples,
    seqLen,
    topK,
    steps,
    batch,
    lr: o.lr,
    weightDecay: o.weight_decay,
    export: o.export,
  };
}

/** Bits of a run-time integer element (`int8` → 8), or undefined for none. */
function runtimeBits(name: string | undefined, what: string): number | undefined {
  if (name === undefined) return undefined;
  const m = /^int([2-8])$/.exec(name);
  if (!m) throw new LlmQatError(`llm_qat trains integer ${what} only, got "${name}"`);
  return Number(m[1]);
}

/** The weight fake quantizer and run-time fake quantization `format` asks for; throws why not. */
function trainingQuant(
  format: FormatSpec,
  kvQuantizer: LlmQatSettings["kvQuantizer"],
): { weights: FakeQuantConfig; runtime?: RuntimeFakeQuant } {
  const element = elementFormats.get(format.weights);
  if (element.kind !== "int") {
    throw new LlmQatError(
      `llm_qat trains integer weights; format "${format.id}" is ${format.weights}`,
    );
  }
  const config = element.intConfig(format);
  if (config.group < 0 || config.restricted) {
    throw new LlmQatError(
      `llm_qat fake-quantizes per channel or per group on the full code range; format ` +
        `"${format.id}" is ${config.group < 0 ? "per tensor" : "restricted"}`,
    );
  }
  // Scales rounded as the format stores them (f16 unless it says otherwise), so that the
  // quantizer trained with is the one stored.
  const weights: FakeQuantConfig = {
    bits: config.bits,
    group: config.group,
    symmetric: config.symmetric,
    scaleDtype: config.scaleDtype ?? "f16",
  };
  const runtime = runtimeQuantization(format);
  if (runtime === undefined) return { weights };
  const out: RuntimeFakeQuant = {
    activationBits: runtimeBits(runtime.activations, "activations"),
  };
  const kv = runtime.kvCache;
  if (kv !== undefined) {
    if (kvQuantizer === "per_token") out.kvBits = runtimeBits(kv.format, "KV caches");
    else out.kvCache = kv;
  }
  return { weights, runtime: out };
}

/** Why `llm_qat` cannot produce `format`, or undefined when it can. */
function unsupported(format: FormatSpec): string | undefined {
  const why = runtimeUnsupported(format) ?? elementFormats.get(format.weights).unsupported(format);
  if (why !== undefined) return why;
  try {
    trainingQuant(format, "per_token");
  } catch (e) {
    if (e instanceof LlmQatError) return e.message;
    throw e;
  }
  return undefined;
}

/** How {@linkcode generateSequences} samples. */
export interface GenerationSettings {
  count: number;
  length: number;
  topK: number;
  seed: number;
}

/** Index of a draw from the softmax of the `k` largest logits of `row` (temperature 1). */
function sampleTopK(row: Float32Array, k: number, random: () => number): number {
  const order = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]! || a - b).slice(0, k);
  const max = row[order[0]!]!;
  const weights = order.map((i) => Math.exp(row[i]! - max));
  let u = random() * weights.reduce((s, w) => s + w, 0);
  for (let j = 0; j < order.length; j++) {
    u -= weights[j]!;
    if (u < 0) return order[j]!;
  }
  return order[order.length - 1]!;
}

/** Index of the largest value (the first on ties). */
function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/**
 * Sequences generated by `model` (CPU backend) as LLM-QAT's data: a uniform first token, greedy
 * until `3 + (i mod 3)` tokens, then top-k sampling (see the module doc); seeded by `seed`.
 */
export async function generateSequences(
  model: LlamaModel,
  settings: GenerationSettings,
): Promise<number[][]> {
  const random = seededRandom(settings.seed, "llm_qat generation");
  const runner = await cpuBackend.load(model);
  const V = model.config.vocabSize;
  const out: number[][] = [];
  try {
    for (let i = 0; i < settings.count; i++) {
      const seq = [randomInt(random, V)];
      const greedy = 3 + (i % 3);
      runner.reset();
      while (seq.length < settings.length) {
        const logits = await runner.forward([seq[seq.length - 1]!], seq.length - 1);
        seq.push(
          seq.length < greedy ? argmax(logits) : sampleTopK(logits, settings.topK, random),
        );
      }
      out.push(seq);
    }
  } finally {
    runner.dispose();
  }
  return out;
}

/** The model with every layer in memory (a streamed model's layers read). */
async function wholeModel(model: LlamaModel): Promise<LlamaModel> {
  const { stream } = model;
  if (stream === undefined) return model;
  const layers = [];
  for (let i = 0; i < stream.count; i++) layers.push(await stream.read(i));
  return { ...model, weights: { ...model.weights, layers }, stream: undefined };
}

/** Progress of {@linkcode llmQatTrain}: after each step, its mean KL and learning rate. */
export type LlmQatProgress = (step: number, loss: number, lr: number) => void;

/**
 * Quantization-aware training of `params` (weights fake-quantized by `weights`, see
 * {@linkcode qatParams}) against the
 * teacher logits of `sequences`; returns each step's mean KL (before its update).
 */
export function llmQatTrain(
  model: LlamaModel,
  params: TrainParams,
  weights: FakeQuantConfig,
  sequences: readonly number[][],
  teacher: readonly Float32Array[],
  settings: Pick<LlmQatSettings, "steps" | "batch" | "lr" | "weightDecay">,
  onStep?: LlmQatProgress,
): number[] {
  const adamw = new AdamW({ lr: settings.lr, weightDecay: settings.weightDecay });
  const losses: number[] = [];
  for (let step = 0; step < settings.steps; step++) {
    refreshScales(params, weights);
    // Hugging Face's cosine schedule without warm-up, over all steps.
    const lr = settings.lr * 0.5 * (1 + Math.cos((Math.PI * step) / settings.steps));
    const sum = new Map<string, Float64Array>();
    let loss = 0;
    for (let b = 0; b < settings.batch; b++) {
      const index = (step * settings.batch + b) % sequences.length;
      const result = lossAndGradients(model.config, params, sequences[index]!, {
        kind: "kl",
        teacher: teacher[index]!,
      });
      loss += result.loss / settings.batch;
      for (const [name, g] of result.gradients) {
        const acc = sum.get(name);
        if (acc === undefined) sum.set(name, g.map((v) => v / settings.batch));
        else for (let i = 0; i < g.length; i++) acc[i]! += g[i]! / settings.batch;
      }
    }
    // The scales follow the weights (dynamic max scaling); everything else learns.
    const trainable = new Map([...parameters(params)].filter(([n]) => !n.endsWith(".scales")));
    adamw.step(trainable, sum, lr);
    losses.push(loss);
    onStep?.(step, loss, lr);
  }
  refreshScales(params, weights);
  return losses;
}

/** Re-derives every fake quantizer's scales and zero points from its current weights. */
function refreshScales(params: TrainParams, config: FakeQuantConfig): void {
  for (const layer of params.layers) {
    for (const name of LINEAR_NAMES) {
      const lin = layer[name];
      if (lin.quant === undefined) continue;
      const fresh = initFakeQuant(lin.w, lin.rows, lin.cols, config);
      lin.quant.scales.set(fresh.scales);
      lin.quant.zeros.set(fresh.zeros);
    }
  }
}

/** Mean KL(teacher ‖ model) of `model`'s next-token distributions over `sequences` (CPU). */
export async function meanKl(
  model: LlamaModel,
  sequences: readonly number[][],
  teacher: readonly Float32Array[],
): Promise<number> {
  const runner = await cpuBackend.load(model);
  try {
    let total = 0;
    for (let i = 0; i < sequences.length; i++) {
      runner.reset();
      const logits = await runner.forward(sequences[i]!, 0);
      total += klToTeacher(Float64Array.from(logits), teacher[i]!, model.config.vocabSize).loss;
    }
    return total / sequences.length;
  } finally {
    runner.dispose();
  }
}

/** The teacher's logits `[T][vocab]` of each sequence (CPU backend, float32). */
export async function teacherLogits(
  model: LlamaModel,
  sequences: readonly number[][],
): Promise<Float32Array[]> {
  const runner = await cpuBackend.load(model);
  try {
    const out: Float32Array[] = [];
    for (const seq of sequences) {
      runner.reset();
      out.push(await runner.forward(seq, 0));
    }
    return out;
  } finally {
    runner.dispose();
  }
}

/** `params`' weights as a model: linears quantized into `format`, the rest in float32. */
export function quantizedModel(
  model: LlamaModel,
  params: TrainParams,
  format: FormatSpec,
): LlamaModel {
  const f32 = (a: Float64Array) => Float32Array.from(a);
  const layers = params.layers.map((layer) => {
    const out = {
      attnNorm: f32(layer.attnNorm),
      ffnNorm: f32(layer.ffnNorm),
    } as Record<string, unknown>;
    for (const name of LINEAR_NAMES) {
      const lin = layer[name];
      out[name] = quantizeMatrix(dense(lin.rows, lin.cols, f32(lin.w)), format);
    }
    for (const name of ["bq", "bk", "bv", "bo", "qNorm", "kNorm"] as const) {
      const v = layer[name];
      if (v) out[name] = f32(v);
    }
    return out as unknown as LlamaModel["weights"]["layers"][number];
  });
  const tokenEmbedding = f32(params.tokenEmbedding);
  const { vocabSize: V, dim } = model.config;
  const output: Matrix = params.output
    ? dense(params.output.rows, params.output.cols, f32(params.output.w))
    : dense(V, dim, tokenEmbedding);
  return withRuntime({
    ...model,
    weights: { ...model.weights, tokenEmbedding, finalNorm: f32(params.finalNorm), layers, output },
  }, format);
}

/**
 * `model`'s weights as trainable parameters with the fake quantizers `format` asks for, and the
 * weights' quantizer.
 */
export function qatParams(
  model: LlamaModel,
  format: FormatSpec,
  kvQuantizer: LlmQatSettings["kvQuantizer"] = "format",
): { params: TrainParams; weights: FakeQuantConfig } {
  const quant = trainingQuant(format, kvQuantizer);
  const params = trainParams(model, (_l: number, _n: LinearName) => quant.weights);
  if (quant.runtime !== undefined) params.runtime = quant.runtime;
  return { params, weights: quant.weights };
}

/** Bytes of every array of `params` (weights, scales) for the memory meter. */
function paramBytes(params: TrainParams): number {
  return [...parameters(params).values()].reduce((s, a) => s + a.byteLength, 0);
}

/** LLM-QAT: data-free quantization-aware training by self-distillation. */
export const llmQat: Method = {
  name: "llm_qat",
  description: "LLM-QAT: quantization-aware training by distillation on self-generated data",
  options: LLM_QAT_OPTIONS,
  unsupported,
  checkOptions: (options) => void llmQatSettings(options),
  async quantize(input, format, options, ctx): Promise<LlamaModel> {
    const settings = llmQatSettings(options);
    const model = await wholeModel(input);
    const sequences = await generateSequences(model, {
      count: settings.samples,
      length: settings.seqLen,
      topK: settings.topK,
      seed: ctx.seed,
    });
    if (settings.export !== "") {
      await Deno.writeTextFile(
        settings.export,
        JSON.stringify({ seed: ctx.seed, top_k: settings.topK, sequences }),
      );
    }
    const teacher = await teacherLogits(model, sequences);
    const { params, weights } = qatParams(model, format, settings.kvQuantizer);
    llmQatTrain(
      model,
      params,
      weights,
      sequences,
      teacher,
      settings,
      (step, loss, lr) =>
        console.error(
          `llm_qat: step ${step + 1}/${settings.steps} KL ${loss.toFixed(5)} lr ${
            lr.toExponential(3)
          }`,
        ),
    );
    // Held at once: the teacher's logits, the parameters, two gradient copies (a pass's and the
    // batch's sum) and AdamW's two moments.
    const peak = teacher.reduce((s, t) => s + t.byteLength, 0) + 5 * paramBytes(params);
    ctx.record?.({ quantize_peak_bytes: peak });
    return quantizedModel(model, params, format);
  },
};
