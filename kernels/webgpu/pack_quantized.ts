/**
 * Repacking of quantized matrices into the WebGPU layouts of `pack.ts`, by the plan their format
 * module gives (`WeightFormat.gpu` in `kernels/formats/format.ts`, which documents each format's
 * row layout and which of its codecs the kernels decode):
 *
 * | format             | elements                          | scales                              |
 * | ------------------ | --------------------------------- | ----------------------------------- |
 * | `int`              | unsigned, zero 2^(b−1) or per group | f16/bf16/f32 per group, f16 zeros |
 * | `ggml` `q4_0`, `q5_0`, `q8_0` | unsigned, zero 8/16/128 | f16 per 32                        |
 * | `ggml` `q4_1`, `q5_1` | unsigned                       | f16 scale + f16 min per 32          |
 * | `ggml` `gguf_mxfp4`, `mx` | E2M1 / E2M3 / E3M2 / E4M3 / E5M2 | E8M0 per 32                 |
 * | `mx` `mxint8`      | unsigned, zero 128, ×2^-6         | E8M0 per 32                         |
 * | `nvfp4`            | E2M1                              | E4M3 per 16, ×1/tensor scale        |
 * | `scaled_minifloat` | minifloat                         | f32/f16/bf16 per row or group, or per tensor |
 * | `ggml` `f16`, `bf16` | IEEE half / bfloat16            | none                                |
 *
 * Codebook formats (`e8p`: QuIP#, `aqlm`, `vptq`) give a `GpuCodebookPlan` instead: their codes
 * and side tensors are uploaded as they are and decoded by their own kernels (`codebook_matmul.ts`).
 * QuIP (`quip`) gives one too: its codes are packed as unsigned integers of unit scale (the
 * matrix's parts) and its rotations' sides are uploaded as they are (`quip_matmul.ts`).
 *
 * Formats without a GPU decoder (`affine`: HQQ) and codecs their format does not run on the GPU
 * (K-quants, IQ4_NL, `q2_0`, groups that are not powers of two) are decoded to f32 on load, and
 * the packed matrix says so ({@linkcode PackedMatrix.fallback}). Every repacked matrix is checked
 * against the format's own decoder on its first and last rows; a mismatch (a layout the plan gets
 * wrong) also falls back to f32.
 *
 * @module
 */
import type { QuantizedWeight } from "../formats/format.ts";
import { formatOf } from "../formats/formats.ts";
import { decodeRow } from "../formats/matrix.ts";
import type { GpuCodebookPlan } from "../formats/gpu_layout.ts";
import {
  buildPacked,
  CHUNK,
  decodePackedRow,
  type Layout,
  type PackedMatrix,
  packFallback,
  threadsPerRow,
} from "./pack.ts";

/** Largest difference allowed between the format's decoder and the repacked layout's. */
const CHECK_TOLERANCE = 2 ** -20;

/** Whether two decoded rows agree (to float32 rounding of a rescaled block scale). */
function rowsAgree(a: Float32Array, b: Float32Array): boolean {
  let max = 0;
  for (const v of b) if (Number.isFinite(v)) max = Math.max(max, Math.abs(v));
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (Number.isNaN(y) ? !Number.isNaN(x) : !(Math.abs(x - y) <= CHECK_TOLERANCE * max)) {
      return false;
    }
  }
  return true;
}

/** Repacks a quantized matrix for the WGSL kernels, or decodes it to f32 (recording why). */
export function packQuantized(m: QuantizedWeight, maxBinding: number): PackedMatrix {
  const format = formatOf(m);
  if (format.gpu === "none") {
    return packFallback(m, maxBinding, `format "${format.name}" has no WGSL decoder`);
  }
  const p = format.gpu(m);
  if (typeof p === "string") return packFallback(m, maxBinding, p);
  if ("kind" in p) return packCodebook(m, p, maxBinding);
  const layout: Layout = { ...p.layout, tpr: threadsPerRow(Math.ceil(m.cols / CHUNK)) };
  const packed = buildPacked(m.rows, m.cols, layout, p.tensorScale, maxBinding, p.codes, p.scales);
  const expected = new Float32Array(m.cols);
  for (const r of new Set([0, m.rows - 1])) {
    decodeRow(m, r, expected);
    if (!rowsAgree(decodePackedRow(packed, r), expected)) {
      return packFallback(m, maxBinding, `repacked row ${r} differs from the format's decoder`);
    }
  }
  return packed;
}

/**
 * A codebook format's matrix as its plan's buffers, or f32 rows when one of them exceeds a
 * storage binding (codebook matrices are not split into row parts; QuIP's codes are, as an
 * integer matrix's).
 */
function packCodebook(
  m: QuantizedWeight,
  plan: GpuCodebookPlan,
  maxBinding: number,
): PackedMatrix {
  const sides = plan.kind === "quip"
    ? [plan.colScale, plan.u.factors, plan.u.perms, plan.v.factors, plan.v.perms]
    : Object.values(plan);
  const largest = Math.max(...sides.map((v) => ArrayBuffer.isView(v) ? v.byteLength : 0));
  if (largest > maxBinding) {
    return packFallback(
      m,
      maxBinding,
      `a ${largest}-byte part exceeds the largest storage binding (${maxBinding} bytes)`,
    );
  }
  if (plan.kind === "quip") {
    const { layout, codes, scales } = plan.codes;
    const full: Layout = { ...layout, tpr: threadsPerRow(Math.ceil(m.cols / CHUNK)) };
    return { ...buildPacked(m.rows, m.cols, full, 1, maxBinding, codes, scales), codebook: plan };
  }
  const chunks = Math.ceil(m.cols / CHUNK);
  return {
    rows: m.rows,
    cols: m.cols,
    chunks,
    groups: 1,
    layout: { element: "f32", bits: 32, zero: 0, scale: "none", gshift: 31, tpr: 32 },
    tensorScale: 1,
    parts: [],
    codebook: plan,
  };
}
