/**
 * Test support for the model loaders: a tiny seeded random Llama model with a SentencePiece
 * vocabulary, written as a GGUF file and a Hugging Face folder, and seeded byte mutations of
 * such files (used by `bad_files_test.ts` and `mutation_worker.ts`).
 *
 * @module
 */
import { join } from "node:path";
import { dense, type LayerWeights, type LlamaModel, type Vocabulary } from "../../core/model.ts";
import { tokenizerFromVocabulary } from "./tokenizer_gguf.ts";
import { writeGguf } from "./writers/gguf.ts";
import { writeHfModel } from "./writers/hf.ts";

/** mulberry32: a small seeded PRNG with uniform output in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A SentencePiece vocabulary of 64 pieces: specials, `▁`, letters and a few merges. */
function tinyVocabulary(): Vocabulary {
  const letters = [..."abcdefghijklmnopqrstuvwxyz"];
  const merged = ["▁a", "▁b", "▁c", "ab", "bc", "ca", "he", "▁he", "ll", "lo", "▁hello"];
  const tokens = ["<unk>", "<s>", "</s>", "▁", ...letters, ...merged];
  while (tokens.length < 64) tokens.push(`▁w${tokens.length}`);
  return {
    model: "llama",
    tokens,
    scores: tokens.map((_, i) => -i),
    tokenTypes: tokens.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : 1)),
    bosId: 1,
    eosId: 2,
    unknownId: 0,
    addBos: true,
    addEos: false,
    addSpacePrefix: true,
  };
}

/** A 1-layer model (dim 32, FFN 64, 4 heads, 2 KV heads, vocab 64) with seeded weights. */
export function tinyModel(seed = 7): LlamaModel {
  const random = seededRandom(seed);
  const values = (n: number, scale: number, offset = 0) =>
    Float32Array.from({ length: n }, () => offset + scale * (2 * random() - 1));
  const dim = 32;
  const hidden = 64;
  const vocab = 64;
  const layer: LayerWeights = {
    attnNorm: values(dim, 0.2, 1),
    wq: dense(32, dim, values(32 * dim, 0.3)),
    wk: dense(16, dim, values(16 * dim, 0.3)),
    wv: dense(16, dim, values(16 * dim, 0.3)),
    wo: dense(dim, 32, values(dim * 32, 0.3)),
    ffnNorm: values(dim, 0.2, 1),
    w1: dense(hidden, dim, values(hidden * dim, 0.3)),
    w2: dense(dim, hidden, values(dim * hidden, 0.3)),
    w3: dense(hidden, dim, values(hidden * dim, 0.3)),
  };
  const tokenEmbedding = values(vocab * dim, 1);
  const v = tinyVocabulary();
  return {
    config: {
      dim,
      hiddenDim: hidden,
      nLayers: 1,
      nHeads: 4,
      nKvHeads: 2,
      headDim: 8,
      vocabSize: vocab,
      maxSeqLen: 16,
      ropeTheta: 10000,
      normEps: 1e-5,
      ropeStyle: "interleaved",
      architecture: "llama",
    },
    weights: {
      tokenEmbedding,
      layers: [layer],
      finalNorm: values(dim, 0.2, 1),
      output: dense(vocab, dim, values(vocab * dim, 0.3)),
      tiedEmbeddings: false,
    },
    tokenizer: tokenizerFromVocabulary(v, "tiny"),
  };
}

/** Writes the tiny model as `dir/tiny.gguf` (Q8_0 linear weights) and `dir/hf/` (F16). */
export async function writeTinyFiles(dir: string): Promise<{ gguf: string; hf: string }> {
  const model = tinyModel();
  const gguf = join(dir, "tiny.gguf");
  await writeGguf(model, gguf, { type: "Q8_0" });
  const hf = join(dir, "hf");
  await writeHfModel(model, hf, { dtype: "F16" });
  return { gguf, hf };
}

/**
 * A seeded mutation of `bytes`: bit flips (mostly within the first `headerBytes`), extreme
 * 32/64-bit values written over header fields, digit changes inside JSON text, truncation, or
 * inserted and deleted bytes. Returns the new bytes and a description.
 */
export function mutate(
  bytes: Uint8Array,
  headerBytes: number,
  random: () => number,
): { bytes: Uint8Array; what: string } {
  const pick = (n: number) => Math.floor(random() * n);
  const inHeader = () => pick(Math.max(1, Math.min(headerBytes, bytes.length)));
  const anywhere = () => pick(bytes.length);
  const out = bytes.slice();
  const kind = pick(6);
  switch (kind) {
    case 0: {
      const flips = 1 + pick(3);
      const at: number[] = [];
      for (let i = 0; i < flips; i++) {
        const p = random() < 0.8 ? inHeader() : anywhere();
        out[p]! ^= 1 << pick(8);
        at.push(p);
      }
      return { bytes: out, what: `bit flips at ${at}` };
    }
    case 1: {
      const p = inHeader() & ~3;
      const extremes = [0, 0xffffffff, 0x7fffffff, 1 + pick(1 << 30)];
      const value = extremes[pick(extremes.length)]!;
      const view = new DataView(out.buffer);
      if (p + 8 <= out.length && random() < 0.5) {
        view.setBigUint64(p, BigInt(value) * (random() < 0.5 ? 1n : 0x100000000n), true);
      } else if (p + 4 <= out.length) {
        view.setUint32(p, value, true);
      }
      return { bytes: out, what: `value ${value} written at ${p}` };
    }
    case 2: {
      const digits: number[] = [];
      const limit = Math.min(headerBytes, bytes.length);
      for (let i = 0; i < limit; i++) if (bytes[i]! >= 0x30 && bytes[i]! <= 0x39) digits.push(i);
      if (digits.length === 0) return { bytes: out, what: "no digit to change" };
      const p = digits[pick(digits.length)]!;
      out[p] = 0x30 + pick(10);
      return { bytes: out, what: `digit at ${p} set to ${String.fromCharCode(out[p]!)}` };
    }
    case 3: {
      const length = random() < 0.5 ? inHeader() : anywhere();
      return { bytes: out.subarray(0, length), what: `truncated to ${length}` };
    }
    case 4: {
      const p = inHeader();
      const n = 1 + pick(8);
      const grown = new Uint8Array(bytes.length + n);
      grown.set(bytes.subarray(0, p));
      for (let i = 0; i < n; i++) grown[p + i] = pick(256);
      grown.set(bytes.subarray(p), p + n);
      return { bytes: grown, what: `${n} bytes inserted at ${p}` };
    }
    default: {
      const p = inHeader();
      const n = Math.min(1 + pick(8), bytes.length - p);
      const shrunk = new Uint8Array(bytes.length - n);
      shrunk.set(bytes.subarray(0, p));
      shrunk.set(bytes.subarray(p + n), p);
      return { bytes: shrunk, what: `${n} bytes deleted at ${p}` };
    }
  }
}

/** The request the test posts. */
export interface MutationRequest {
  gguf: string;
  hf: string;
  work: string;
  seed: number;
  trials: number;
}

/** What the worker posts: a trial about to run, or the summary. */
export type MutationMessage =
  | { kind: "trial"; trial: number; what: string }
  | {
    kind: "done";
    outcomes: Record<string, number>;
    failures: { trial: number; what: string; error: string }[];
  };
