/**
 * Activations as llama.cpp's CPU matmuls round them (`activations: ggml`): ggml quantizes each
 * row of a matmul's input to the weight type's `vec_dot_type` before its integer dot products —
 * q8_0 (blocks of 32, an f16 scale) for Q4_0, Q5_0, Q8_0, IQ4_NL and MXFP4 weights, q8_1 (the same
 * codes) for Q4_1 and Q5_1, q8_K (blocks of 256, a float32 scale) for the K-quants, f16 or bf16
 * for F16 and BF16 weights, and nothing for F32. The dot product of the weight's codes with the
 * activation codes equals (up to float32 summation order) the float product of the decoded weights
 * with the decoded activations, so rounding the input here and multiplying in float gives what
 * ggml computes. Rows that are not whole blocks stay in float (llama.cpp keeps such tensors F32).
 *
 * q8_0 follows ggml's AVX path (`quantize_row_q8_0`: `d = amax/127`, codes `round(x · 127/amax)`
 * to nearest even, `d` stored as f16); q8_K its reference (`iscale = −127/max` of the signed
 * largest value, codes `min(127, nearest_int(iscale · x))`, `d = 1/iscale` in float32).
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import { roundHalfEven } from "./int.ts";
import { roundScale } from "./scale_dtype.ts";

/** The run-time activation setting that rounds as llama.cpp's CPU matmuls do. */
export const GGML_ACTIVATIONS = "ggml";

/** ggml's `vec_dot_type` for the activations of a matmul with these weights. */
export type GgmlVecDot = "q8_0" | "q8_1" | "q8_K" | "f16" | "bf16" | "f32";

const VEC_DOT: Readonly<Record<string, GgmlVecDot>> = {
  q4_0: "q8_0",
  q5_0: "q8_0",
  q8_0: "q8_0",
  iq4_nl: "q8_0",
  gguf_mxfp4: "q8_0",
  q4_1: "q8_1",
  q5_1: "q8_1",
  q2_k: "q8_K",
  q3_k: "q8_K",
  q4_k: "q8_K",
  q5_k: "q8_K",
  q6_k: "q8_K",
  f16: "f16",
  bf16: "bf16",
};

/** The activation type ggml multiplies `w` with (`f32`: no rounding). */
export function ggmlVecDot(w: Matrix): GgmlVecDot {
  return w.kind === "coded" ? VEC_DOT[w.codec] ?? "f32" : "f32";
}

/** `x` (rows of `w.cols`) rounded as ggml rounds the input of a matmul with `w`; `x` if none. */
export function ggmlActivations(x: Float32Array, w: Matrix): Float32Array {
  const type = ggmlVecDot(w);
  const cols = w.cols;
  if (type === "f32") return x;
  if (type === "f16" || type === "bf16") return x.map((v) => roundScale(v, type));
  const block = type === "q8_K" ? 256 : 32;
  if (cols % block !== 0) return x;
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length; b += block) {
    if (type === "q8_K") q8K(x, out, b);
    else q8_0(x, out, b);
  }
  return out;
}

function q8_0(x: Float32Array, out: Float32Array, b: number): void {
  let amax = 0;
  for (let i = b; i < b + 32; i++) amax = Math.max(amax, Math.abs(x[i]!));
  const d = Math.f16round(Math.fround(amax / 127));
  const id = amax !== 0 ? Math.fround(127 / amax) : 0;
  for (let i = b; i < b + 32; i++) out[i] = roundHalfEven(Math.fround(x[i]! * id)) * d;
}

function q8K(x: Float32Array, out: Float32Array, b: number): void {
  let amax = 0;
  let max = 0;
  for (let i = b; i < b + 256; i++) {
    const ax = Math.abs(x[i]!);
    if (ax > amax) {
      amax = ax;
      max = x[i]!;
    }
  }
  if (amax === 0) return; // the block stays zero
  const iscale = Math.fround(-127 / max);
  const d = Math.fround(1 / iscale);
  for (let i = b; i < b + 256; i++) {
    out[i] = Math.min(127, roundHalfEven(Math.fround(iscale * x[i]!))) * d;
  }
}
