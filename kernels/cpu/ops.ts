/**
 * CPU reference kernels in float32 storage with float64 accumulation. These define the numbers every
 * other backend is checked against.
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import { wasmMatmul } from "./wasm_matmul.ts";
import { quantizeActivations } from "../formats/runtime_quant.ts";
import { GGML_ACTIVATIONS, ggmlActivations } from "../formats/ggml_activations.ts";
import { E8P_FORMAT } from "../formats/e8p_format.ts";
import { e8pWasmMatmul } from "./e8p_wasm_decode.ts";
import { QUIP_FORMAT } from "../formats/quip_format.ts";
import { quipMatmul } from "./quip_matmul.ts";

/**
 * `out[t][r] = Σ_c x[t][c] · W[r][c]` for `T = x.length / W.cols` rows of activations, in float32
 * on a WebAssembly SIMD kernel. Quantized weights are decoded one row at a time inside the loop,
 * never as a whole matrix (QuIP#'s `e8p`: the rows of its codes' matrix, decoded in the module
 * between float64 Hadamard transforms, `e8pWasmMatmul`; QuIP's `quip`: integer codes against the
 * rotated input, `quipMatmul`). With `activations` (an element format such as `int8`), each row
 * of `x` is first quantized per token, dynamically (`runtime_quant.ts`), and the kernel multiplies
 * the quantized values.
 */
export function matmul(out: Float32Array, x: Float32Array, w: Matrix, activations?: string): void {
  const input = activations === GGML_ACTIVATIONS
    ? ggmlActivations(x, w)
    : activations
    ? quantizeActivations(x, w.cols, activations)
    : x;
  // QuIP#'s and QuIP's codes multiply the transformed input (`e8pWasmMatmul`, `quipMatmul`): their
  // rows only mean something after the output transform, so W's rows are never decoded alone.
  if (w.kind === "coded" && E8P_FORMAT.owns(w.codec)) {
    e8pWasmMatmul(w, input, input.length / w.cols, out);
    return;
  }
  if (w.kind === "coded" && QUIP_FORMAT.owns(w.codec)) {
    quipMatmul(w, input, input.length / w.cols, out);
    return;
  }
  wasmMatmul(out, input, w);
}

/** RMSNorm of each `dim`-row of `x` into `out`: `x / sqrt(mean(x²) + eps) · weight`. */
export function rmsnorm(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  eps: number,
): void {
  const dim = weight.length;
  for (let base = 0; base < x.length; base += dim) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[base + i]! * x[base + i]!;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[base + i] = weight[i]! * (inv * x[base + i]!);
  }
}

/**
 * Rotary position embedding in place over rows of `nHeads × headDim`, row `t` at position
 * `pos + t`. `interleaved` rotates (x[2i], x[2i+1]); `half` rotates (x[i], x[i + headDim/2]).
 * Pair `i` turns by `(pos + t) · invFreq[i]`; without `invFreq`, by `(pos + t) · θ^(−2i/headDim)`.
 */
export function rope(
  x: Float32Array,
  nHeads: number,
  headDim: number,
  pos: number,
  theta: number,
  style: "interleaved" | "half",
  invFreq?: ArrayLike<number>,
): void {
  const half = headDim / 2;
  const freq = invFreq ??
    Float64Array.from({ length: half }, (_, i) => 1 / Math.pow(theta, (2 * i) / headDim));
  rotate(x, nHeads, headDim, style, ropeAngles(x.length / (nHeads * headDim), pos, freq));
}

/** `cos` and `sin` of the angle of pair `i` at row `t`, at `t · half + i` (see {@linkcode rope}). */
export interface RopeAngles {
  cos: Float64Array;
  sin: Float64Array;
}

/** The angles `(pos + t) · invFreq[i]` of `T` rows, for {@linkcode rotate}. */
export function ropeAngles(T: number, pos: number, invFreq: ArrayLike<number>): RopeAngles {
  const half = invFreq.length;
  const angles = { cos: new Float64Array(T * half), sin: new Float64Array(T * half) };
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const angle = (pos + t) * invFreq[i]!;
      angles.cos[t * half + i] = Math.cos(angle);
      angles.sin[t * half + i] = Math.sin(angle);
    }
  }
  return angles;
}

/**
 * {@linkcode rope} with its angles given, for at least the rows of `x` (angles made for a longer
 * sequence at the same start serve shorter ones).
 */
export function rotate(
  x: Float32Array,
  nHeads: number,
  headDim: number,
  style: "interleaved" | "half",
  angles: RopeAngles,
): void {
  const width = nHeads * headDim;
  const half = headDim / 2;
  const T = x.length / width;
  if (angles.cos.length < T * half) {
    throw new RangeError(`RoPE angles cover ${angles.cos.length / half} rows, not ${T}`);
  }
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const c = angles.cos[t * half + i]!;
      const s = angles.sin[t * half + i]!;
      for (let h = 0; h < nHeads; h++) {
        const base = t * width + h * headDim;
        const a = style === "interleaved" ? base + 2 * i : base + i;
        const b = style === "interleaved" ? a + 1 : a + half;
        const x0 = x[a]!;
        const x1 = x[b]!;
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
      }
    }
  }
}

/** In place `gate[i] = silu(gate[i]) · up[i]`. */
export function swiglu(gate: Float32Array, up: Float32Array): void {
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i]!;
    gate[i] = (g / (1 + Math.exp(-g))) * up[i]!;
  }
}

/**
 * A quantized KV cache as attention sees it: a query at position `p` reads the key of position
 * `j` from `keys` when `j < keysBefore(p)` and its value from `values` when `j < valuesBefore(p)`
 * (the float cache otherwise). Both arrays are laid out like the float cache.
 */
export interface KvView {
  keys: Float32Array;
  values: Float32Array;
  keysBefore(p: number): number;
  valuesBefore(p: number): number;
}

/**
 * Causal grouped-query attention for `T` new query rows at positions `pos .. pos+T-1` against a
 * cache holding keys/values for positions `0 .. pos+T-1` (`[position][nKvHeads × headDim]`), or
 * its quantized `view` where given.
 */
export function attention(
  out: Float32Array,
  q: Float32Array,
  keyCache: Float32Array,
  valueCache: Float32Array,
  pos: number,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
  view?: KvView,
): void {
  const T = q.length / (nHeads * headDim);
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const scores = new Float64Array(pos + T);
  const acc = new Float64Array(headDim);
  for (let t = 0; t < T; t++) {
    const len = pos + t + 1;
    const keysBefore = view ? view.keysBefore(pos + t) : 0;
    const valuesBefore = view ? view.valuesBefore(pos + t) : 0;
    for (let h = 0; h < nHeads; h++) {
      const qBase = (t * nHeads + h) * headDim;
      const kvOff = Math.floor(h / group) * headDim;
      let max = -Infinity;
      for (let j = 0, kb = kvOff; j < len; j++, kb += kvDim) {
        const keys = j < keysBefore ? view!.keys : keyCache;
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[qBase + d]! * keys[kb + d]!;
        s *= scale;
        scores[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      acc.fill(0);
      for (let j = 0, vb = kvOff; j < len; j++, vb += kvDim) {
        const values = j < valuesBefore ? view!.values : valueCache;
        const e = Math.exp(scores[j]! - max);
        sum += e;
        for (let d = 0; d < headDim; d++) acc[d]! += e * values[vb + d]!;
      }
      for (let d = 0; d < headDim; d++) out[qBase + d] = acc[d]! / sum;
    }
  }
}
