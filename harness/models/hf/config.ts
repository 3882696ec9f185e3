/**
 * Reads a Hugging Face `config.json` for the Llama family (Llama, Mistral, Qwen2, Qwen3 causal
 * LMs) into quantbench's {@linkcode LlamaConfig}, with the per-architecture details the weights
 * depend on: which projections carry biases, whether queries and keys are RMS-normalised, and
 * whether the classifier is tied to the embedding. Both the transformers 4.x keys (`rope_theta`,
 * `rope_scaling`) and the 5.x ones (`rope_parameters`) are read.
 *
 * @module
 */
import type { LlamaConfig, RopeScaling } from "../../../core/model.ts";
import { ConfigError, UnsupportedModelError } from "../errors.ts";

/** `model_type`s this loader reads. */
export const HF_MODEL_TYPES = ["llama", "mistral", "qwen2", "qwen3"] as const;

/** One of {@linkcode HF_MODEL_TYPES}. */
export type HfModelType = typeof HF_MODEL_TYPES[number];

/** What a `config.json` says about a model. */
export interface HfModelConfig {
  config: LlamaConfig;
  modelType: HfModelType;
  tiedEmbeddings: boolean;
  /** q/k/v projections have biases (Qwen2 always; Llama and Qwen3 with `attention_bias`). */
  qkvBias: boolean;
  /** The output projection has a bias (Llama and Qwen3 with `attention_bias`). */
  outputBias: boolean;
  /** Queries and keys pass a per-head RMSNorm before RoPE (Qwen3). */
  qkNorm: boolean;
}

/** Dimensions above this are taken as corrupt rather than allocated. */
const MAX_DIM = 1 << 24;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parses a `config.json` object; `file` names it in errors. */
export function parseHfConfig(json: unknown, file: string): HfModelConfig {
  if (!isObject(json)) throw new ConfigError(file, "config.json is not a JSON object");
  const modelType = json.model_type;
  if (!(HF_MODEL_TYPES as readonly unknown[]).includes(modelType)) {
    throw new UnsupportedModelError(
      file,
      `model_type ${JSON.stringify(modelType)} is not supported; supported: ` +
        HF_MODEL_TYPES.join(", "),
    );
  }
  const type = modelType as HfModelType;
  const int = (key: string, fallback?: number): number => {
    const v = json[key] ?? fallback;
    if (!(Number.isSafeInteger(v) && (v as number) > 0 && (v as number) < MAX_DIM)) {
      throw new ConfigError(
        file,
        `"${key}" is ${JSON.stringify(json[key])}; expected a positive integer`,
      );
    }
    return v as number;
  };
  const num = (key: string, value: unknown, fallback: number): number => {
    const v = value ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new ConfigError(file, `"${key}" is ${JSON.stringify(value)}; expected a number > 0`);
    }
    return v;
  };
  const act = json.hidden_act ?? "silu";
  if (act !== "silu") {
    throw new UnsupportedModelError(
      file,
      `hidden_act ${JSON.stringify(act)} is not supported (SwiGLU with silu only)`,
    );
  }
  if (json.mlp_bias === true) {
    throw new UnsupportedModelError(file, `mlp_bias true is not supported`);
  }
  const partial = json.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw new UnsupportedModelError(
      file,
      `partial_rotary_factor ${JSON.stringify(partial)} is not supported (only 1)`,
    );
  }

  const dim = int("hidden_size");
  const nHeads = int("num_attention_heads");
  const nKvHeads = int("num_key_value_heads", nHeads);
  if (nHeads % nKvHeads !== 0) {
    throw new ConfigError(
      file,
      `num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`,
    );
  }
  if (json.head_dim == null && dim % nHeads !== 0) {
    throw new ConfigError(
      file,
      `hidden_size ${dim} is not a multiple of num_attention_heads ${nHeads}`,
    );
  }
  const headDim = json.head_dim == null ? dim / nHeads : int("head_dim");
  if (headDim % 2 !== 0) {
    throw new ConfigError(file, `head_dim ${headDim} is odd; RoPE needs pairs`);
  }

  const rope = rawRope(json, file);
  let maxSeqLen = int("max_position_embeddings", 2048);
  const window = json.sliding_window;
  const windowed = type === "mistral" ||
    ((type === "qwen2" || type === "qwen3") && json.use_sliding_window === true);
  if (windowed && window !== undefined && window !== null) {
    // Attention here is always full; limiting the context to the window keeps it exact.
    maxSeqLen = Math.min(maxSeqLen, int("sliding_window"));
  }
  const config: LlamaConfig = {
    dim,
    hiddenDim: int("intermediate_size"),
    nLayers: int("num_hidden_layers"),
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: int("vocab_size"),
    maxSeqLen,
    ropeTheta: num("rope_theta", json.rope_theta ?? rope?.rope_theta, 10000),
    normEps: num("rms_norm_eps", json.rms_norm_eps, 1e-6),
    ropeStyle: "half",
    architecture: type,
  };
  const scaling = ropeScaling(rope, file);
  if (scaling !== undefined) config.ropeScaling = scaling;
  const attentionBias = json.attention_bias === true;
  return {
    config,
    modelType: type,
    tiedEmbeddings: json.tie_word_embeddings === true,
    qkvBias: type === "qwen2" || ((type === "llama" || type === "qwen3") && attentionBias),
    outputBias: (type === "llama" || type === "qwen3") && attentionBias,
    qkNorm: type === "qwen3",
  };
}

function rawRope(json: Record<string, unknown>, file: string): Record<string, unknown> | undefined {
  const rope = json.rope_parameters ?? json.rope_scaling;
  if (rope === undefined || rope === null) return undefined;
  if (!isObject(rope)) {
    throw new ConfigError(file, `rope settings ${JSON.stringify(rope)} are not an object`);
  }
  return rope;
}

function ropeScaling(
  rope: Record<string, unknown> | undefined,
  file: string,
): RopeScaling | undefined {
  if (rope === undefined) return undefined;
  const type = rope.rope_type ?? rope.type ?? "default";
  const positive = (key: string): number => {
    const v = rope[key];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new ConfigError(
        file,
        `rope ${JSON.stringify(type)} needs "${key}" > 0, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  switch (type) {
    case "default":
      return undefined;
    case "linear":
      return { type: "linear", factor: positive("factor") };
    case "llama3": {
      const scaling: RopeScaling = {
        type: "llama3",
        factor: positive("factor"),
        lowFreqFactor: positive("low_freq_factor"),
        highFreqFactor: positive("high_freq_factor"),
        originalMaxPositions: positive("original_max_position_embeddings"),
      };
      if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
        throw new ConfigError(file, "rope llama3 needs high_freq_factor > low_freq_factor");
      }
      return scaling;
    }
    default:
      throw new UnsupportedModelError(
        file,
        `rope type ${JSON.stringify(type)} is not supported (default, linear, llama3)`,
      );
  }
}
