/**
 * Shared plumbing of the ggml block codecs: length checks with a named error, and little-endian
 * field reads from a block's bytes.
 *
 * @module
 */
import { f16ToF32 } from "./numeric.ts";

/** A buffer or element count that does not fit a ggml type's block layout. */
export class GgmlBlockLengthError extends RangeError {
  override name = "GgmlBlockLengthError";
}

/**
 * Number of blocks that `nElements` elements of a type fill; throws when the count is not a
 * whole number of blocks or when `bytes` (if given) holds fewer than that many blocks.
 */
export function blockCount(
  type: string,
  blockSize: number,
  typeSize: number,
  nElements: number,
  bytes?: Uint8Array,
): number {
  if (!Number.isSafeInteger(nElements) || nElements < 0) {
    throw new GgmlBlockLengthError(`${type}: element count ${nElements} is not a valid count`);
  }
  if (nElements % blockSize !== 0) {
    throw new GgmlBlockLengthError(
      `${type}: element count ${nElements} is not a multiple of the block size ${blockSize}`,
    );
  }
  const nBlocks = nElements / blockSize;
  if (bytes !== undefined && bytes.length < nBlocks * typeSize) {
    throw new GgmlBlockLengthError(
      `${type}: ${nElements} elements need ${nBlocks * typeSize} bytes, got ${bytes.length}`,
    );
  }
  return nBlocks;
}

/** Float32 value of the little-endian half at `offset`. */
export function readF16(bytes: Uint8Array, offset: number): number {
  return f16ToF32(bytes[offset]! | (bytes[offset + 1]! << 8));
}

/** Writes a half bit pattern little-endian at `offset`. */
export function writeU16(bytes: Uint8Array, offset: number, bits: number): void {
  bytes[offset] = bits & 0xff;
  bytes[offset + 1] = (bits >> 8) & 0xff;
}
