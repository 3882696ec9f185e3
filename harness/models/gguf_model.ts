/**
 * Loads GGUF models of the `llama`, `qwen2` and `qwen3` architectures (llama.cpp's tensor names
 * and metadata keys) with their embedded tokenizer. Quantized tensors stay in their ggml block
 * format as {@linkcode CodedMatrix} weights (codec names: ggml's lower-case type names, MXFP4 as
 * `gguf_mxfp4`), so a file made by llama.cpp runs as it is; types without a row codec are decoded
 * to float32. Norms, biases and the token embedding are decoded to float32. A streamed load reads
 * the transformer blocks only when asked (`LlamaModel.stream`), as Hugging Face folders do.
 *
 * RoPE pairing follows llama.cpp: `llama` files store q/k rows for adjacent pairs (its converter
 * permutes Hugging Face weights), `qwen2`/`qwen3` keep the half-split (NEOX) order.
 *
 * @module
 */
import { type GgufFile, type GgufTensorInfo, openGguf } from "./gguf/reader.ts";
import {
  dense,
  type LayerStream,
  type LayerWeights,
  type LlamaConfig,
  type LlamaModel,
  type Matrix,
} from "../../core/model.ts";
import type { CodedMatrix } from "../../core/coded.ts";
import { rowCodecs } from "../../kernels/formats/codecs.ts";
import { ggufTokenizer } from "./tokenizer_gguf.ts";
import { checkTokenizerFits, type LoadOptions } from "./hf/load.ts";
import {
  checkFinite,
  ConfigError,
  MissingTensorError,
  ShapeMismatchError,
  UnsupportedModelError,
} from "./errors.ts";

/** GGUF architectures this loader reads. */
export const GGUF_ARCHITECTURES = ["llama", "qwen2", "qwen3"] as const;

/** Dimensions above this are taken as corrupt rather than allocated. */
const MAX_DIM = 1 << 24;

/** The row codec that holds a ggml type's blocks, if one is registered. */
export function ggufCodecName(typeName: string): string | undefined {
  const name = typeName === "MXFP4" ? "gguf_mxfp4" : typeName.toLowerCase();
  return rowCodecs.has(name) ? name : undefined;
}

/** Reads the hyper-parameters of a GGUF model. */
export function ggufConfig(gguf: GgufFile): LlamaConfig {
  const arch = gguf.getString("general.architecture");
  if (!(GGUF_ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new UnsupportedModelError(
      gguf.path,
      `architecture "${arch}" is not supported; supported: ${GGUF_ARCHITECTURES.join(", ")}`,
    );
  }
  const int = (key: string, fallback?: number): number => {
    const v = gguf.getNumber(`${arch}.${key}`, fallback);
    if (!(Number.isInteger(v) && v > 0 && v < MAX_DIM)) {
      throw new ConfigError(gguf.path, `metadata "${arch}.${key}" is ${v}; expected 1..2^24`);
    }
    return v;
  };
  const positive = (key: string, fallback: number): number => {
    const v = gguf.getNumber(`${arch}.${key}`, fallback);
    if (!(Number.isFinite(v) && v > 0)) {
      throw new ConfigError(gguf.path, `metadata "${arch}.${key}" is ${v}; expected > 0`);
    }
    return v;
  };
  const dim = int("embedding_length");
  const nHeads = int("attention.head_count");
  const nKvHeads = int("attention.head_count_kv", nHeads);
  if (nHeads % nKvHeads !== 0) {
    throw new ConfigError(gguf.path, `${nHeads} heads are not a multiple of ${nKvHeads} KV heads`);
  }
  const headDim = int("attention.key_length", dim % nHeads === 0 ? dim / nHeads : undefined);
  if (int("attention.value_length", headDim) !== headDim) {
    throw new UnsupportedModelError(gguf.path, "key and value head sizes differ");
  }
  if (int("rope.dimension_count", headDim) !== headDim || headDim % 2 !== 0) {
    throw new UnsupportedModelError(
      gguf.path,
      `RoPE over ${gguf.getNumber(`${arch}.rope.dimension_count`)} of ${headDim} head ` +
        `dimensions is not supported (RoPE over whole, even heads only)`,
    );
  }
  const embedding = gguf.hasTensor("token_embd.weight")
    ? gguf.tensor("token_embd.weight").shape[1]
    : undefined;
  const config: LlamaConfig = {
    dim,
    hiddenDim: int("feed_forward_length"),
    nLayers: int("block_count"),
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: int("vocab_size", embedding),
    maxSeqLen: int("context_length", 2048),
    extendableContext: true,
    ropeTheta: positive("rope.freq_base", 10000),
    normEps: positive("attention.layer_norm_rms_epsilon", 1e-5),
    ropeStyle: arch === "llama" ? "interleaved" : "half",
    architecture: arch,
  };
  const scalingType = gguf.getString(`${arch}.rope.scaling.type`, "none");
  if (scalingType === "linear") {
    config.ropeScaling = { type: "linear", factor: positive("rope.scaling.factor", 1) };
  } else if (scalingType !== "none") {
    throw new UnsupportedModelError(
      gguf.path,
      `RoPE scaling "${scalingType}" is not supported (none, linear, rope_freqs factors)`,
    );
  }
  return config;
}

/** Reads every weight of an open GGUF model file (the first `nLayers` layers). */
export async function readGgufWeights(
  gguf: GgufFile,
  config: LlamaConfig,
  nLayers = config.nLayers,
): Promise<LlamaModel["weights"]> {
  const c = config;
  const { floats, matrix } = tensorReaders(gguf, config);
  const tokenEmbedding = await floats("token_embd.weight", [c.dim, c.vocabSize]);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < nLayers; l++) layers.push(await readGgufLayer(gguf, config, l));
  const finalNorm = await floats("output_norm.weight", [c.dim]);
  const tied = !gguf.hasTensor("output.weight");
  const output = tied
    ? dense(c.vocabSize, c.dim, tokenEmbedding)
    : await matrix("output.weight", c.vocabSize, c.dim);
  return { tokenEmbedding, layers, finalNorm, output, tiedEmbeddings: tied };
}

/** Reads layer `l` of an open GGUF model file. */
export async function readGgufLayer(
  gguf: GgufFile,
  config: LlamaConfig,
  l: number,
): Promise<LayerWeights> {
  const c = config;
  const arch = c.architecture;
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  const { floats, matrix } = tensorReaders(gguf, config);
  const p = `blk.${l}.`;
  const layer: LayerWeights = {
    attnNorm: await floats(p + "attn_norm.weight", [c.dim]),
    wq: await matrix(p + "attn_q.weight", qDim, c.dim),
    wk: await matrix(p + "attn_k.weight", kvDim, c.dim),
    wv: await matrix(p + "attn_v.weight", kvDim, c.dim),
    wo: await matrix(p + "attn_output.weight", c.dim, qDim),
    ffnNorm: await floats(p + "ffn_norm.weight", [c.dim]),
    w1: await matrix(p + "ffn_gate.weight", c.hiddenDim, c.dim),
    w2: await matrix(p + "ffn_down.weight", c.dim, c.hiddenDim),
    w3: await matrix(p + "ffn_up.weight", c.hiddenDim, c.dim),
  };
  // Qwen2 always has q/k/v biases; Llama files have them when the source model did.
  if (arch === "qwen2" || gguf.hasTensor(p + "attn_q.bias")) {
    layer.bq = await floats(p + "attn_q.bias", [qDim]);
    layer.bk = await floats(p + "attn_k.bias", [kvDim]);
    layer.bv = await floats(p + "attn_v.bias", [kvDim]);
  }
  if (gguf.hasTensor(p + "attn_output.bias")) {
    layer.bo = await floats(p + "attn_output.bias", [c.dim]);
  }
  if (arch === "qwen3") {
    layer.qNorm = await floats(p + "attn_q_norm.weight", [c.headDim]);
    layer.kNorm = await floats(p + "attn_k_norm.weight", [c.headDim]);
  }
  return layer;
}

/** Readers of a file's tensors, checked against the shapes `config` implies. */
function tensorReaders(gguf: GgufFile, config: LlamaConfig): {
  floats(name: string, shape: readonly number[]): Promise<Float32Array>;
  matrix(name: string, rows: number, cols: number): Promise<Matrix>;
} {
  const arch = config.architecture;
  const info = (name: string, shape: readonly number[]): GgufTensorInfo => {
    if (!gguf.hasTensor(name)) {
      throw new MissingTensorError(gguf.path, `the ${arch} architecture needs it`, {
        tensor: name,
      });
    }
    const t = gguf.tensor(name);
    const want = shape.length === 1 ? [shape[0]!] : shape;
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new ShapeMismatchError(
        gguf.path,
        `shape [${t.shape}] disagrees with the metadata, which implies [${want}]`,
        { tensor: name },
      );
    }
    return t;
  };
  const floats = async (name: string, shape: readonly number[]): Promise<Float32Array> => {
    const data = await gguf.readTensorF32(info(name, shape));
    checkFinite(data, gguf.path, name);
    return data;
  };
  /** A `[rows][cols]` matrix; ggml's shape is `[cols, rows]`. */
  const matrix = async (name: string, rows: number, cols: number): Promise<Matrix> => {
    const t = info(name, [cols, rows]);
    const codec = ggufCodecName(t.typeName);
    if (t.typeName === "F32" || codec === undefined) {
      return dense(rows, cols, await floats(name, [cols, rows]));
    }
    const coded: CodedMatrix = {
      kind: "coded",
      codec,
      rows,
      cols,
      rowBytes: t.byteSize / rows,
      data: await gguf.readTensorBytes(t),
      tensorScale: 1,
    };
    checkCodedFinite(coded, gguf.path, name);
    return coded;
  };
  return { floats, matrix };
}

/** Decodes every row once to reject NaN or infinite weights without a dense copy. */
function checkCodedFinite(m: CodedMatrix, file: string, tensor: string): void {
  const codec = rowCodecs.get(m.codec);
  const row = new Float32Array(m.cols);
  for (let r = 0; r < m.rows; r++) {
    codec.decodeRow(m.data.subarray(r * m.rowBytes, (r + 1) * m.rowBytes), row, m.tensorScale);
    checkFinite(row, file, tensor);
  }
}

/**
 * Reads config, weights and tokenizer of an open GGUF file; with `stream`, the layers are left to
 * `model.stream` (which reads them from `gguf`, so the file stays open until it is closed).
 */
export async function readGgufModel(
  gguf: GgufFile,
  options: LoadOptions = {},
): Promise<LlamaModel> {
  const config = ggufConfig(gguf);
  if (gguf.hasTensor("rope_freqs.weight")) {
    const factors = await gguf.readTensorF32(gguf.tensor("rope_freqs.weight"));
    if (factors.length !== config.headDim / 2) {
      throw new ShapeMismatchError(
        gguf.path,
        `has ${factors.length} factors for ${config.headDim / 2} RoPE frequencies`,
        { tensor: "rope_freqs.weight" },
      );
    }
    if (!factors.every((f) => Number.isFinite(f) && f > 0)) {
      throw new ConfigError(gguf.path, "RoPE frequency factors must be finite and > 0", {
        tensor: "rope_freqs.weight",
      });
    }
    config.ropeScaling = { type: "factors", factors };
  }
  const weights = await readGgufWeights(gguf, config, options.stream ? 0 : config.nLayers);
  const tokenizer = ggufTokenizer(gguf);
  checkTokenizerFits(tokenizer, config.vocabSize, gguf.path);
  if (!options.stream) return { config, weights, tokenizer };
  const stream: LayerStream = {
    count: config.nLayers,
    read: (index) => readGgufLayer(gguf, config, index),
    close: () => gguf.close(),
  };
  return { config, weights, tokenizer, stream };
}

/** Loads a GGUF model file with its embedded tokenizer (`stream`: as Hugging Face folders). */
export async function loadGgufModel(
  path: string,
  options: LoadOptions = {},
): Promise<LlamaModel> {
  const gguf = await openGguf(path);
  try {
    const model = await readGgufModel(gguf, options);
    if (!options.stream) gguf.close();
    return model;
  } catch (e) {
    gguf.close();
    throw e;
  }
}
