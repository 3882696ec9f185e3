/**
 * QuIP (Chee et al., 2023), as the authors' repository (Cornell-RelaxML/QuIP, formerly
 * jerry-chee/QuIP) runs it with `--incoh_processing` (`opt.py`: `pre_gptqH`, `pre_rescale`,
 * `pre_proj`, `qfn b`) and LDLQ rounding (`--quant ldlq`), into the `quip` format
 * (`kernels/formats/quip_format.ts`). A suite asks for it with the format `int2`, `int3` or
 * `int4` (no groups).
 *
 * Per linear `W` (`m × n`) with its group's Hessian `H = Σ xxᵀ` over the calibration tokens
 * (inputs from the float block, earlier layers quantized, as `opt_sequential` captures them):
 *
 * 1. `pre_rescale` (`QuantMethod.preproc`): `H /= max|H|`; `s = (diag H / diag WᵀW)^¼` (both
 *    clamped to ≥ 1e-8); `W ← W · diag(s)`, `H ← diag(s)⁻¹ H diag(s)⁻¹`.
 * 2. `pre_proj`: `H ← H · n / (tr H + 1e-8) + 0.01 I`; `W ← U W Vᵀ`, `H ← V H Vᵀ` with `U`, `V`
 *    the seeded random orthogonal matrices of `kernels/formats/quip_rotation.ts`
 *    (`pre_proj_extra` picks the variant).
 * 3. `pre_gptqH`: columns with `H_ii = 0` are zeroed (`H_ii = 1`), `H += percdamp · mean(diag H) I`.
 * 4. `qfn b`: `scale = 2.4 · rms(W) + 1e-16`, `W' = clamp((W / scale + 1) / 2 · (2^b − 1))`.
 * 5. LDLQ (`round_ldl`): `L` the Cholesky factor of `H` with unit diagonal; from the last column to
 *    the first, `Q_i = clamp(⌊W'_i + (W' − Q)_{>i} L_{>i,i} + ½⌋)`; `lazy_batch` computes the
 *    same in blocks of 128 columns (`round_ldl_block`). `ldlqRG` first sorts the columns by
 *    `diag H` (ascending, so the largest are rounded first). Then `npasses` greedy passes, each
 *    from the last column: `Q_i ← round(Q_i − (S·H)_i / H_ii)` with `S = Q − W'` and `H` over
 *    its largest diagonal entry, clamped after the pass, stopping at a fixed point.
 * 6. Stored: the codes, the scale, `s`, and the seeds of `U` and `V` (the authors' `postproc`
 *    applies `Uᵀ · V` and `diag(s)⁻¹` to a float copy; here the CPU matmul does at run time).
 *
 * The options are the authors' flags with their defaults (`opt.py`): `npasses` 0, `percdamp`
 * 0.01, `lazy_batch` off, 128 calibration windows of 2,048 tokens. One difference:
 * `--incoh_processing` sets `args.proj_extra = 1`, a name the code never reads, so the authors'
 * runs took `pre_proj_extra` 0 (blocked butterflies); the default here is 1, the Kronecker
 * product `A ⊗ B` of two Haar-random orthogonal matrices that the paper and the flag describe.
 * The repository has no Hadamard variant (that arrived with QuIP#, `quip_sharp`). Not ported:
 * `unbiased` (stochastic rounding), the other `--quant` rounders (`allbal`, `ldlbal_admm`,
 * `nearest`, `gptq`), and runs without `pre_proj` (their per-channel `qfn a` grid). Arithmetic is
 * float64 throughout (the authors': float32).
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import type { LinearName, LlamaModel, Matrix } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { seededRandom } from "../../core/random.ts";
import {
  applyQuipRotation,
  type QuipProjMode,
  type QuipRotation,
  quipRotation,
} from "../../kernels/formats/quip_rotation.ts";
import { quipMatrix } from "../../kernels/formats/quip_format.ts";
import { addGram, cholesky, transpose } from "./linalg.ts";
import { roundHalfEven } from "../../kernels/formats/int.ts";
import { decodeMatrix } from "./gptq.ts";
import {
  calibrationWindows,
  matrixBuffers,
  MemoryMeter,
  resolveCalibration,
} from "./calibration.ts";
import { quantizeLayers } from "./sequential.ts";
import { withRuntime } from "./runtime.ts";

/** Options and their defaults: the authors' `opt.py` flags under `--incoh_processing`. */
export const QUIP_OPTIONS = {
  calibration: { dataset: "", samples: 128, seq_len: 2048 },
  quant: "ldlq",
  npasses: 0,
  percdamp: 0.01,
  pre_rescale: true,
  pre_proj_extra: 1,
  lazy_batch: false,
};

/** Thrown for QuIP options it cannot run with. */
export class QuipError extends Error {
  override name = "QuipError";
}

/** Settings of one linear's quantization. */
export interface QuipSettings {
  bits: 2 | 3 | 4;
  /** `ldlq`, or `ldlqRG` (columns sorted by the Hessian's diagonal first). */
  quant: "ldlq" | "ldlqRG";
  npasses: number;
  percdamp: number;
  rescale: boolean;
  lazyBatch: boolean;
}

/** One linear's result: its codes (`m × n`), grid scale and column scales. */
export interface QuipResult {
  codes: Uint8Array;
  scale: number;
  colScale: Float32Array;
}

/** Columns per lazy batch (`round_ldl_block`'s `blocksize`). */
const LAZY_BLOCK = 128;

/** Each of the `rows` rows of `a` (length `rot.n`) replaced by `rot` times it. */
function rotateRows(a: Float64Array, rows: number, rot: QuipRotation): void {
  const tmp = new Float64Array(rot.n);
  for (let r = 0; r < rows; r++) applyQuipRotation(rot, a, r * rot.n, false, tmp);
}

/**
 * LDLQ of `w` (`m × d`, already on the grid's scale `[0, maxq]`) with Hessian `h` (`d × d`), then
 * `npasses` greedy passes (`round_ldl` / `round_ldl_block`).
 */
export function roundLdl(
  w: Float64Array,
  h: Float64Array,
  m: number,
  d: number,
  maxq: number,
  npasses: number,
  lazyBatch: boolean,
): Float64Array {
  const chol = cholesky(h, d);
  // Lt[i][c] = L[c][i] / L[i][i] for c > i: the unit lower factor, minus I, column i contiguous.
  const lt = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    const lii = chol[i * d + i]!;
    for (let c = i + 1; c < d; c++) lt[i * d + c] = chol[c * d + i]! / lii;
  }
  const hat = Float64Array.from(w);
  const err = new Float64Array(m * d); // W − Ŵ, zero where not yet rounded
  const clamp = (x: number) => Math.min(Math.max(x, 0), maxq);
  const roundColumns = (i1: number, i2: number, base: Float64Array | undefined) => {
    for (let i = i2 - 1; i >= i1; i--) {
      const li = i * d;
      const from = base ? i2 : d;
      for (let r = 0; r < m; r++) {
        const row = r * d;
        let s = base ? base[r * (i2 - i1) + i - i1]! : 0;
        for (let c = i + 1; c < from; c++) s += err[row + c]! * lt[li + c]!;
        const q = clamp(Math.floor(w[row + i]! + s + 0.5));
        hat[row + i] = q;
        err[row + i] = w[row + i]! - q;
      }
    }
  };
  if (!lazyBatch) roundColumns(0, d, undefined);
  else {
    for (let i2 = d; i2 > 0; i2 -= LAZY_BLOCK) {
      const i1 = Math.max(i2 - LAZY_BLOCK, 0);
      const count = i2 - i1;
      // (W − Ŵ)_{≥i2} · L_{≥i2, block}, once per block.
      const base = new Float64Array(m * count);
      for (let r = 0; r < m; r++) {
        for (let i = i1; i < i2; i++) {
          let s = 0;
          for (let c = i2; c < d; c++) s += err[r * d + c]! * lt[i * d + c]!;
          base[r * count + i - i1] = s;
        }
      }
      roundColumns(i1, i2, base);
    }
  }
  if (npasses === 0) return hat;
  let maxDiag = 0;
  for (let i = 0; i < d; i++) maxDiag = Math.max(maxDiag, h[i * d + i]!);
  const s = new Float64Array(m * d);
  for (let k = 0; k < s.length; k++) s[k] = hat[k]! - w[k]!;
  const cur = Float64Array.from(hat);
  for (let pass = 0; pass < npasses; pass++) {
    for (let i = d - 1; i >= 0; i--) {
      const hii = h[i * d + i]! / maxDiag;
      for (let r = 0; r < m; r++) {
        let hs = 0;
        for (let c = 0; c < d; c++) hs += s[r * d + c]! * h[c * d + i]!;
        hs /= maxDiag;
        const at = r * d + i;
        const eps = cur[at]! - roundHalfEven(cur[at]! - hs / hii);
        cur[at]! -= eps;
        s[at]! -= eps;
      }
    }
    let same = true;
    for (let k = 0; k < cur.length; k++) {
      cur[k] = clamp(cur[k]!);
      if (cur[k] !== hat[k]) same = false;
    }
    if (same) break;
    hat.set(cur);
  }
  return hat;
}

/**
 * QuIP of one `m × n` matrix `w0` with Hessian `h0` (`n × n`; neither is modified) and the
 * rotations `u` (size `m`) and `v` (size `n`).
 */
export function quipQuantize(
  w0: Float64Array,
  h0: Float64Array,
  m: number,
  n: number,
  u: QuipRotation,
  v: QuipRotation,
  settings: QuipSettings,
): QuipResult {
  const w = Float64Array.from(w0);
  let h: Float64Array = Float64Array.from(h0);
  const colScale = new Float32Array(n).fill(1);
  if (settings.rescale) {
    let max = 0;
    for (const x of h) max = Math.max(max, Math.abs(x));
    for (let i = 0; i < h.length; i++) h[i]! /= max;
    for (let c = 0; c < n; c++) {
      let w2 = 0;
      for (let r = 0; r < m; r++) w2 += w[r * n + c]! * w[r * n + c]!;
      const dh = Math.max(h[c * n + c]!, 1e-8);
      // Rounded to the stored f32 before use, so that the stored scales undo exactly this.
      colScale[c] = Math.max(Math.sqrt(Math.sqrt(dh / Math.max(w2, 1e-8))), 1e-8);
    }
    for (let r = 0; r < m; r++) for (let c = 0; c < n; c++) w[r * n + c]! *= colScale[c]!;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) h[i * n + j]! /= colScale[i]! * colScale[j]!;
    }
  }
  let trace = 0;
  for (let i = 0; i < n; i++) trace += h[i * n + i]!;
  for (let i = 0; i < h.length; i++) h[i]! *= n / (trace + 1e-8);
  for (let i = 0; i < n; i++) h[i * n + i]! += 1e-2;
  // W ← U W Vᵀ: rows by V, then columns by U. H ← V H Vᵀ: rows by V (H Vᵀ), transposed, again.
  rotateRows(w, m, v);
  const wt = transpose(w, m, n);
  rotateRows(wt, n, u);
  const wr = transpose(wt, n, m);
  rotateRows(h, n, v);
  h = transpose(h, n, n);
  rotateRows(h, n, v);
  let mean = 0;
  for (let i = 0; i < n; i++) {
    if (h[i * n + i] === 0) {
      h[i * n + i] = 1;
      for (let r = 0; r < m; r++) wr[r * n + i] = 0;
    }
    mean += h[i * n + i]!;
  }
  mean /= n;
  for (let i = 0; i < n; i++) h[i * n + i]! += settings.percdamp * mean;
  const maxq = (1 << settings.bits) - 1;
  let ss = 0;
  for (const x of wr) ss += x * x;
  const scale = Math.fround(2.4 * Math.sqrt(ss / wr.length) + 1e-16);
  const target = wr.map((x) => Math.min(Math.max(((x / scale + 1) / 2) * maxq, 0), maxq));
  // ldlqRG: columns in ascending order of diag H (the last, largest, are rounded first).
  const order = Array.from({ length: n }, (_, i) => i);
  if (settings.quant === "ldlqRG") order.sort((a, b) => h[a * n + a]! - h[b * n + b]!);
  const tp = new Float64Array(m * n);
  const hp = new Float64Array(n * n);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) tp[r * n + c] = target[r * n + order[c]!]!;
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) hp[i * n + j] = h[order[i]! * n + order[j]!]!;
  }
  const q = roundLdl(tp, hp, m, n, maxq, settings.npasses, settings.lazyBatch);
  const codes = new Uint8Array(m * n);
  for (let r = 0; r < m; r++) for (let c = 0; c < n; c++) codes[r * n + order[c]!] = q[r * n + c]!;
  return { codes, scale, colScale };
}

/** The settings the options give (throws {@linkcode QuipError} for values out of range). */
function optionSettings(options: Record<string, unknown>): Omit<QuipSettings, "bits"> & {
  mode: QuipProjMode;
} {
  const o = { ...QUIP_OPTIONS, ...options };
  if (o.quant !== "ldlq" && o.quant !== "ldlqRG") {
    throw new QuipError(`QuIP quant is "ldlq" or "ldlqRG", got ${JSON.stringify(o.quant)}`);
  }
  const npasses = Number(o.npasses);
  const percdamp = Number(o.percdamp);
  const mode = Number(o.pre_proj_extra);
  if (!(Number.isInteger(npasses) && npasses >= 0)) {
    throw new QuipError(`QuIP npasses is an integer ≥ 0, got ${o.npasses}`);
  }
  if (!(percdamp > 0 && Number.isFinite(percdamp))) {
    throw new QuipError(`QuIP percdamp is a number > 0, got ${o.percdamp}`);
  }
  if (mode !== 0 && mode !== 1 && mode !== 2) {
    throw new QuipError(`QuIP pre_proj_extra is 0, 1 or 2, got ${o.pre_proj_extra}`);
  }
  return {
    quant: o.quant,
    npasses,
    percdamp,
    rescale: o.pre_rescale !== false,
    lazyBatch: o.lazy_batch === true,
    mode,
  };
}

/**
 * The seeds of `U` (rows) and `V` (cols) of linear `name` of layer `layer` under suite seed
 * `seed` (the same at every bit width).
 */
export function quipSeeds(
  seed: number,
  layer: number,
  name: LinearName,
): { seedU: number; seedV: number } {
  const random = seededRandom(seed, `quip:${layer}:${name}`);
  const seedU = Math.floor(random() * 2 ** 32);
  return { seedU, seedV: Math.floor(random() * 2 ** 32) };
}

async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const { mode, ...rest } = optionSettings(options);
  const settings: QuipSettings = { ...rest, bits: Number(format.weights.slice(3)) as 2 | 3 | 4 };
  const calibration = resolveCalibration("quip", options.calibration, ctx, model.config.maxSeqLen);
  const windows = await calibrationWindows(model, calibration, ctx.seed);
  const meter = new MemoryMeter();
  const layers = await quantizeLayers(
    model,
    {
      kind: "groups",
      sequential: false,
      quantizeGroup({ names }, inputs, { original, index }) {
        const cols = original[names[0]!].cols;
        const h = new Float64Array(cols * cols);
        for (const x of inputs!) addGram(h, x, cols);
        const held = meter.hold(h);
        const quantized: Partial<Record<LinearName, Matrix>> = {};
        for (const name of names) {
          const m = original[name];
          const { seedU, seedV } = quipSeeds(ctx.seed, index, name);
          const u = quipRotation(seedU, m.rows, mode);
          const v = quipRotation(seedV, m.cols, mode);
          const q = quipQuantize(decodeMatrix(m), h, m.rows, m.cols, u, v, settings);
          const matrix = quipMatrix(m.rows, m.cols, settings.bits, q.codes, {
            scale: q.scale,
            colScale: q.colScale,
            seedU,
            seedV,
            mode,
          });
          meter.hold(matrixBuffers(matrix));
          quantized[name] = matrix;
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

/** Why QuIP cannot produce `format`, or undefined. */
function unsupported(format: FormatSpec): string | undefined {
  if (!["int2", "int3", "int4"].includes(format.weights)) {
    return `quip stores 2-, 3- or 4-bit codes on one grid per matrix: format ` +
      `"${format.weights}" is not int2, int3 or int4`;
  }
  if (format.group !== 0 || !format.symmetric) {
    return `quip scales whole matrices (one grid scale, no groups or zero points): group ` +
      `${format.group}, symmetric ${format.symmetric} contradict it`;
  }
  return undefined;
}

/** QuIP: random orthogonal incoherence processing, diagonal rescaling and LDLQ onto an integer grid. */
export const quip: Method = {
  name: "quip",
  description:
    "QuIP: seeded random orthogonal (Kronecker) incoherence processing + LDLQ onto a 2-4 bit grid",
  options: QUIP_OPTIONS,
  unsupported,
  checkOptions: (options) => void optionSettings(options),
  quantize: quantizeModel,
};
