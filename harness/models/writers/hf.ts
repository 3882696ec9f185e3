/**
 * Writes a loaded or quantized model as a Hugging Face folder that transformers and quantbench
 * load: `config.json` (Llama, Mistral, Qwen2 or Qwen3), `model.safetensors` (F32, F16 or BF16;
 * quantized weights are stored dequantized, as their float values), and the tokenizer
 * (a Hugging Face tokenizer's own files verbatim, otherwise `tokenizer.json` built from the
 * vocabulary). q/k rows are permuted to the half-split RoPE order Hugging Face uses.
 *
 * @module
 */
import { join } from "node:path";
import type { LlamaModel, Matrix } from "../../../core/model.ts";
import { HfTokenizer } from "../tokenizer_hf.ts";
import { reorderRows, reorderVector } from "./rope_order.ts";
import { hfTokenizerFiles } from "./hf_tokenizer.ts";
import {
  type SafetensorsEntry,
  type SafetensorsWriteDtype,
  writeSafetensors,
} from "./safetensors.ts";
import { exportArchitecture, modelVocabulary, toDense } from "./export.ts";
import { UnsupportedModelError } from "../errors.ts";

/** Options of {@linkcode writeHfModel}. */
export interface HfWriteOptions {
  /** Stored element type (default F32). */
  dtype?: SafetensorsWriteDtype;
  /**
   * The stored tensors of one transformer linear (`model.layers.0.self_attn.q_proj`; q/k rows
   * already in the half-split order), for quantized layouts; undefined stores its float weight.
   */
  linear?: (module: string, m: Matrix) => SafetensorsEntry[] | undefined;
  /** `quantization_config` of `config.json`. */
  quantizationConfig?: Record<string, unknown>;
  /** Further files of the folder, by name (e.g. `quantize_config.json`). */
  files?: Record<string, string>;
}

const CLASS_NAMES = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
} as const;

const TORCH_DTYPES = { F32: "float32", F16: "float16", BF16: "bfloat16" } as const;

function ropeScalingJson(model: LlamaModel, file: string): Record<string, unknown> | null {
  const s = model.config.ropeScaling;
  if (s === undefined) return null;
  switch (s.type) {
    case "linear":
      return { rope_type: "linear", type: "linear", factor: s.factor };
    case "llama3":
      return {
        rope_type: "llama3",
        type: "llama3",
        factor: s.factor,
        low_freq_factor: s.lowFreqFactor,
        high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalMaxPositions,
      };
    case "factors":
      throw new UnsupportedModelError(
        file,
        "RoPE frequency factors (llama.cpp rope_freqs) have no config.json equivalent",
      );
  }
}

/** Writes `model` into folder `dir` (created if needed). */
export async function writeHfModel(
  model: LlamaModel,
  dir: string,
  options: HfWriteOptions = {},
): Promise<void> {
  const dtype = options.dtype ?? "F32";
  const c = model.config;
  const w = model.weights;
  const arch = exportArchitecture(model);
  const configPath = join(dir, "config.json");
  const anyBias = w.layers.some((l) => l.bq || l.bk || l.bv || l.bo);
  const tied = w.output.kind === "dense" && w.output.data === w.tokenEmbedding;
  const config: Record<string, unknown> = {
    architectures: [CLASS_NAMES[arch]],
    model_type: arch,
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    rope_scaling: ropeScalingJson(model, configPath),
    hidden_act: "silu",
    tie_word_embeddings: tied,
    torch_dtype: TORCH_DTYPES[dtype],
    bos_token_id: model.tokenizer.bosId,
    eos_token_id: model.tokenizer.eosId,
  };
  if (arch === "llama" || arch === "qwen3") config.attention_bias = anyBias;
  if (arch === "mistral") config.sliding_window = null;
  if (arch === "qwen2" || arch === "qwen3") config.use_sliding_window = false;

  const entries: SafetensorsEntry[] = [];
  const mat = (name: string, m: Matrix) => {
    const custom = options.linear?.(name.replace(/\.weight$/, ""), m);
    if (custom !== undefined) {
      entries.push(...custom);
      return;
    }
    const d = toDense(m);
    entries.push({ name, shape: [d.rows, d.cols], data: d.data });
  };
  const vec = (name: string, v: Float32Array) => entries.push({ name, shape: [v.length], data: v });
  const half = (m: Matrix, heads: number) =>
    reorderRows(options.linear ? m : toDense(m), heads, c.headDim, c.ropeStyle, "half");
  const halfVec = (v: Float32Array, heads: number) =>
    reorderVector(v, heads, c.headDim, c.ropeStyle, "half");
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  entries.push({
    name: "model.embed_tokens.weight",
    shape: [c.vocabSize, c.dim],
    data: w.tokenEmbedding,
  });
  w.layers.forEach((layer, l) => {
    const p = `model.layers.${l}.`;
    vec(p + "input_layernorm.weight", layer.attnNorm);
    mat(p + "self_attn.q_proj.weight", half(layer.wq, c.nHeads));
    mat(p + "self_attn.k_proj.weight", half(layer.wk, c.nKvHeads));
    mat(p + "self_attn.v_proj.weight", layer.wv);
    mat(p + "self_attn.o_proj.weight", layer.wo);
    // Architectures with attention_bias have all four biases; absent ones are zero.
    if (anyBias) {
      vec(p + "self_attn.q_proj.bias", halfVec(layer.bq ?? new Float32Array(qDim), c.nHeads));
      vec(p + "self_attn.k_proj.bias", halfVec(layer.bk ?? new Float32Array(kvDim), c.nKvHeads));
      vec(p + "self_attn.v_proj.bias", layer.bv ?? new Float32Array(kvDim));
      if (arch !== "qwen2") vec(p + "self_attn.o_proj.bias", layer.bo ?? new Float32Array(c.dim));
    }
    if (layer.qNorm && layer.kNorm) {
      vec(p + "self_attn.q_norm.weight", halfVec(layer.qNorm, 1));
      vec(p + "self_attn.k_norm.weight", halfVec(layer.kNorm, 1));
    }
    vec(p + "post_attention_layernorm.weight", layer.ffnNorm);
    mat(p + "mlp.gate_proj.weight", layer.w1);
    mat(p + "mlp.down_proj.weight", layer.w2);
    mat(p + "mlp.up_proj.weight", layer.w3);
  });
  vec("model.norm.weight", w.finalNorm);
  if (!tied) {
    const d = toDense(w.output);
    entries.push({ name: "lm_head.weight", shape: [d.rows, d.cols], data: d.data });
  }
  if (options.quantizationConfig) config.quantization_config = options.quantizationConfig;

  const tokenizer = model.tokenizer instanceof HfTokenizer
    ? model.tokenizer.files
    : hfTokenizerFiles(modelVocabulary(model, dir), dir);
  await Deno.mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, "model.safetensors"), entries, dtype, { format: "pt" });
  await Deno.writeTextFile(configPath, JSON.stringify(config, null, 2) + "\n");
  await Deno.writeTextFile(
    join(dir, "tokenizer.json"),
    JSON.stringify(tokenizer.tokenizer, null, 2) + "\n",
  );
  await Deno.writeTextFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify(tokenizer.config, null, 2) + "\n",
  );
  if (tokenizer.chatTemplate !== undefined) {
    await Deno.writeTextFile(join(dir, "chat_template.jinja"), tokenizer.chatTemplate);
  }
  for (const [name, text] of Object.entries(options.files ?? {})) {
    await Deno.writeTextFile(join(dir, name), text);
  }
}
