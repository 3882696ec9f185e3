/**
 * The backend-independent Llama-family model: configuration, tokenizer and weights. Loaders produce
 * it, quantization methods transform it, backends execute it.
 *
 * @module
 */
import type { QuantizedMatrix } from "../../kernels/formats/int.ts";
import type { CodedMatrix } from "../../kernels/formats/coded.ts";

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
  ropeTheta: number;
  normEps: number;
  /**
   * Which elements RoPE rotates together: `interleaved` pairs (x[2i], x[2i+1]) as llama2.c and
   * GGUF store them, or `half` pairs (x[i], x[i + d/2]) as Hugging Face checkpoints do.
   */
  ropeStyle: "interleaved" | "half";
}

/** A dense row-major matrix `[rows = out features][cols = in features]` in float32. */
export interface DenseMatrix {
  kind: "dense";
  rows: number;
  cols: number;
  data: Float32Array;
}

/**
 * A linear layer's weight: dense float32, integer codes + scales (`int`), or rows of codec blocks
 * (`coded`: GGUF blocks, MX, NVFP4, FP8 …).
 */
export type Matrix = DenseMatrix | QuantizedMatrix | CodedMatrix;

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
}

/** A loaded model. */
export interface LlamaModel {
  config: LlamaConfig;
  weights: LlamaWeights;
  tokenizer: Tokenizer;
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
