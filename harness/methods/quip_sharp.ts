/**
 * QuIP# (Tseng et al., 2024) without its fine-tuning stage, as quip-sharp's
 * `lib/algo/quip.py` (`quantize`, `incoherence_preprocess`, `LDLQ`) and `quantize_linear` run it
 * with the E8P12 codebook, into the `e8p` format (`kernels/formats/e8p_format.ts`). A suite asks
 * for it with the format `int2`, `int3` or `int4` (no groups): the bit width picks the codebook —
 * E8P12, or its residual variants E8P12 + E81B (`E8P12RVQ3B`) and E8P12 + E8P12 (`E8P12RVQ4B`).
 *
 * Per linear `W` (`m × n`) with its group's Hessian `H = Σ xxᵀ` over the calibration tokens
 * (`true_sequential` as GPTQ: inputs from the block with its earlier groups quantized):
 *
 * 1. `W /= rms(W)` (the matrix scale, fused into `SV` at the end); `H /= mean(diag H)`,
 *    `H += sigma_reg · I` (`regularize_H`).
 * 2. Random signs `S_U` (n), `S_V` (m) from the suite seed; the randomized Hadamard transforms
 *    `H ← M_nᵀ S_U H S_U M_n`, `W ← M_mᵀ S_V W S_U M_n` (`RHT_H`, `RHT_W`; `M` as in
 *    `kernels/cpu/hadamard.ts`).
 * 3. Block LDL of `H` with blocks of 8 (`block_LDL`): `H = L D Lᵀ`, `L` unit block
 *    lower-triangular. `W /= Wscale`, `Wscale = rms(W) / opt_scale` (`scale_override` when > 0;
 *    `opt_scale` 1.03 for 2 and 4 bits, 0.98 for 3).
 * 4. LDLQ from the last block of 8 columns to the first: block `k` rounds
 *    `W_k + (W_{>k} − Ŵ_{>k}) · L_{>k,k}` to the nearest E8P12 codeword, row by row (residual
 *    variants: then the residual times ρ to the second codebook's nearest point, `c₁ + c₂ / ρ`).
 * 5. `tune_iters` passes, again from the last block: block `k` rounds
 *    `Ŵ_k + (W − Ŵ) · H_{:,k} · H_{k,k}⁻¹` (`quip_tune_iters`).
 * 6. Stored: the codes, `S_U`, and `SV = S_V · Wscale · rms(W)` in f16.
 *
 * Columns not a multiple of 8 (stories260K's 172) are padded to one: zero weights, identity
 * Hessian rows and columns, so that the padding neither moves nor is moved by the real columns.
 * Not done here: quip-sharp's low-rank term (`lora_rank`, 0 by default), `rescale_WH` (off by
 * default), the fine-tuning (`ft_*`), and its fp64 retry when a Cholesky fails (this port runs
 * in float64 throughout).
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type { LinearName, LlamaModel, Matrix } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { seededRandom } from "../../core/random.ts";
import { hadamardPlan, hadamardTransform } from "../../kernels/cpu/hadamard.ts";
import {
  E8P_RVQ,
  e8pDecode,
  e8pNearest,
  secondDecode,
  secondNearest,
} from "../../kernels/formats/e8p_codebook.ts";
import { e8pMatrix, e8pVectors } from "../../kernels/formats/e8p_format.ts";
import { f32ToF16 } from "../../kernels/formats/gguf/numeric.ts";
import { addGram, cholesky, transpose } from "./linalg.ts";
import { decodeMatrix } from "./gptq.ts";
import {
  calibrationWindows,
  matrixBuffers,
  MemoryMeter,
  resolveCalibration,
} from "./calibration.ts";
import { quantizeLayers } from "./sequential.ts";
import { withRuntime } from "./runtime.ts";

/** Options and their defaults: quip-sharp's (`quantize_finetune_llama.py` arguments). */
export const QUIP_SHARP_OPTIONS = {
  calibration: { dataset: "", samples: 128, seq_len: 2048 },
  codebook: "E8P12",
  sigma_reg: 0.01,
  scale_override: -1,
  tune_iters: 10,
  true_sequential: true,
};

/** E8P12's `opt_scale`: the RMS of the scaled weights is 1.03 (`latticee8_padded12.py`). */
const E8P12_OPT_SCALE = 1.03;

/** Thrown for QuIP# options or shapes it cannot work with. */
export class QuipSharpError extends Error {
  override name = "QuipSharpError";
}

/** Settings of one linear's quantization. */
export interface QuipSharpSettings {
  /** Bits per weight of the codes: 2 (E8P12), 3 or 4 (residual variants). */
  bits: 2 | 3 | 4;
  sigmaReg: number;
  scaleOverride: number;
  tuneIters: number;
}

/** The stored matrix and the dequantized weights (`m × n`, float64). */
export interface QuipSharpResult {
  matrix: Matrix;
  q: Float64Array;
}

const rms = (a: Float64Array, count = a.length) => {
  let s = 0;
  for (let i = 0; i < count; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s / count);
};

/** Rows of `a` (`rows × n`) transformed by `Mᵀ` (the transform of size `n`). */
function rowsTimesM(a: Float64Array, n: number): void {
  hadamardTransform(a, n, true);
}

/** Inverse of the `b × b` lower-triangular `l`. */
function lowerInverse(l: Float64Array, b: number): Float64Array {
  const inv = new Float64Array(b * b);
  for (let j = 0; j < b; j++) {
    inv[j * b + j] = 1 / l[j * b + j]!;
    for (let i = j + 1; i < b; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += l[i * b + k]! * inv[k * b + j]!;
      inv[i * b + j] = -s / l[i * b + i]!;
    }
  }
  return inv;
}

/** Inverse of the symmetric positive definite `b × b` `a` (through its Cholesky factor). */
function spdInverse(a: Float64Array, b: number): Float64Array {
  const li = lowerInverse(cholesky(a, b), b);
  const inv = new Float64Array(b * b);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < b; j++) {
      let s = 0;
      for (let k = Math.max(i, j); k < b; k++) s += li[k * b + i]! * li[k * b + j]!;
      inv[i * b + j] = s;
    }
  }
  return inv;
}

/**
 * QuIP# of one `m × n` matrix `w0` with Hessian `h0` (`n × n`, not modified) and signs `su`
 * (n), `sv` (m) of ±1.
 */
export function quipSharpQuantize(
  w0: Float64Array,
  h0: Float64Array,
  m: number,
  n: number,
  su: Int8Array,
  sv: Int8Array,
  settings: QuipSharpSettings,
): QuipSharpResult {
  hadamardPlan(m);
  hadamardPlan(n);
  const vectors = e8pVectors(n);
  const np = 8 * vectors;
  const matrixScale = rms(w0);
  // W ← M_mᵀ S_V (W / rms) S_U M_n: rows by S_U then M_nᵀ-on-rows (= W M_n), columns likewise.
  const w = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) w[r * n + c] = w0[r * n + c]! / matrixScale * su[c]! * sv[r]!;
  }
  rowsTimesM(w, n);
  const wt = transpose(w, m, n);
  rowsTimesM(wt, m);
  const wr = transpose(wt, n, m);
  // H ← M_nᵀ S_U H S_U M_n after regularize_H.
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h0[i * n + i]!;
  mean /= n;
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      h[i * n + j] = (h0[i * n + j]! / mean + (i === j ? settings.sigmaReg : 0)) * su[i]! * su[j]!;
    }
  }
  rowsTimesM(h, n);
  const ht = transpose(h, n, n);
  rowsTimesM(ht, n);
  // Padded to np columns: identity Hessian, zero weights.
  const hr = new Float64Array(np * np);
  for (let i = 0; i < np; i++) {
    for (let j = 0; j < np; j++) {
      hr[i * np + j] = i < n && j < n ? (ht[j * n + i]! + ht[i * n + j]!) / 2 : i === j ? 1 : 0;
    }
  }
  const rvq = settings.bits === 2 ? undefined : E8P_RVQ[settings.bits];
  let wscale = rms(wr);
  wscale /= settings.scaleOverride > 0 ? settings.scaleOverride : rvq?.optScale ?? E8P12_OPT_SCALE;
  const W = new Float64Array(m * np);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) W[r * np + c] = wr[r * n + c]! / wscale;
  }
  // Block LDL: L = chol(H), each 8-column block times the inverse of its diagonal block.
  const chol = cholesky(hr, np);
  const L = new Float64Array(np * np);
  const diag = new Float64Array(64);
  for (let k = 0; k < vectors; k++) {
    for (let i = 0; i < 8; i++) {
      for (let j = 0; j < 8; j++) diag[i * 8 + j] = chol[(8 * k + i) * np + 8 * k + j]!;
    }
    const inv = lowerInverse(diag, 8);
    for (let i = 0; i < np; i++) {
      for (let j = 0; j < 8; j++) {
        let s = 0;
        for (let t = 0; t < 8; t++) s += chol[i * np + 8 * k + t]! * inv[t * 8 + j]!;
        L[i * np + 8 * k + j] = s;
      }
    }
  }
  const hat = new Float64Array(m * np);
  const codes = new Uint16Array(m * vectors);
  const second = new Uint16Array(rvq ? m * vectors : 0);
  const target = new Float64Array(8);
  const residual = new Float64Array(8);
  const round = (r: number, k: number) => {
    const code = e8pNearest(target);
    const at = r * np + 8 * k;
    codes[r * vectors + k] = code;
    e8pDecode(code, hat, at);
    if (rvq === undefined) return;
    for (let i = 0; i < 8; i++) residual[i] = (target[i]! - hat[at + i]!) * rvq.residScale;
    const next = secondNearest(rvq, residual);
    second[r * vectors + k] = next;
    secondDecode(rvq, next, residual);
    for (let i = 0; i < 8; i++) hat[at + i]! += residual[i]! / rvq.residScale;
  };
  for (let k = vectors - 1; k >= 0; k--) {
    for (let r = 0; r < m; r++) {
      for (let j = 0; j < 8; j++) {
        let s = W[r * np + 8 * k + j]!;
        for (let c = 8 * (k + 1); c < np; c++) {
          s += (W[r * np + c]! - hat[r * np + c]!) * L[c * np + 8 * k + j]!;
        }
        target[j] = s;
      }
      round(r, k);
    }
  }
  // Refinement passes: E = W − Ŵ kept up to date; target = Ŵ_k + E · H_{:,k} · H_{k,k}⁻¹.
  const blockInv: Float64Array[] = [];
  for (let k = 0; k < vectors; k++) {
    for (let i = 0; i < 8; i++) {
      for (let j = 0; j < 8; j++) diag[i * 8 + j] = hr[(8 * k + i) * np + 8 * k + j]!;
    }
    blockInv.push(spdInverse(diag, 8));
  }
  const e = new Float64Array(m * np);
  for (let i = 0; i < e.length; i++) e[i] = W[i]! - hat[i]!;
  const eh = new Float64Array(8);
  for (let pass = 0; pass < settings.tuneIters; pass++) {
    for (let k = vectors - 1; k >= 0; k--) {
      const inv = blockInv[k]!;
      for (let r = 0; r < m; r++) {
        eh.fill(0);
        for (let c = 0; c < np; c++) {
          const ec = e[r * np + c]!;
          if (ec === 0) continue;
          for (let j = 0; j < 8; j++) eh[j]! += ec * hr[c * np + 8 * k + j]!;
        }
        for (let j = 0; j < 8; j++) {
          let s = hat[r * np + 8 * k + j]!;
          for (let t = 0; t < 8; t++) s += eh[t]! * inv[t * 8 + j]!;
          target[j] = s;
        }
        round(r, k);
        for (let j = 0; j < 8; j++) {
          const at = r * np + 8 * k + j;
          e[at] = W[at]! - hat[at]!;
        }
      }
    }
  }
  const suBits = new Uint8Array(Math.ceil(n / 8));
  for (let c = 0; c < n; c++) if (su[c]! < 0) suBits[c >> 3]! |= 1 << (c & 7);
  const svHalf = Uint16Array.from(
    { length: m },
    (_, r) => f32ToF16(Math.fround(sv[r]! * wscale * matrixScale)),
  );
  const matrix = e8pMatrix(
    m,
    n,
    codes,
    suBits,
    svHalf,
    settings.bits === 2 ? undefined : { bits: settings.bits, codes: second },
  );
  return { matrix, q: decodeMatrix(matrix) };
}

function settingsOf(options: Record<string, unknown>, format: FormatSpec): QuipSharpSettings {
  return { ...optionSettings(options), bits: Number(format.weights.slice(3)) as 2 | 3 | 4 };
}

/** The settings the options give (throws {@linkcode QuipSharpError} for values out of range). */
function optionSettings(options: Record<string, unknown>): Omit<QuipSharpSettings, "bits"> {
  const o = { ...QUIP_SHARP_OPTIONS, ...options };
  const sigmaReg = Number(o.sigma_reg);
  const scaleOverride = Number(o.scale_override);
  const tuneIters = Number(o.tune_iters);
  if (o.codebook !== "E8P12") {
    throw new QuipSharpError(`QuIP# codebook ${JSON.stringify(o.codebook)} is not E8P12`);
  }
  if (
    !(sigmaReg >= 0) || !Number.isFinite(scaleOverride) ||
    !(Number.isInteger(tuneIters) && tuneIters >= 0)
  ) {
    throw new QuipSharpError(
      `QuIP# needs sigma_reg ≥ 0, a numeric scale_override and an integer tune_iters ≥ 0, got ` +
        `${o.sigma_reg}, ${o.scale_override} and ${o.tune_iters}`,
    );
  }
  return { sigmaReg, scaleOverride, tuneIters };
}

/** ±1 signs of length `n` from `random`. */
function signs(n: number, random: () => number): Int8Array {
  return Int8Array.from({ length: n }, () => (random() < 0.5 ? -1 : 1));
}

/**
 * The Hessian QuIP# quantizes a group's linears against: `Σ xxᵀ` over every token of its
 * calibration inputs (one `tokens × cols` array per window), summed in float64 from float32
 * chunks (`addGram`). Exported so that the reference comparison (`fixtures/methods/`) can be
 * given the very same matrix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { quipSharpHessian } from "./quip_sharp.ts";
 * const h = quipSharpHessian([Float32Array.of(1, 2, 3, 4)], 2); // two tokens of width 2
 * assert.deepEqual([...h], [10, 14, 14, 20]);
 * ```
 */
export function quipSharpHessian(inputs: Float32Array[], cols: number): Float64Array {
  const h = new Float64Array(cols * cols);
  for (const x of inputs) addGram(h, x, cols);
  return h;
}

/**
 * The random signs `S_U` (cols) and `S_V` (rows) of linear `name` of layer `layer` under suite
 * seed `seed` (the same at every bit width; a reference can run with them).
 */
export function quipSharpSigns(
  seed: number,
  layer: number,
  name: LinearName,
  rows: number,
  cols: number,
): { su: Int8Array; sv: Int8Array } {
  const random = seededRandom(seed, `quip_sharp:${layer}:${name}`);
  const su = signs(cols, random);
  return { su, sv: signs(rows, random) };
}

async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const settings = settingsOf(options, format);
  const calibration = resolveCalibration(
    "quip_sharp",
    options.calibration,
    ctx,
    model.config.maxSeqLen,
  );
  const windows = await calibrationWindows(model, calibration, ctx.seed);
  const meter = new MemoryMeter();
  const layers = await quantizeLayers(
    model,
    {
      kind: "groups",
      sequential: options.true_sequential !== false,
      quantizeGroup({ names }, inputs, { original, index }) {
        const h = quipSharpHessian(inputs!, original[names[0]!].cols);
        const held = meter.hold(h);
        const quantized: Partial<Record<LinearName, Matrix>> = {};
        for (const name of names) {
          const m = original[name];
          const { su, sv } = quipSharpSigns(ctx.seed, index, name, m.rows, m.cols);
          const q = quipSharpQuantize(decodeMatrix(m), h, m.rows, m.cols, su, sv, settings);
          meter.hold(matrixBuffers(q.matrix));
          quantized[name] = q.matrix;
        }
        meter.release(held);
        return quantized;
      },
    },
    windows,
    meter,
  );
  ctx.record?.({ quantize_peak_bytes: meter.peak });
  return withRuntime({ ...model, weights: { ...model.weights, layers } }, format);
}

/** Why QuIP# cannot produce `format`, or undefined. */
function unsupported(format: FormatSpec): string | undefined {
  if (!["int2", "int3", "int4"].includes(format.weights)) {
    return `quip_sharp stores E8P12 codes and their residual variants (2, 3 or 4 bits per ` +
      `weight): format "${format.weights}" is not int2, int3 or int4`;
  }
  if (format.group !== 0 || !format.symmetric) {
    return `quip_sharp scales whole rows (E8P12 has no groups or zero points): group ` +
      `${format.group}, symmetric ${format.symmetric} contradict it`;
  }
  return undefined;
}

/** QuIP#: randomized Hadamard incoherence processing, block LDLQ onto the E8P12 lattice codebook. */
export const quipSharp: Method = {
  name: "quip_sharp",
  description:
    "QuIP# (no fine-tuning): random Hadamard transforms + block LDLQ onto E8P12 (+ residual) codes",
  options: QUIP_SHARP_OPTIONS,
  unsupported,
  checkOptions: (options) => void optionSettings(options),
  quantize: quantizeModel,
};
