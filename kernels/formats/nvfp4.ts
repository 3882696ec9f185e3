/**
 * NVFP4: FP4 E2M1 elements in blocks of 16, each block with an FP8 E4M3 scale, and one FP32
 * scale for the whole tensor.
 *
 * The recipe and its float32 arithmetic, operation for operation, are those of vLLM's reference
 * `ref_nvfp4_quant` and `dequantize_to_dtype` (nvfp4 emulation utils), which mirror NVIDIA's
 * quantization kernels:
 *
 * ```
 * g        = 448 * 6 / amax(tensor)                       // global scale (encode direction)
 * s_block  = e4m3_sat(g * (amax(block) * f32(1/6)))       // stored block scale
 * out      = 1 / (s_block * (1 / g))                      // 0 when s_block is 0
 * code_i   = e2m1_sat(v_i * out)                          // ties to even
 * decode_i = e2m1(code_i) * (s_block / g)
 * ```
 *
 * with every product and quotient rounded to float32. TensorRT-Model-Optimizer computes the
 * same quantities in another order (`amax(block) / (6 * amax(tensor) / 2688)`) and torchao
 * clamps block scales below at the smallest normal E4M3; both can differ from this in the last
 * bit. Conventions of ours: a tensor whose amax is 0 gets `g = 1` (vLLM's would decode to NaN);
 * non-finite inputs, or an amax so small that `g` overflows float32, throw
 * {@linkcode UnrepresentableValueError}. Blocks run over the flat array (the last may be
 * partial); packing is low nibble first, as PyTorch's `float4_e2m1fn_x2`.
 *
 * @module
 */
import { FP4_E2M1, FP8_E4M3, UnrepresentableValueError } from "./minifloat.ts";
import { MalformedBlocksError, packCodes, unpackCodes } from "./mx.ts";

/** Elements per NVFP4 block. */
export const NVFP4_BLOCK_SIZE = 16;
/** Bits per element: 4-bit code plus an 8-bit scale per 16 (the per-tensor scale excluded). */
export const NVFP4_BITS_PER_WEIGHT = 4 + 8 / NVFP4_BLOCK_SIZE;

const E2M1_MAX = 6;
const E4M3_MAX = 448;
const SATURATE = { saturate: true } as const;
/** The Python scalar 1/6 as PyTorch uses it against a float32 tensor: rounded to float32. */
const RECIPROCAL_E2M1_MAX = Math.fround(1 / E2M1_MAX);

/** An NVFP4-encoded tensor. */
export interface Nvfp4Tensor {
  /** Number of elements. */
  length: number;
  /** Per-tensor float32 scale `g` (values are divided by it on decode). */
  globalScale: number;
  /** E4M3 block scale codes, one per 16 elements. */
  blockScales: Uint8Array;
  /** E2M1 codes, two per byte, low nibble first. */
  data: Uint8Array;
}

/**
 * Exact storage bits per element of an `n`-element tensor: codes, block scales (a partial last
 * block included) and the 32-bit tensor scale.
 */
export function nvfp4BitsPerWeight(n: number): number {
  if (!Number.isInteger(n) || n <= 0) {
    throw new RangeError(`Tensor size ${n} is not a positive integer`);
  }
  return (4 * n + 8 * Math.ceil(n / NVFP4_BLOCK_SIZE) + 32) / n;
}

function checkFinite(values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) {
      throw new UnrepresentableValueError(`NVFP4 cannot encode ${values[i]} at index ${i}`);
    }
  }
}

/** The per-tensor scale `448 * 6 / amax` in float32 (1 for an all-zero tensor). */
export function nvfp4GlobalScale(values: ArrayLike<number>): number {
  checkFinite(values);
  let amax = 0;
  for (let i = 0; i < values.length; i++) amax = Math.max(amax, Math.abs(values[i]!));
  if (amax === 0) return 1;
  const g = Math.fround(E4M3_MAX * E2M1_MAX / Math.fround(amax));
  if (!Number.isFinite(g)) {
    throw new UnrepresentableValueError(
      `NVFP4 global scale 2688 / ${amax} overflows float32; the tensor is too small to scale`,
    );
  }
  return g;
}

/** Encodes float32 values to NVFP4; `globalScale` defaults to {@linkcode nvfp4GlobalScale}. */
export function nvfp4Encode(
  values: ArrayLike<number>,
  globalScale: number = nvfp4GlobalScale(values),
): Nvfp4Tensor {
  checkFinite(values);
  const g = Math.fround(globalScale);
  if (!(g > 0) || !Number.isFinite(g)) {
    throw new RangeError(`NVFP4 global scale ${globalScale} is not a positive finite float32`);
  }
  const inverseG = Math.fround(1 / g);
  const n = values.length;
  const blockScales = new Uint8Array(Math.ceil(n / NVFP4_BLOCK_SIZE));
  const codes = new Uint8Array(n);
  for (let b = 0; b < blockScales.length; b++) {
    const start = b * NVFP4_BLOCK_SIZE;
    const end = Math.min(start + NVFP4_BLOCK_SIZE, n);
    let vmax = 0;
    for (let i = start; i < end; i++) vmax = Math.max(vmax, Math.abs(Math.fround(values[i]!)));
    const scale = Math.min(Math.fround(g * Math.fround(vmax * RECIPROCAL_E2M1_MAX)), E4M3_MAX);
    const scaleCode = FP8_E4M3.encode(scale, SATURATE);
    blockScales[b] = scaleCode;
    const t = Math.fround(FP8_E4M3.decode(scaleCode) * inverseG);
    const outScale = t === 0 ? 0 : Math.fround(1 / t);
    for (let i = start; i < end; i++) {
      // Saturating E2M1 encode = vLLM's clamp to ±6 followed by the cast.
      codes[i] = FP4_E2M1.encode(Math.fround(Math.fround(values[i]!) * outScale), SATURATE);
    }
  }
  return { length: n, globalScale: g, blockScales, data: packCodes(codes, 4) };
}

/** Decodes an NVFP4 tensor to float32 values. */
export function nvfp4Decode(tensor: Nvfp4Tensor): Float32Array {
  const n = tensor.length;
  const blocks = Math.ceil(n / NVFP4_BLOCK_SIZE);
  if (tensor.blockScales.length !== blocks) {
    throw new MalformedBlocksError(
      `NVFP4: ${tensor.blockScales.length} block scales for ${n} elements; expected ${blocks}`,
    );
  }
  const codes = unpackCodes(tensor.data, 4, n);
  const g = Math.fround(tensor.globalScale);
  const out = new Float32Array(n);
  for (let b = 0; b < blocks; b++) {
    const scale = Math.fround(FP8_E4M3.decode(tensor.blockScales[b]!) / g);
    const end = Math.min((b + 1) * NVFP4_BLOCK_SIZE, n);
    for (let i = b * NVFP4_BLOCK_SIZE; i < end; i++) out[i] = FP4_E2M1.decode(codes[i]!) * scale;
  }
  return out;
}
