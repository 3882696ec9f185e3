/**
 * The backend-independent Llama-family model: configuration, tokenizer and weights. Loaders produce
 * it, quantization methods transform it, backends execute it.
 *
 * @module
 */
import type { CodedMatrix } from "./coded.ts";
import type { QuantizedBase } from "./matrix.ts";

/** Architecture hyper-parameters of a Llama-family decoder. */
export interface LlamaConfig {
  /** Model (residual) width. */
  dim: number;
  /** SwiGLU inner width. */
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  /** Key/value heads (grouped-query attention when fewer than `nHeads`). */
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Longest context the model was trained for. */
  maxSeqLen: number;
  /**
   * Whether longer contexts than `maxSeqLen` run anyway, with a warning, as llama.cpp runs a GGUF
   * past its `context_length` (set by the GGUF loader).
   */
  extendableContext?: boolean;
  ropeTheta: number;
  normEps: number;
  /**
   * Which elements RoPE rotates together: `interleaved` pairs (x[2i], x[2i+1]) as llama2.c and
   * GGUF store them, or `half` pairs (x[i], x[i + d/2]) as Hugging Face checkpoints do.
   */
  ropeStyle: "interleaved" | "half";
  /** RoPE frequency scaling; absent for plain RoPE. */
  ropeScaling?: RopeScaling;
  /** The source's architecture name (`llama`, `mistral`, `qwen2`, `qwen3`), when known. */
  architecture?: string;
}

/**
 * How RoPE's inverse frequencies `θ^(−2i/d)` are rescaled for long contexts: `linear` divides all
 * by `factor` (positions interpolated); `llama3` divides the low frequencies by `factor` and blends
 * the middle band (Hugging Face `rope_type: llama3`); `factors` divides frequency `i` by
 * `factors[i]` (llama.cpp's `rope_freqs` tensor, which its converter writes for llama3 models).
 */
export type RopeScaling =
  | { type: "linear"; factor: number }
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  }
  | { type: "factors"; factors: Float32Array };

/** A dense row-major matrix `[rows = out features][cols = in features]` in float32. */
export interface DenseMatrix {
  kind: "dense";
  rows: number;
  cols: number;
  data: Float32Array;
}

/**
 * A linear layer's weight: dense float32, integer codes + scales (`int`), or rows of codec blocks
 * (`coded`: GGUF blocks, MX, NVFP4, FP8 …). Both quantized shapes carry named side tensors
 * ({@linkcode QuantizedBase}); the format module that decodes one is found from its `kind` and
 * codec (`formatOf` in `kernels/formats/formats.ts`).
 */
export type Matrix = DenseMatrix | QuantizedMatrix | CodedMatrix;

/**
 * A `[rows][cols]` weight matrix as integer codes: `w[r][c] = scales[r·G + g] · (codes[r·cols + c] −
 * zero)` with `g = floor(c / groupSize)` and `zero = zeros[r·G + g]` (asymmetric) or `2^(bits−1)`.
 */
export interface QuantizedMatrix extends QuantizedBase {
  kind: "int";
  bits: number;
  /** Effective group size in columns (equals `cols` for per-channel); the last group may be short. */
  groupSize: number;
  symmetric: boolean;
  /** One unsigned code per weight, `0 … 2^bits − 1`. */
  codes: Uint8Array;
  /** `rows × groupsPerRow` scales, each exactly representable in `scaleDtype`. */
  scales: Float32Array;
  /** `rows × groupsPerRow` integer zero points; null when symmetric. */
  zeros: Uint8Array | null;
  /** Type the scales are rounded to and stored as (default f16). */
  scaleDtype?: ScaleDtype;
  /**
   * One scale (and zero point) for the whole matrix, repeated in every row's entry so rows decode
   * alike; storage counts it once. Default false.
   */
  perTensor?: boolean;
}

/** How a scale is stored. */
export type ScaleDtype = "f16" | "bf16" | "f32";

/** KV-cache settings of a format (`kv_cache: { format, group, residual }`). */
export interface KvCacheSettings {
  /** Element format of cached keys and values: `int8`, `int6`, `int4`, `int3`, `int2`, `fp8`, `fp8_e5m2`. */
  format: string;
  /**
   * Tokens per key group and channels per value group; 0 means one key group per block of
   * `residual` tokens and one value group per head.
   */
  group: number;
  /** Most recent tokens kept in full precision. */
  residual: number;
}

/** What quantization a model applies at run time. */
export interface RuntimeQuantization {
  /** Element format of the per-token dynamic quantization of every transformer linear's input. */
  activations?: string;
  kvCache?: KvCacheSettings;
}

/** Weights of one transformer block. Linear weights are `[out][in]`. */
export interface LayerWeights {
  attnNorm: Float32Array;
  wq: Matrix;
  wk: Matrix;
  wv: Matrix;
  wo: Matrix;
  ffnNorm: Float32Array;
  /** Gate projection (`w1` in llama2.c). */
  w1: Matrix;
  /** Down projection. */
  w2: Matrix;
  /** Up projection. */
  w3: Matrix;
  /** Biases of the q, k, v (Qwen2; Llama with `attention_bias`) and output projections. */
  bq?: Float32Array;
  bk?: Float32Array;
  bv?: Float32Array;
  bo?: Float32Array;
  /** RMSNorm weights (`headDim`) applied to each query and key head before RoPE (Qwen3). */
  qNorm?: Float32Array;
  kNorm?: Float32Array;
  /**
   * Hadamard transforms of activations at run time, for a model whose weights are rotated
   * (QuaRot): the weights hold their inverse, so the block computes what it did unrotated.
   * Absent on every loaded checkpoint; writers refuse a layer that has them.
   */
  hadamard?: OnlineHadamards;
}

/**
 * Which activations of a block go through a Hadamard transform at run time (the `hadamard`
 * steps of `core/graph.ts`, in QuaRot's places).
 */
export interface OnlineHadamards {
  /** Each query and key head after RoPE (the KV cache holds the rotated keys). */
  qk: boolean;
  /**
   * The attention output, `wo`'s input: per head, then across the row (`nHeads · headDim`); the
   * two compose to QuaRot's cross-head Hadamard when the values are rotated per head.
   */
  attention: boolean;
  /** The MLP's down-projection input `mid` (`hiddenDim` wide). */
  down: boolean;
}

/** All weights of a model. */
export interface LlamaWeights {
  /** `[vocab][dim]`, kept dense: it is a lookup table, not a matmul. */
  tokenEmbedding: Float32Array;
  layers: LayerWeights[];
  finalNorm: Float32Array;
  /** `[vocab][dim]`; a quantized copy of the embedding when the model ties them. */
  output: Matrix;
  /** Whether the classifier shares the token embedding in the original checkpoint. */
  tiedEmbeddings: boolean;
}

/** Turns text into token ids and back. */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** Encodes text without special tokens. */
  encode(text: string): number[];
  /** Decodes ids to text; special tokens vanish and a leading BOS drops the dummy-prefix space. */
  decode(ids: readonly number[]): string;
  /** Whether the tokenizer's configuration starts a sequence with BOS (absent: unknown). */
  readonly addBos?: boolean;
  /** Whether the tokenizer's configuration ends a sequence with EOS. */
  readonly addEos?: boolean;
  /** The model's chat template, when it ships one. */
  readonly chat?: ChatTemplate;
  /** The vocabulary in GGUF terms, for writers and `inspect`. */
  readonly vocab?: Vocabulary;
}

/** One chat message as chat templates see it (`tool_calls` and other keys pass through). */
export interface ChatMessage {
  role: string;
  content?: string;
  [key: string]: unknown;
}

/** A chat template (Jinja, as in `tokenizer_config.json` or `tokenizer.chat_template`). */
export interface ChatTemplate {
  /** The template's source text. */
  readonly source: string;
  /** Renders a conversation; `tools` are JSON-schema tool descriptions passed as `tools`. */
  render(
    messages: readonly ChatMessage[],
    options?: { tools?: readonly unknown[]; addGenerationPrompt?: boolean },
  ): string;
}

/**
 * A tokenizer vocabulary as GGUF stores it (`tokenizer.ggml.*`): `llama` is SentencePiece (pieces
 * with `▁` for spaces, merge scores, `<0xAB>` byte pieces), `gpt2` byte-level BPE (merges).
 */
export interface Vocabulary {
  model: "llama" | "gpt2";
  /** The pre-tokenizer name llama.cpp uses for `gpt2` vocabularies (`gpt-2`, `qwen2`, …). */
  pre?: string;
  tokens: readonly string[];
  scores?: readonly number[];
  /** GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
  tokenTypes: readonly number[];
  merges?: readonly string[];
  bosId?: number;
  eosId?: number;
  unknownId?: number;
  paddingId?: number;
  addBos?: boolean;
  addEos?: boolean;
  /** `tokenizer.ggml.add_space_prefix` (SentencePiece's dummy prefix; default true). */
  addSpacePrefix?: boolean;
  chatTemplate?: string;
}

/** A loaded model. */
export interface LlamaModel {
  config: LlamaConfig;
  weights: LlamaWeights;
  tokenizer: Tokenizer;
  /** Quantization applied while it runs (activations, KV cache), set by quantization methods. */
  runtime?: RuntimeQuantization;
  /**
   * Present on a streamed load: `weights.layers` is empty and the layers are read from the file
   * one at a time, as a quantization method reaches them. Only methods take such a model; what
   * they return holds all its layers.
   */
  stream?: LayerStream;
}

/**
 * A model's transformer blocks read from their file on demand (a streamed load). Each
 * {@linkcode LayerStream.read} reads the layer afresh, as the eager loader would, and keeps no
 * reference to it, so a layer its caller drops is freed: quantizing layer by layer then holds
 * one layer in float32 at a time.
 */
export interface LayerStream {
  /** How many layers there are. */
  readonly count: number;
  /** Reads layer `index` (`0 ≤ index < count`). */
  read(index: number): Promise<LayerWeights>;
  /** Closes the files; later reads fail. */
  close(): void;
}

/** Builds a dense matrix, checking the element count. */
export function dense(rows: number, cols: number, data: Float32Array): DenseMatrix {
  if (data.length !== rows * cols) {
    throw new RangeError(`Matrix data has ${data.length} elements, expected ${rows}×${cols}`);
  }
  return { kind: "dense", rows, cols, data };
}

/** Names of the linear weights of a layer, in checkpoint order. */
export const LINEAR_NAMES = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"] as const;

/** One of {@linkcode LINEAR_NAMES}. */
export type LinearName = typeof LINEAR_NAMES[number];
