/**
 * Reader for llama2.c checkpoints (Karpathy's legacy `.bin` export) and their tokenizers.
 *
 * Layout: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len; a negative vocab_size means the classifier is stored separately), then float32 tensors:
 * token embedding, attention norms, wq, wk, wv, wo, FFN norms, w1, w2, w3, final norm, two unused
 * RoPE tables, and the classifier when not shared.
 *
 * @module
 */
import { dense, type LayerWeights, type LlamaConfig, type LlamaModel } from "../../core/model.ts";
import { loadLlama2cTokenizer } from "./tokenizer_llama2c.ts";
import { Llama2cFormatError } from "./llama2c_error.ts";

export { Llama2cFormatError };
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";

const HEADER_BYTES = 28;

/** Parses a checkpoint's bytes into config and weights (tokenizer not included). */
export function parseLlama2c(bytes: Uint8Array, file: string): Omit<LlamaModel, "tokenizer"> {
  if (bytes.byteLength < HEADER_BYTES) {
    throw new Llama2cFormatError(
      file,
      `file is ${bytes.byteLength} bytes, shorter than the header`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = Array.from({ length: 7 }, (_, i) => view.getInt32(i * 4, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = h as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const shared = rawVocab > 0;
  const vocabSize = Math.abs(rawVocab);
  const names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
  for (const [i, v] of [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen].entries()) {
    if (!(v > 0 && v < 1 << 24)) {
      throw new Llama2cFormatError(
        file,
        `header field ${names[i]} is ${v}; not a llama2.c checkpoint?`,
      );
    }
  }
  if (dim % nHeads !== 0 || nHeads % nKvHeads !== 0) {
    throw new Llama2cFormatError(
      file,
      `dim ${dim}, n_heads ${nHeads} and n_kv_heads ${nKvHeads} do not divide evenly`,
    );
  }
  const headDim = dim / nHeads;
  const kvDim = nKvHeads * headDim;
  const config: LlamaConfig = {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    maxSeqLen: seqLen,
    ropeTheta: 10000,
    normEps: 1e-5,
    ropeStyle: "interleaved",
  };
  const floats = (bytes.byteLength - HEADER_BYTES) / 4;
  const expected = vocabSize * dim + nLayers * (2 * dim + 2 * dim * dim + 2 * kvDim * dim) +
    nLayers * 3 * dim * hiddenDim + dim + seqLen * headDim + (shared ? 0 : vocabSize * dim);
  if (!Number.isInteger(floats) || floats !== expected) {
    throw new Llama2cFormatError(
      file,
      `holds ${bytes.byteLength - HEADER_BYTES} bytes of weights; the header ` +
        `(${names.map((n, i) => `${n}=${h[i]}`).join(" ")}) needs ${expected * 4}`,
    );
  }
  // Copy so that the weights are aligned and independent of the file buffer.
  const all = new Float32Array(floats);
  new Uint8Array(all.buffer).set(bytes.subarray(HEADER_BYTES));
  let offset = 0;
  const take = (n: number) => {
    const t = all.subarray(offset, offset + n);
    offset += n;
    return t;
  };
  for (const v of all) {
    if (!Number.isFinite(v)) throw new Llama2cFormatError(file, "weights contain NaN or infinity");
  }
  const tokenEmbedding = take(vocabSize * dim);
  const attnNorms = take(nLayers * dim);
  const wq = take(nLayers * dim * dim);
  const wk = take(nLayers * kvDim * dim);
  const wv = take(nLayers * kvDim * dim);
  const wo = take(nLayers * dim * dim);
  const ffnNorms = take(nLayers * dim);
  const w1 = take(nLayers * hiddenDim * dim);
  const w2 = take(nLayers * dim * hiddenDim);
  const w3 = take(nLayers * hiddenDim * dim);
  const finalNorm = take(dim);
  take(seqLen * headDim); // freq_cis_real and freq_cis_imag: recomputed at run time
  const classifier = shared ? tokenEmbedding : take(vocabSize * dim);
  const slice = (t: Float32Array, l: number, n: number) => t.subarray(l * n, (l + 1) * n);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < nLayers; l++) {
    layers.push({
      attnNorm: slice(attnNorms, l, dim),
      wq: dense(dim, dim, slice(wq, l, dim * dim)),
      wk: dense(kvDim, dim, slice(wk, l, kvDim * dim)),
      wv: dense(kvDim, dim, slice(wv, l, kvDim * dim)),
      wo: dense(dim, dim, slice(wo, l, dim * dim)),
      ffnNorm: slice(ffnNorms, l, dim),
      w1: dense(hiddenDim, dim, slice(w1, l, hiddenDim * dim)),
      w2: dense(dim, hiddenDim, slice(w2, l, dim * hiddenDim)),
      w3: dense(hiddenDim, dim, slice(w3, l, hiddenDim * dim)),
    });
  }
  return {
    config,
    weights: {
      tokenEmbedding,
      layers,
      finalNorm,
      output: dense(vocabSize, dim, classifier),
      tiedEmbeddings: shared,
    },
  };
}

/**
 * The tokenizer file for a checkpoint: the given one, else `tokenizer.bin` beside it, else the only
 * `tok*.bin` beside it.
 */
export function findLlama2cTokenizer(modelPath: string): string | undefined {
  const dir = dirname(modelPath);
  const candidate = join(dir, "tokenizer.bin");
  if (existsSync(candidate)) return candidate;
  const toks = [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && /^tok.*\.bin$/.test(e.name) && e.name !== basename(modelPath))
    .map((e) => join(dir, e.name));
  return toks.length === 1 ? toks[0] : undefined;
}

/** Loads a llama2.c checkpoint with its tokenizer. */
export async function loadLlama2c(path: string, tokenizerPath?: string): Promise<LlamaModel> {
  const bytes = await readOrThrow(path);
  const parsed = parseLlama2c(bytes, path);
  const tokPath = tokenizerPath ?? findLlama2cTokenizer(path);
  if (!tokPath) {
    throw new Llama2cFormatError(
      path,
      "no tokenizer found: put tokenizer.bin beside the model or set `tokenizer:` in the suite",
    );
  }
  const tokenizer = loadLlama2cTokenizer(
    await readOrThrow(tokPath),
    tokPath,
    parsed.config.vocabSize,
  );
  return { ...parsed, tokenizer };
}

async function readOrThrow(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new Llama2cFormatError(path, `cannot read file (${(e as Error).message})`, { cause: e });
  }
}
