/**
 * Writes a loaded or quantized model as a GGUF file (version 3) that llama.cpp and quantbench's
 * own loader read: llama.cpp's metadata keys and tensor names for the `llama`, `qwen2` and `qwen3`
 * architectures (Mistral is written as `llama`, as llama.cpp's converter does), the tokenizer as
 * `tokenizer.ggml.*`, and each weight in a ggml type.
 *
 * Weight types: with `type`, every linear weight and the classifier are encoded in it (llama.cpp's
 * own reference quantizers, `kernels/formats/gguf/blocks.ts`), except rows that are not whole
 * blocks, which stay F32 as `llama-quantize` leaves them; without it, weights already coded in a
 * ggml block type are copied byte for byte and everything else is F32. Norms and biases are F32.
 * q/k rows are permuted to adjacent-pair RoPE for `llama` files (llama.cpp's order) and to the
 * half-split order for Qwen files.
 *
 * @module
 */
import type { LlamaModel, Matrix, Vocabulary } from "../../../core/model.ts";
import {
  encodeTensor,
  type GgmlType,
  ggmlTypeByName,
  ggmlTypes,
  tensorByteSize,
} from "../../../kernels/formats/gguf/blocks.ts";
import { GGUF_CODECS } from "../../../kernels/formats/ggml_format.ts";
import { ropeFrequencyFactors } from "../../../core/rope.ts";
import { reorderRows, reorderVector } from "./rope_order.ts";
import {
  exportArchitecture,
  modelVocabulary,
  toDense,
  writeAll,
  writeFileAtomically,
} from "./export.ts";
import { UnsupportedModelError } from "../errors.ts";

/** Options of {@linkcode writeGguf}. */
export interface GgufWriteOptions {
  /** ggml type name for linear weights and the classifier (`F16`, `Q8_0`, `Q4_0`, `Q4_K`, …). */
  type?: string;
  /** ggml type of the token embedding (default F32; llama.cpp reads rows of it). */
  embeddingType?: string;
  /** `general.name` (default "quantbench export"). */
  name?: string;
}

const ALIGNMENT = 32;

/** GGUF metadata value types used here. */
type Meta =
  | { u32: number }
  | { f32: number }
  | { bool: boolean }
  | { str: string }
  | { strs: readonly string[] }
  | { f32s: readonly number[] }
  | { i32s: readonly number[] };

class Bytes {
  readonly parts: Uint8Array[] = [];
  length = 0;
  readonly #enc = new TextEncoder();

  push(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.length;
  }
  #num(size: number, set: (v: DataView) => void): void {
    const b = new Uint8Array(size);
    set(new DataView(b.buffer));
    this.push(b);
  }
  u32(v: number): void {
    this.#num(4, (d) => d.setUint32(0, v, true));
  }
  i32(v: number): void {
    this.#num(4, (d) => d.setInt32(0, v, true));
  }
  u64(v: number): void {
    this.#num(8, (d) => d.setBigUint64(0, BigInt(v), true));
  }
  f32(v: number): void {
    this.#num(4, (d) => d.setFloat32(0, v, true));
  }
  str(s: string): void {
    const b = this.#enc.encode(s);
    this.u64(b.length);
    this.push(b);
  }
  meta(key: string, value: Meta): void {
    this.str(key);
    if ("u32" in value) {
      this.u32(4);
      this.u32(value.u32);
    } else if ("f32" in value) {
      this.u32(6);
      this.f32(value.f32);
    } else if ("bool" in value) {
      this.u32(7);
      this.push(new Uint8Array([value.bool ? 1 : 0]));
    } else if ("str" in value) {
      this.u32(8);
      this.str(value.str);
    } else {
      this.u32(9);
      const [type, items] = "strs" in value
        ? [8, value.strs]
        : "f32s" in value
        ? [6, value.f32s]
        : [5, value.i32s];
      this.u32(type);
      this.u64(items.length);
      for (const item of items) {
        if (type === 8) this.str(item as string);
        else if (type === 6) this.f32(item as number);
        else this.i32(item as number);
      }
    }
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

/** One tensor to write: ggml shape (`ne[0]` first) and a producer of its bytes. */
interface PlannedTensor {
  name: string;
  shape: number[];
  type: GgmlType;
  bytes: () => Uint8Array;
}

/** The ggml type a codec name stands for, if any. */
function ggmlTypeOfCodec(codec: string): GgmlType | undefined {
  // Only the ggml format's own codecs: OCP `mxfp4` lays its bytes out unlike ggml's MXFP4.
  const name = GGUF_CODECS.find(([own]) => own === codec)?.[1];
  return name === undefined ? undefined : ggmlTypes.get(name);
}

function planMatrix(name: string, m: Matrix, type: GgmlType | undefined): PlannedTensor {
  const shape = [m.cols, m.rows];
  const f32 = ggmlTypeByName("F32");
  if (type === undefined) {
    const own = m.kind === "coded" ? ggmlTypeOfCodec(m.codec) : undefined;
    if (m.kind === "coded" && own !== undefined) {
      return { name, shape, type: own, bytes: () => m.data };
    }
    return { name, shape, type: f32, bytes: () => encodeTensor(f32, toDense(m).data) };
  }
  if (m.kind === "coded" && ggmlTypeOfCodec(m.codec) === type) {
    return { name, shape, type, bytes: () => m.data };
  }
  const target = m.cols % type.blockSize === 0 ? type : f32;
  return { name, shape, type: target, bytes: () => encodeTensor(target, toDense(m).data) };
}

function planVector(name: string, v: Float32Array): PlannedTensor {
  const f32 = ggmlTypeByName("F32");
  return { name, shape: [v.length], type: f32, bytes: () => encodeTensor(f32, v) };
}

function tokenizerMetadata(vocab: Vocabulary): [string, Meta][] {
  const out: [string, Meta][] = [
    ["tokenizer.ggml.model", { str: vocab.model }],
    ["tokenizer.ggml.tokens", { strs: vocab.tokens }],
    ["tokenizer.ggml.token_type", { i32s: vocab.tokenTypes }],
  ];
  if (vocab.scores) out.push(["tokenizer.ggml.scores", { f32s: vocab.scores }]);
  if (vocab.merges) out.push(["tokenizer.ggml.merges", { strs: vocab.merges }]);
  if (vocab.pre !== undefined) out.push(["tokenizer.ggml.pre", { str: vocab.pre }]);
  const ids: [string, number | undefined][] = [
    ["bos", vocab.bosId],
    ["eos", vocab.eosId],
    ["unknown", vocab.unknownId],
    ["padding", vocab.paddingId],
  ];
  for (const [key, id] of ids) {
    if (id !== undefined) out.push([`tokenizer.ggml.${key}_token_id`, { u32: id }]);
  }
  if (vocab.addBos !== undefined) {
    out.push(["tokenizer.ggml.add_bos_token", { bool: vocab.addBos }]);
  }
  if (vocab.addEos !== undefined) {
    out.push(["tokenizer.ggml.add_eos_token", { bool: vocab.addEos }]);
  }
  if (vocab.addSpacePrefix !== undefined) {
    out.push(["tokenizer.ggml.add_space_prefix", { bool: vocab.addSpacePrefix }]);
  }
  if (vocab.chatTemplate !== undefined) {
    out.push(["tokenizer.chat_template", { str: vocab.chatTemplate }]);
  }
  return out;
}

/** Metadata and tensor plan of the file for `model`. */
function planGguf(
  model: LlamaModel,
  path: string,
  options: GgufWriteOptions = {},
): { metadata: [string, Meta][]; tensors: PlannedTensor[] } {
  const c = model.config;
  const w = model.weights;
  const exported = exportArchitecture(model);
  const arch = exported === "mistral" ? "llama" : exported;
  const style = arch === "llama" ? "interleaved" : "half";
  const type = options.type === undefined ? undefined : ggmlTypeByName(options.type);
  const embeddingType = ggmlTypeByName(options.embeddingType ?? "F32");
  const vocab = modelVocabulary(model, path);

  const metadata: [string, Meta][] = [
    ["general.architecture", { str: arch }],
    ["general.name", { str: options.name ?? "quantbench export" }],
    ["general.quantization_version", { u32: 2 }],
    [`${arch}.context_length`, { u32: c.maxSeqLen }],
    [`${arch}.embedding_length`, { u32: c.dim }],
    [`${arch}.feed_forward_length`, { u32: c.hiddenDim }],
    [`${arch}.block_count`, { u32: c.nLayers }],
    [`${arch}.attention.head_count`, { u32: c.nHeads }],
    [`${arch}.attention.head_count_kv`, { u32: c.nKvHeads }],
    [`${arch}.attention.key_length`, { u32: c.headDim }],
    [`${arch}.attention.value_length`, { u32: c.headDim }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { f32: c.normEps }],
    [`${arch}.rope.freq_base`, { f32: c.ropeTheta }],
    [`${arch}.rope.dimension_count`, { u32: c.headDim }],
    [`${arch}.vocab_size`, { u32: c.vocabSize }],
    ...tokenizerMetadata(vocab),
  ];
  const tensors: PlannedTensor[] = [];
  const scaling = c.ropeScaling;
  if (scaling?.type === "linear") {
    metadata.push([`${arch}.rope.scaling.type`, { str: "linear" }]);
    metadata.push([`${arch}.rope.scaling.factor`, { f32: scaling.factor }]);
  } else if (scaling !== undefined) {
    // llama.cpp's converter stores llama3 scaling as per-frequency divisors.
    tensors.push(planVector("rope_freqs.weight", ropeFrequencyFactors(c)));
  }
  const embedding = {
    kind: "dense" as const,
    rows: c.vocabSize,
    cols: c.dim,
    data: w.tokenEmbedding,
  };
  tensors.push(planMatrix("token_embd.weight", embedding, embeddingType));
  const tied = w.output.kind === "dense" && w.output.data === w.tokenEmbedding;
  if (!tied) tensors.push(planMatrix("output.weight", w.output, type));
  tensors.push(planVector("output_norm.weight", w.finalNorm));
  const decodeInt = (m: Matrix): Matrix => (m.kind === "int" ? toDense(m) : m);
  const qk = (m: Matrix, heads: number) =>
    reorderRows(decodeInt(m), heads, c.headDim, c.ropeStyle, style);
  w.layers.forEach((layer, l) => {
    const p = `blk.${l}.`;
    tensors.push(planVector(p + "attn_norm.weight", layer.attnNorm));
    tensors.push(planMatrix(p + "attn_q.weight", qk(layer.wq, c.nHeads), type));
    tensors.push(planMatrix(p + "attn_k.weight", qk(layer.wk, c.nKvHeads), type));
    tensors.push(planMatrix(p + "attn_v.weight", decodeInt(layer.wv), type));
    tensors.push(planMatrix(p + "attn_output.weight", decodeInt(layer.wo), type));
    if (layer.bq && layer.bk && layer.bv) {
      tensors.push(
        planVector(
          p + "attn_q.bias",
          reorderVector(layer.bq, c.nHeads, c.headDim, c.ropeStyle, style),
        ),
      );
      tensors.push(
        planVector(
          p + "attn_k.bias",
          reorderVector(layer.bk, c.nKvHeads, c.headDim, c.ropeStyle, style),
        ),
      );
      tensors.push(planVector(p + "attn_v.bias", layer.bv));
    } else if (layer.bq || layer.bk || layer.bv) {
      throw new UnsupportedModelError(path, "q, k and v biases must come together", {
        tensor: p + "attn_q.bias",
      });
    }
    if (layer.bo) tensors.push(planVector(p + "attn_output.bias", layer.bo));
    if (layer.qNorm && layer.kNorm) {
      // Per-head norms act on whole heads; their weights follow the rows' pairing.
      tensors.push(
        planVector(
          p + "attn_q_norm.weight",
          reorderVector(layer.qNorm, 1, c.headDim, c.ropeStyle, style),
        ),
      );
      tensors.push(
        planVector(
          p + "attn_k_norm.weight",
          reorderVector(layer.kNorm, 1, c.headDim, c.ropeStyle, style),
        ),
      );
    }
    tensors.push(planVector(p + "ffn_norm.weight", layer.ffnNorm));
    tensors.push(planMatrix(p + "ffn_gate.weight", decodeInt(layer.w1), type));
    tensors.push(planMatrix(p + "ffn_down.weight", decodeInt(layer.w2), type));
    tensors.push(planMatrix(p + "ffn_up.weight", decodeInt(layer.w3), type));
  });
  return { metadata, tensors };
}

/** Writes `model` to `path` as GGUF (atomically: a temporary file, then a rename). */
export async function writeGguf(
  model: LlamaModel,
  path: string,
  options: GgufWriteOptions = {},
): Promise<void> {
  const { metadata, tensors } = planGguf(model, path, options);
  const head = new Bytes();
  head.push(new TextEncoder().encode("GGUF"));
  head.u32(3);
  head.u64(tensors.length);
  head.u64(metadata.length);
  for (const [key, value] of metadata) head.meta(key, value);
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    head.str(t.name);
    head.u32(t.shape.length);
    for (const d of t.shape) head.u64(d);
    head.u32(t.type.id);
    head.u64(offset);
    offsets.push(offset);
    const size = tensorByteSize(t.type, t.shape.reduce((a, b) => a * b, 1));
    offset += Math.ceil(size / ALIGNMENT) * ALIGNMENT;
  }
  const header = head.concat();
  const padded = Math.ceil(header.length / ALIGNMENT) * ALIGNMENT;
  await writeFileAtomically(path, async (file) => {
    await writeAll(file, header);
    await writeAll(file, new Uint8Array(padded - header.length));
    for (const t of tensors) {
      const bytes = t.bytes();
      await writeAll(file, bytes);
      const pad = Math.ceil(bytes.length / ALIGNMENT) * ALIGNMENT - bytes.length;
      if (pad > 0) await writeAll(file, new Uint8Array(pad));
    }
  });
}
