/**
 * {@linkcode RowCodec}s over the block codecs: ggml blocks (GGUF types, llama.cpp-exact encoders),
 * OCP MX, NVFP4, and `f16`/`bf16` storage; and {@linkcode encodeMatrix}, which quantizes a dense
 * matrix row by row with any codec (round-to-nearest is the codec's own encoder).
 *
 * Row layouts (every row independent, `nb = ceil(cols / blockSize)` blocks):
 *
 * - ggml types: the `nb` blocks exactly as ggml stores them (`block_q4_0` …), so a row's bytes are
 *   the bytes of that row in a GGUF tensor;
 * - MX: `nb` E8M0 scale bytes, then the `nb · 32` element codes packed LSB-first (as `mx.ts`);
 * - NVFP4: `nb` E4M3 block-scale bytes, then the `nb · 16` E2M1 codes, low nibble first; the
 *   float32 per-tensor scale is the matrix's `tensorScale` (`448 · 6 / amax` over the matrix).
 *
 * A row whose length is not a multiple of the block is padded with zeros to whole blocks: zeros
 * never raise a block's absolute maximum, and the padding is stored, so it counts in the bits per
 * weight (a 64-column row of a 256-element K-quant takes a whole super-block).
 *
 * @module
 */
import type { CodedMatrix, RowCodec } from "../../core/coded.ts";
import type { GgmlType } from "./gguf/blocks.ts";
import { mxDecode, mxEncode, type MxFormat } from "./mx.ts";
import { NVFP4_BLOCK_SIZE, nvfp4Decode, nvfp4Encode, nvfp4GlobalScale } from "./nvfp4.ts";

/** Thrown when a row buffer does not have the length a codec needs for the row. */
export class RowLengthError extends RangeError {
  override name = "RowLengthError";
}

/** Throws {@linkcode RowLengthError} unless `bytes` has `rowBytes` bytes. */
export function checkRowBytes(
  codec: string,
  bytes: Uint8Array,
  rowBytes: number,
  cols: number,
): void {
  if (bytes.length !== rowBytes) {
    throw new RowLengthError(
      `${codec}: a row of ${cols} values takes ${rowBytes} bytes, got a buffer of ${bytes.length}`,
    );
  }
}

/** `values` extended with zeros to a multiple of `block` (the same array when already one). */
export function padRow(values: Float32Array, block: number): Float32Array {
  const padded = Math.ceil(values.length / block) * block;
  if (padded === values.length) return values;
  const out = new Float32Array(padded);
  out.set(values);
  return out;
}

/** Shared parts of codecs made of whole blocks of `blockSize` values and `blockBytes` bytes. */
function blocked(name: string, blockSize: number, blockBytes: number) {
  const rowBytes = (cols: number) => Math.ceil(cols / blockSize) * blockBytes;
  return {
    name,
    blockSize,
    rowBytes,
    bitsPerWeight: (cols: number) => (8 * rowBytes(cols)) / cols,
  };
}

/**
 * A row codec over a ggml type with an encoder: rows are runs of the type's blocks, byte for byte
 * as in a GGUF file, encoded as `llama-quantize` does without an importance matrix.
 */
export function ggufRowCodec(name: string, type: GgmlType): RowCodec {
  const { encode, decode, blockSize, typeSize } = type;
  if (encode === undefined || decode === undefined) {
    throw new TypeError(`ggml type ${type.name} has no encoder and decoder to make a row codec`);
  }
  const base = blocked(name, blockSize, typeSize);
  return {
    ...base,
    encodeRow(values, out) {
      checkRowBytes(name, out, base.rowBytes(values.length), values.length);
      out.set(encode(padRow(values, blockSize)));
    },
    decodeRow(bytes, out) {
      checkRowBytes(name, bytes, base.rowBytes(out.length), out.length);
      const n = Math.ceil(out.length / blockSize) * blockSize;
      out.set(decode(bytes, n).subarray(0, out.length));
    },
    tensorScale: () => 1,
  };
}

/** A row codec for an OCP MX format: E8M0 scales first, then the packed element codes. */
export function mxRowCodec(format: MxFormat): RowCodec {
  const { blockSize, element } = format;
  const base = blocked(format.name, blockSize, 1 + (blockSize * element.bits) / 8);
  return {
    ...base,
    encodeRow(values, out) {
      checkRowBytes(format.name, out, base.rowBytes(values.length), values.length);
      const blocks = mxEncode(format, padRow(values, blockSize));
      out.set(blocks.scales);
      out.set(blocks.data, blocks.scales.length);
    },
    decodeRow(bytes, out) {
      checkRowBytes(format.name, bytes, base.rowBytes(out.length), out.length);
      const nb = Math.ceil(out.length / blockSize);
      const values = mxDecode(format, {
        length: nb * blockSize,
        scales: bytes.subarray(0, nb),
        data: bytes.subarray(nb),
      });
      out.set(values.subarray(0, out.length));
    },
    tensorScale: () => 1,
  };
}

const nvfp4Base = blocked("nvfp4", NVFP4_BLOCK_SIZE, 1 + NVFP4_BLOCK_SIZE / 2);

/** NVFP4 rows: E4M3 block scales first, then E2M1 codes; the tensor scale is the matrix's. */
export const NVFP4_ROW_CODEC: RowCodec = {
  ...nvfp4Base,
  encodeRow(values, out, tensorScale) {
    checkRowBytes("nvfp4", out, nvfp4Base.rowBytes(values.length), values.length);
    const encoded = nvfp4Encode(padRow(values, NVFP4_BLOCK_SIZE), tensorScale);
    out.set(encoded.blockScales);
    out.set(encoded.data, encoded.blockScales.length);
  },
  decodeRow(bytes, out, tensorScale) {
    checkRowBytes("nvfp4", bytes, nvfp4Base.rowBytes(out.length), out.length);
    const nb = Math.ceil(out.length / NVFP4_BLOCK_SIZE);
    const values = nvfp4Decode({
      length: nb * NVFP4_BLOCK_SIZE,
      globalScale: tensorScale,
      blockScales: bytes.subarray(0, nb),
      data: bytes.subarray(nb),
    });
    out.set(values.subarray(0, out.length));
  },
  tensorScale: (data) => nvfp4GlobalScale(data),
};

/**
 * Encodes a dense row-major `[rows][cols]` matrix with `codec`, row by row: round-to-nearest in
 * the codec's own sense (its encoder), with the codec's per-tensor scale computed over the whole
 * matrix first.
 */
export function encodeMatrix(
  codec: RowCodec,
  rows: number,
  cols: number,
  data: Float32Array,
): CodedMatrix {
  if (data.length !== rows * cols) {
    throw new RangeError(`Matrix data has ${data.length} elements, expected ${rows}×${cols}`);
  }
  const tensorScale = codec.tensorScale(data);
  const rowBytes = codec.rowBytes(cols);
  const bytes = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r++) {
    codec.encodeRow(
      data.subarray(r * cols, (r + 1) * cols),
      bytes.subarray(r * rowBytes, (r + 1) * rowBytes),
      tensorScale,
    );
  }
  return { kind: "coded", codec: codec.name, rows, cols, rowBytes, data: bytes, tensorScale };
}
