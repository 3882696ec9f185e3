/**
 * Which quantized weights a GGUF file holds exactly, and the model re-coded into them.
 *
 * A weight maps to a ggml type only where llama.cpp decodes the stored bits to the same numbers
 * quantbench decodes, so an exported model computes what the benchmarked cell computed:
 *
 * - ggml block codecs (`q4_0` … `q6_k`, `iq4_nl`, `gguf_mxfp4`, `f16`, `bf16`): copied byte for
 *   byte; OCP `mxfp4` (the same E8M0-scaled E2M1 blocks of 32 in another byte layout) → `MXFP4`,
 *   re-coded and checked value by value;
 * - `int4`, group 32, symmetric, f16 scales → `Q4_0`: ggml decodes `d · (q − 8)` with `q` an
 *   unsigned nibble and `d` an f16, which is `int.ts`'s `scale · (code − 8)` (either code range,
 *   full or restricted). Which `d` a block has does not matter to the decoder, so GPTQ's or RTN's
 *   scales are kept as they are (ggml's own quantizer picks `d = max / −8`, another grid);
 * - `int8`, group 32, symmetric, f16 scales → `Q8_0`: `d · q` with `q = code − 128` an int8;
 * - `int4`, group 32, asymmetric, f16 scales → `Q4_1` (`d · q + m`) when every `m = −scale · zero`
 *   is an f16 value (then `d · q + m` is exact in float32 and equals `scale · (q − zero)`); a
 *   matrix where one is not has no exact ggml type;
 * - full-precision (dense) weights → F32.
 *
 * Everything else (other integer widths or groups, bf16/f32 scales, other MX formats, NVFP4, FP8, HQQ's
 * affine codes) has no ggml type; {@linkcode NoGgufTypeError} names the tensor and what maps.
 *
 * @module
 */
import type { LayerWeights, LlamaModel, Matrix, QuantizedMatrix } from "../../../core/model.ts";
import type { CodedMatrix } from "../../../core/coded.ts";
import { GGUF_CODECS } from "../../../kernels/formats/ggml_format.ts";
import {
  decodeTensor,
  encodeTensor,
  ggmlTypeByName,
  tensorByteSize,
} from "../../../kernels/formats/gguf/blocks.ts";
import { decodeRow } from "../../../kernels/formats/matrix.ts";
import { elementFormats } from "../../../kernels/formats/registry.ts";
import { type FormatSettings, scaleDtypeOf } from "../../../kernels/formats/element_format.ts";
import { f32ToF16 } from "../../../kernels/formats/gguf/numeric.ts";
import { groupsPerRow, zeroAt } from "../../../kernels/formats/int.ts";

/** What maps to a ggml type, for error messages. */
export const GGUF_MAPPABLE =
  "ggml block formats (q4_0, q4_1, q5_0, q5_1, q8_0, q2_k … q6_k, iq4_nl, gguf_mxfp4, f16, " +
  "bf16), OCP mxfp4 (→ MXFP4), int4 g32 symmetric (→ q4_0), int8 g32 symmetric (→ q8_0), int4 g32 asymmetric whose " +
  "offsets are f16 values (→ q4_1), all with f16 scales, and full precision (→ f32)";

/** Thrown when a weight has no ggml type that decodes it to the same numbers. */
export class NoGgufTypeError extends Error {
  override name = "NoGgufTypeError";
  /** The tensor (`layers.0.wq`, `output`). */
  readonly tensor: string;
  constructor(tensor: string, why: string, options?: ErrorOptions) {
    super(
      `Weight ${tensor} has no GGUF type: ${why}. GGUF holds exactly ${GGUF_MAPPABLE}; export ` +
        `this format with --as gptq, awq or compressed-tensors, or quantize to a format that maps`,
      options,
    );
    this.tensor = tensor;
  }
}

/** The ggml type name a codec is stored as, if any (`q4_0` → `Q4_0`, `gguf_mxfp4` → `MXFP4`). */
export function ggmlTypeOfCodec(codec: string): string | undefined {
  // Only the ggml format's own codecs: OCP `mxfp4` lays its bytes out unlike ggml's MXFP4.
  return GGUF_CODECS.find(([name]) => name === codec)?.[1];
}

function f16Exact(x: number): boolean {
  return Math.f16round(x) === x;
}

function setF16(view: DataView, at: number, x: number): void {
  view.setUint16(at, f32ToF16(x), true);
}

/** Why `m` is no Q4_0/Q8_0/Q4_1 matrix, or the codec it is one of. */
function intTarget(m: QuantizedMatrix): { codec: "q4_0" | "q8_0" | "q4_1" } | { why: string } {
  const dtype = m.scaleDtype ?? "f16";
  const what = `int${m.bits} ${m.perTensor ? "per tensor" : `group ${m.groupSize}`} ` +
    `${m.symmetric ? "symmetric" : "asymmetric"} with ${dtype} scales`;
  const blocks = m.groupSize === 32 && m.cols % 32 === 0 && !m.perTensor;
  if (!blocks || dtype !== "f16") {
    return { why: `${what} is not a ggml block of 32 with f16 scales` };
  }
  if (m.sides !== undefined) return { why: `${what} carries side tensors ggml cannot hold` };
  if (m.bits === 4 && m.symmetric) return { codec: "q4_0" };
  if (m.bits === 8 && m.symmetric) return { codec: "q8_0" };
  if (m.bits === 4) {
    for (let i = 0; i < m.scales.length; i++) {
      const offset = -m.scales[i]! * zeroAt(m, i);
      if (!f16Exact(offset)) {
        return {
          why: `${what}: group ${i}'s offset −scale·zero = ${offset} is no f16 value, so q4_1's ` +
            `d·q + m would round it`,
        };
      }
    }
    return { codec: "q4_1" };
  }
  return { why: `${what} is no ggml type (ggml has 4- and 8-bit blocks of 32)` };
}

/** `m` as rows of Q4_0, Q8_0 or Q4_1 blocks with the same decoded values. */
function intToBlocks(m: QuantizedMatrix, codec: "q4_0" | "q8_0" | "q4_1"): CodedMatrix {
  const blockBytes = codec === "q4_0" ? 18 : codec === "q8_0" ? 34 : 20;
  const blocksPerRow = m.cols / 32;
  const rowBytes = blocksPerRow * blockBytes;
  const data = new Uint8Array(m.rows * rowBytes);
  const view = new DataView(data.buffer);
  const G = groupsPerRow(m);
  for (let r = 0; r < m.rows; r++) {
    for (let b = 0; b < blocksPerRow; b++) {
      const at = r * rowBytes + b * blockBytes;
      const scale = m.scales[r * G + b]!;
      const codes = m.codes.subarray(r * m.cols + b * 32, r * m.cols + b * 32 + 32);
      setF16(view, at, scale);
      if (codec === "q8_0") {
        for (let j = 0; j < 32; j++) view.setInt8(at + 2 + j, codes[j]! - 128);
        continue;
      }
      let q = at + 2;
      if (codec === "q4_1") {
        setF16(view, at + 2, -scale * zeroAt(m, r * G + b));
        q = at + 4;
      }
      // ggml nibble order: byte j holds element j (low) and element j + 16 (high).
      for (let j = 0; j < 16; j++) data[q + j] = codes[j]! | (codes[j + 16]! << 4);
    }
  }
  return { kind: "coded", codec, rows: m.rows, cols: m.cols, rowBytes, data, tensorScale: 1 };
}

/**
 * OCP `mxfp4` rows re-coded as ggml `MXFP4` blocks: the same values (an E8M0 scale per 32 E2M1
 * elements) in ggml's byte layout, checked value by value after ggml's own encoder re-codes them.
 */
function ocpMxfp4ToGgml(m: CodedMatrix, tensor: string): CodedMatrix {
  const type = ggmlTypeByName("MXFP4");
  if (m.cols % type.blockSize !== 0) {
    throw new NoGgufTypeError(tensor, `mxfp4 rows of ${m.cols} are not whole blocks of 32`);
  }
  const rowBytes = tensorByteSize(type, m.cols);
  const data = new Uint8Array(m.rows * rowBytes);
  const row = new Float32Array(m.cols);
  for (let r = 0; r < m.rows; r++) {
    decodeRow(m, r, row);
    const bytes = encodeTensor(type, row);
    const back = decodeTensor(type, bytes, m.cols);
    const c = back.findIndex((v, i) => v !== row[i]);
    if (c >= 0) {
      throw new NoGgufTypeError(
        tensor,
        `mxfp4 row ${r} column ${c} (${row[c]}) re-codes to ${back[c]} in ggml's MXFP4`,
      );
    }
    data.set(bytes, r * rowBytes);
  }
  return {
    kind: "coded",
    codec: "gguf_mxfp4",
    rows: m.rows,
    cols: m.cols,
    rowBytes,
    data,
    tensorScale: 1,
  };
}

/** `m` stored in the ggml type that decodes it exactly; throws {@linkcode NoGgufTypeError}. */
export function ggufMatrix(m: Matrix, tensor: string): Matrix {
  switch (m.kind) {
    case "dense":
      return m;
    case "coded":
      if (m.codec === "mxfp4" && m.sides === undefined && m.tensorScale === 1) {
        return ocpMxfp4ToGgml(m, tensor);
      }
      if (ggmlTypeOfCodec(m.codec) === undefined) {
        throw new NoGgufTypeError(
          tensor,
          `codec "${m.codec}" is no ggml block type`,
        );
      }
      if (m.sides !== undefined || m.tensorScale !== 1) {
        throw new NoGgufTypeError(
          tensor,
          `codec "${m.codec}" carries side tensors or a tensor scale ggml cannot hold`,
        );
      }
      return m;
    case "int": {
      const target = intTarget(m);
      if ("why" in target) throw new NoGgufTypeError(tensor, target.why);
      return intToBlocks(m, target.codec);
    }
  }
}

/**
 * Why a suite format's weights can have no ggml type, decided from its settings before anything
 * is quantized; undefined when they may (the matrices are checked again, `ggufModel`).
 */
export function ggufFormatUnsupported(
  weights: string,
  settings: FormatSettings,
): string | undefined {
  const element = elementFormats.get(weights);
  if (settings.options.activations !== undefined || settings.options.kv_cache !== undefined) {
    return "the format quantizes activations or the KV cache at run time, which a GGUF file " +
      "does not record";
  }
  if (element.kind === "float") return undefined;
  if (element.kind === "coded") {
    const codec = element.rowCodec(settings).name;
    return codec === "mxfp4" || ggmlTypeOfCodec(codec) !== undefined
      ? undefined
      : `codec "${codec}" is no ggml block type`;
  }
  const dtype = scaleDtypeOf(settings, "f16");
  const what = `${weights} group ${settings.group} ` +
    `${settings.symmetric ? "symmetric" : "asymmetric"} with ${dtype} scales`;
  if (settings.group !== 32 || dtype !== "f16") {
    return `${what} is not a ggml block of 32 with f16 scales`;
  }
  if (element.bits === 4 || (element.bits === 8 && settings.symmetric)) return undefined;
  return `${what} is no ggml type (ggml has 4- and 8-bit blocks of 32)`;
}

const LINEARS = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"] as const;

/**
 * `model` with every weight in a ggml type that decodes to the same numbers (for
 * `writeGguf`, which then copies the blocks); throws {@linkcode NoGgufTypeError} for the first
 * weight that has none, or when the model quantizes activations or its KV cache at run time.
 */
export function ggufModel(model: LlamaModel): LlamaModel {
  const runtime = model.runtime;
  if (runtime?.activations !== undefined || runtime?.kvCache !== undefined) {
    throw new NoGgufTypeError(
      "(runtime)",
      "the format quantizes activations or the KV cache at run time, which a GGUF file does " +
        "not record (llama.cpp sets its KV cache type by flag)",
    );
  }
  const layers = model.weights.layers.map((layer, l): LayerWeights => {
    const out: LayerWeights = { ...layer };
    for (const name of LINEARS) out[name] = ggufMatrix(layer[name], `layers.${l}.${name}`);
    return out;
  });
  const output = model.weights.output;
  return {
    ...model,
    weights: {
      ...model.weights,
      layers,
      output: output.kind === "dense" ? output : ggufMatrix(output, "output"),
    },
  };
}
