/**
 * The ggml tensor types a GGUF file can hold (ids from `enum ggml_type` in ggml.h), their block
 * layouts, and bit-exact codecs: `decode` reproduces ggml's `dequantize_row_*` (`to_float`)
 * and `encode` reproduces what `llama-quantize` writes without an importance matrix.
 *
 * @example
 * ```ts
 * const q4k = ggmlTypeByName("Q4_K"); // { id: 12, blockSize: 256, typeSize: 144, bitsPerWeight: 4.5 }
 * const values = decodeTensor(q4k, bytes, 4096);
 * ```
 *
 * @module
 */
import { Registry } from "../../../core/registry.ts";
import { blockCount, GgmlBlockLengthError } from "./block_io.ts";
import {
  decodeQ2K,
  decodeQ3K,
  decodeQ4K,
  decodeQ5K,
  decodeQ6K,
  decodeQ8K,
  encodeQ2K,
  encodeQ3K,
  encodeQ4K,
  encodeQ5K,
  encodeQ6K,
} from "./k_quants.ts";
import {
  decodeIq4Nl,
  decodeMxfp4,
  decodeQ2_0,
  decodeQ4_0,
  decodeQ4_1,
  decodeQ5_0,
  decodeQ5_1,
  decodeQ8_0,
  encodeIq4Nl,
  encodeMxfp4,
  encodeQ2_0,
  encodeQ4_0,
  encodeQ4_1,
  encodeQ5_0,
  encodeQ5_1,
  encodeQ8_0,
} from "./legacy_quants.ts";
import { bf16ToF32, f16ToF32, f32ToF16 } from "./numeric.ts";

export { GgmlBlockLengthError };

/** Decodes `n` elements from the start of `bytes` to float32. */
export type BlockDecoder = (bytes: Uint8Array, n: number) => Float32Array;
/** Encodes float32 values (a whole number of blocks) to the type's bytes. */
export type BlockEncoder = (x: Float32Array) => Uint8Array;

/** One ggml tensor type. */
export interface GgmlType {
  /** `enum ggml_type` value, as stored in GGUF tensor infos. */
  readonly id: number;
  /** ggml's name (`ggml_type_name`, upper-cased): `F32`, `Q4_K`, `IQ4_NL`, … */
  readonly name: string;
  /** Elements per block (1 for plain element types). */
  readonly blockSize: number;
  /** Bytes per block (`ggml_type_size`). */
  readonly typeSize: number;
  /** Storage cost per element including scales: 8·typeSize/blockSize (Q4_K: 4.5). */
  readonly bitsPerWeight: number;
  /** Bit-exact `dequantize_row_*`, when this library implements the type. */
  readonly decode?: BlockDecoder;
  /** Bit-exact llama.cpp quantizer (no importance matrix), when implemented. */
  readonly encode?: BlockEncoder;
}

/** A known ggml type that has no decoder or encoder here (e.g. the IQ2/IQ3 grid types). */
export class GgmlUnsupportedTypeError extends Error {
  override name = "GgmlUnsupportedTypeError";
  constructor(readonly type: string, readonly operation: "decode" | "encode") {
    super(
      `ggml type ${type} has no ${operation}r in quantbench (supported: ${supported(operation)})`,
    );
  }
}

function supported(operation: "decode" | "encode"): string {
  return GGML_TYPES.filter((t) => t[operation] !== undefined).map((t) => t.name).join(", ");
}

function le(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function decodeF32(bytes: Uint8Array, n: number): Float32Array {
  blockCount("F32", 1, 4, n, bytes);
  const view = le(bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) y[i] = view.getFloat32(4 * i, true);
  return y;
}

function decodeF16(bytes: Uint8Array, n: number): Float32Array {
  blockCount("F16", 1, 2, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) y[i] = f16ToF32(bytes[2 * i]! | (bytes[2 * i + 1]! << 8));
  return y;
}

function decodeBf16(bytes: Uint8Array, n: number): Float32Array {
  blockCount("BF16", 1, 2, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) y[i] = bf16ToF32(bytes[2 * i]! | (bytes[2 * i + 1]! << 8));
  return y;
}

function decodeF64(bytes: Uint8Array, n: number): Float32Array {
  blockCount("F64", 1, 8, n, bytes);
  const view = le(bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) y[i] = view.getFloat64(8 * i, true);
  return y;
}

function intDecoder(name: string, size: 1 | 2 | 4): BlockDecoder {
  return (bytes, n) => {
    blockCount(name, 1, size, n, bytes);
    const view = le(bytes);
    const y = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = size === 1
        ? view.getInt8(i)
        : size === 2
        ? view.getInt16(2 * i, true)
        : view.getInt32(4 * i, true);
    }
    return y;
  };
}

function encodeF32(x: Float32Array): Uint8Array {
  const out = new Uint8Array(4 * x.length);
  const view = le(out);
  for (let i = 0; i < x.length; i++) view.setFloat32(4 * i, x[i]!, true);
  return out;
}

function encodeF16(x: Float32Array): Uint8Array {
  const out = new Uint8Array(2 * x.length);
  for (let i = 0; i < x.length; i++) {
    const h = f32ToF16(x[i]!);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >> 8;
  }
  return out;
}

const bf16Float = new Float32Array(1);
const bf16Word = new Uint32Array(bf16Float.buffer);

/** ggml `ggml_compute_fp32_to_bf16`: round to nearest even; NaNs stay NaN (quiet bit forced). */
export function f32ToBf16(x: number): number {
  bf16Float[0] = x;
  const u = bf16Word[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

function encodeBf16(x: Float32Array): Uint8Array {
  const out = new Uint8Array(2 * x.length);
  for (let i = 0; i < x.length; i++) {
    const h = f32ToBf16(x[i]!);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >> 8;
  }
  return out;
}

function type(
  id: number,
  name: string,
  blockSize: number,
  typeSize: number,
  decode?: BlockDecoder,
  encode?: BlockEncoder,
): GgmlType {
  const bitsPerWeight = (8 * typeSize) / blockSize;
  return { id, name, blockSize, typeSize, bitsPerWeight, decode, encode };
}

/**
 * Every type in ggml.h's `enum ggml_type` (removed ids 4, 5 and 31–33, 36–38 are absent), with
 * block sizes and bytes per block from ggml-common.h's `block_*` structs.
 */
export const GGML_TYPES: readonly GgmlType[] = [
  type(0, "F32", 1, 4, decodeF32, encodeF32),
  type(1, "F16", 1, 2, decodeF16, encodeF16),
  type(2, "Q4_0", 32, 18, decodeQ4_0, encodeQ4_0),
  type(3, "Q4_1", 32, 20, decodeQ4_1, encodeQ4_1),
  type(6, "Q5_0", 32, 22, decodeQ5_0, encodeQ5_0),
  type(7, "Q5_1", 32, 24, decodeQ5_1, encodeQ5_1),
  type(8, "Q8_0", 32, 34, decodeQ8_0, encodeQ8_0),
  type(9, "Q8_1", 32, 36),
  type(10, "Q2_K", 256, 84, decodeQ2K, encodeQ2K),
  type(11, "Q3_K", 256, 110, decodeQ3K, encodeQ3K),
  type(12, "Q4_K", 256, 144, decodeQ4K, encodeQ4K),
  type(13, "Q5_K", 256, 176, decodeQ5K, encodeQ5K),
  type(14, "Q6_K", 256, 210, decodeQ6K, encodeQ6K),
  type(15, "Q8_K", 256, 292, decodeQ8K),
  type(16, "IQ2_XXS", 256, 66),
  type(17, "IQ2_XS", 256, 74),
  type(18, "IQ3_XXS", 256, 98),
  type(19, "IQ1_S", 256, 50),
  type(20, "IQ4_NL", 32, 18, decodeIq4Nl, encodeIq4Nl),
  type(21, "IQ3_S", 256, 110),
  type(22, "IQ2_S", 256, 82),
  type(23, "IQ4_XS", 256, 136),
  type(24, "I8", 1, 1, intDecoder("I8", 1)),
  type(25, "I16", 1, 2, intDecoder("I16", 2)),
  type(26, "I32", 1, 4, intDecoder("I32", 4)),
  type(27, "I64", 1, 8),
  type(28, "F64", 1, 8, decodeF64),
  type(29, "IQ1_M", 256, 56),
  type(30, "BF16", 1, 2, decodeBf16, encodeBf16),
  type(34, "TQ1_0", 256, 54),
  type(35, "TQ2_0", 256, 66),
  type(39, "MXFP4", 32, 17, decodeMxfp4, encodeMxfp4),
  type(40, "NVFP4", 64, 36),
  type(41, "Q1_0", 128, 18),
  type(42, "Q2_0", 64, 18, decodeQ2_0, encodeQ2_0),
];

const byId = new Map(GGML_TYPES.map((t) => [t.id, t]));

/** ggml types by name (`Q4_K`, `IQ4_NL`, …); unknown names get a did-you-mean error. */
export const ggmlTypes: Registry<GgmlType> = new Registry(
  "ggml type",
  GGML_TYPES.map((t) => [t.name, t] as const),
);

/** The type with a GGUF/ggml type id, or undefined for ids ggml does not define. */
export function ggmlTypeById(id: number): GgmlType | undefined {
  return byId.get(id);
}

/** The type with a ggml name (case-insensitive); throws `UnknownNameError` for others. */
export function ggmlTypeByName(name: string): GgmlType {
  return ggmlTypes.get(name.toUpperCase());
}

/** Bytes that `nElements` elements of a type occupy; throws unless they fill whole blocks. */
export function tensorByteSize(type: GgmlType, nElements: number): number {
  return blockCount(type.name, type.blockSize, type.typeSize, nElements) * type.typeSize;
}

/** Decodes `nElements` values of `type` from `bytes` to float32, bit for bit as ggml. */
export function decodeTensor(type: GgmlType, bytes: Uint8Array, nElements: number): Float32Array {
  if (type.decode === undefined) throw new GgmlUnsupportedTypeError(type.name, "decode");
  return type.decode(bytes, nElements);
}

/** Encodes float32 values to `type` as llama.cpp's quantizer would (no importance matrix). */
export function encodeTensor(type: GgmlType, values: Float32Array): Uint8Array {
  if (type.encode === undefined) throw new GgmlUnsupportedTypeError(type.name, "encode");
  return type.encode(values);
}
