/**
 * AffineQuant's equivalent transforms of one Llama block (Ma et al. 2024; bytedance/AffineQuant
 * `models/transformation.py`), folded into the block's weights, with the gradient of the folded
 * weights w.r.t. the transforms. Every transform here can be folded, so a quantized block holds
 * only transformed weights and norms:
 *
 * - `qkv`, `fc` (diagonal, `dim` entries): the attention and MLP inputs, `x ⊘ s` after the norm —
 *   the norm's weight is divided by `s` and the columns of `wq`, `wk`, `wv` (`w1`, `w3`) are
 *   multiplied by it (SmoothQuant's migration, learned). A full matrix here (the authors'
 *   `use_ln_matrix`) cannot be folded into an RMSNorm; it is not done here.
 * - `out` (a `headDim × headDim` matrix `A` per key/value head, masked): `wv ← A⁻ᵀ·wv` row block
 *   by row block and `wo ← wo·Aᵀ` column block by column block (every query head of a group uses
 *   its key/value head's `A`), exact through attention, which mixes the rows of `v` per head.
 * - `qk` (a matrix `B` per key/value head, masked): `wq ← B⁻ᵀ·wq` per query head and
 *   `wk ← B·wk` per key/value head, so `q·kᵀ` keeps its value before RoPE (the authors apply it
 *   before the rotation too; the block loss sees the rotated result).
 *
 * The masks are AffineQuant's gradual mask (`bandMask`): 1 on the diagonal, the stability factor
 * within `band − 1` of it, 0 elsewhere, the band growing with the epoch (`maskBand`); the learned
 * matrix enters as `A ∘ mask`.
 *
 * @module
 */

/** Thrown when a transform cannot be inverted. */
export class AffineTransformError extends Error {
  override name = "AffineTransformError";
}

/** The attention shape the transforms need. */
export interface AffineShape {
  dim: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

/** The learned transforms of one block (see the module notes). */
export interface AffineParams {
  qkv: Float64Array;
  fc: Float64Array;
  /** `nKvHeads` row-major `headDim × headDim` blocks. */
  out: Float64Array;
  qk: Float64Array;
}

/** A block's norms and linears in float64 (`[rows][cols]` row-major). */
export interface FloatLayer {
  attnNorm: Float64Array;
  ffnNorm: Float64Array;
  wq: Float64Array;
  wk: Float64Array;
  wv: Float64Array;
  wo: Float64Array;
  w1: Float64Array;
  w2: Float64Array;
  w3: Float64Array;
}

/** The masks the matrices enter with (`headDim × headDim` each). */
export interface AffineMasks {
  out: Float64Array;
  qk: Float64Array;
}

/**
 * The gradual mask: 1 on the diagonal, `sf` where `0 < |i − j| < band`, 0 elsewhere.
 *
 * @example
 * ```ts
 * bandMask(3, 2, 0.1); // [1, 0.1, 0,  0.1, 1, 0.1,  0, 0.1, 1]
 * ```
 */
export function bandMask(d: number, band: number, sf: number): Float64Array {
  const m = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      const off = Math.abs(i - j);
      m[i * d + j] = off === 0 ? 1 : off < band ? sf : 0;
    }
  }
  return m;
}

/**
 * The band of the mask at `epoch` of `epochs` over `d` channels, as the authors' loop computes
 * it: `int((d − 1) / (epochs − 1) · epoch) + 1`, from the diagonal alone to the whole matrix at
 * the last epoch (a single epoch uses the whole matrix).
 */
export function maskBand(d: number, epoch: number, epochs: number): number {
  return epochs > 1 ? Math.trunc(((d - 1) / (epochs - 1)) * epoch) + 1 : d;
}

/** `n` identity blocks of `d × d`. */
export function identityBlocks(n: number, d: number): Float64Array {
  const m = new Float64Array(n * d * d);
  for (let b = 0; b < n; b++) for (let i = 0; i < d; i++) m[b * d * d + i * d + i] = 1;
  return m;
}

/**
 * The authors' `truncate_number`, in place: entries with `0 < |v| < threshold` become
 * `±threshold` (keeps scales away from zero; exact zeros stay).
 */
export function truncateSmall(p: Float64Array, threshold = 1e-2): void {
  for (let i = 0; i < p.length; i++) {
    const v = p[i]!;
    if (v !== 0 && Math.abs(v) < threshold) p[i] = Math.sign(v) * threshold;
  }
}

/** The inverse of a row-major `d × d` matrix (Gauss–Jordan with partial pivoting). */
export function invert(m: Float64Array, d: number): Float64Array {
  const a = Float64Array.from(m);
  const inv = identityBlocks(1, d);
  for (let c = 0; c < d; c++) {
    let p = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(a[r * d + c]!) > Math.abs(a[p * d + c]!)) p = r;
    const pivot = a[p * d + c]!;
    if (!(Math.abs(pivot) > 1e-300)) {
      throw new AffineTransformError(`A ${d}×${d} transform is singular (column ${c})`);
    }
    if (p !== c) {
      for (let j = 0; j < d; j++) {
        [a[c * d + j], a[p * d + j]] = [a[p * d + j]!, a[c * d + j]!];
        [inv[c * d + j], inv[p * d + j]] = [inv[p * d + j]!, inv[c * d + j]!];
      }
    }
    for (let j = 0; j < d; j++) {
      a[c * d + j]! /= pivot;
      inv[c * d + j]! /= pivot;
    }
    for (let r = 0; r < d; r++) {
      const f = a[r * d + c]!;
      if (r === c || f === 0) continue;
      for (let j = 0; j < d; j++) {
        a[r * d + j]! -= f * a[c * d + j]!;
        inv[r * d + j]! -= f * inv[c * d + j]!;
      }
    }
  }
  return inv;
}

/** Each block of `p` times `mask`, and its inverse. */
function masked(p: Float64Array, mask: Float64Array, d: number) {
  const eff = p.map((v, i) => v * mask[i % (d * d)]!);
  const inv = new Float64Array(eff.length);
  for (let o = 0; o < eff.length; o += d * d) inv.set(invert(eff.subarray(o, o + d * d), d), o);
  return { eff, inv };
}

/** `w` with column `j` scaled by `s[j]`. */
function scaleColumns(w: Float64Array, s: Float64Array): Float64Array {
  return w.map((v, i) => v * s[i % s.length]!);
}

/** Gradients of a folded layer (the same names as {@linkcode FloatLayer}). */
export type FloatLayerGrads = FloatLayer;

/**
 * The layer with `params` folded in under `masks` (see the module notes), and the backward that
 * turns gradients w.r.t. the folded layer into gradients w.r.t. `params`.
 */
export function foldAffine(
  shape: AffineShape,
  layer: FloatLayer,
  params: AffineParams,
  masks: AffineMasks,
): { layer: FloatLayer; back: (d: FloatLayerGrads) => AffineParams } {
  const { dim, nHeads, nKvHeads: G, headDim: d } = shape;
  const rep = nHeads / G;
  const dd = d * d;
  const pq = scaleColumns(layer.wq, params.qkv);
  const pk = scaleColumns(layer.wk, params.qkv);
  const pv = scaleColumns(layer.wv, params.qkv);
  const a = masked(params.out, masks.out, d);
  const b = masked(params.qk, masks.qk, d);
  const oCols = nHeads * d;
  const oRows = layer.wo.length / oCols;
  // Row block `blk` of `p` (`d` rows of `cols`) into `out`: out[i] = Σ_k m(k, i) · p[k].
  const rowBlock = (
    out: Float64Array,
    p: Float64Array,
    blk: number,
    m: (k: number, i: number) => number,
  ) => {
    for (let i = 0; i < d; i++) {
      for (let k = 0; k < d; k++) {
        const f = m(k, i);
        if (f === 0) continue;
        const src = (blk * d + k) * dim;
        const dst = (blk * d + i) * dim;
        for (let c = 0; c < dim; c++) out[dst + c]! += f * p[src + c]!;
      }
    }
  };
  const wq = new Float64Array(pq.length);
  const wk = new Float64Array(pk.length);
  const wv = new Float64Array(pv.length);
  const wo = new Float64Array(layer.wo.length);
  for (let g = 0; g < G; g++) {
    rowBlock(wv, pv, g, (k, i) => a.inv[g * dd + k * d + i]!);
    rowBlock(wk, pk, g, (k, i) => b.eff[g * dd + i * d + k]!);
  }
  for (let h = 0; h < nHeads; h++) {
    const g = Math.floor(h / rep);
    rowBlock(wq, pq, h, (k, i) => b.inv[g * dd + k * d + i]!);
    for (let r = 0; r < oRows; r++) {
      for (let i = 0; i < d; i++) {
        let s = 0;
        for (let j = 0; j < d; j++) {
          s += layer.wo[r * oCols + h * d + j]! * a.eff[g * dd + i * d + j]!;
        }
        wo[r * oCols + h * d + i] = s;
      }
    }
  }
  const folded: FloatLayer = {
    attnNorm: layer.attnNorm.map((v, j) => v / params.qkv[j]!),
    ffnNorm: layer.ffnNorm.map((v, j) => v / params.fc[j]!),
    wq,
    wk,
    wv,
    wo,
    w1: scaleColumns(layer.w1, params.fc),
    w2: layer.w2,
    w3: scaleColumns(layer.w3, params.fc),
  };
  const back = (dl: FloatLayerGrads): AffineParams => {
    const dAeff = new Float64Array(G * dd);
    const dAinv = new Float64Array(G * dd);
    const dBeff = new Float64Array(G * dd);
    const dBinv = new Float64Array(G * dd);
    const dpq = new Float64Array(pq.length);
    const dpk = new Float64Array(pk.length);
    const dpv = new Float64Array(pv.length);
    // For out[i] = Σ_k m(k, i) · p[k] over row block `blk`: dm(k, i) += dout[i]·p[k] and
    // dp[k] += m(k, i) · dout[i].
    const rowBlockBack = (
      dout: Float64Array,
      p: Float64Array,
      dp: Float64Array,
      blk: number,
      m: (k: number, i: number) => number,
      dm: (k: number, i: number, v: number) => void,
    ) => {
      for (let i = 0; i < d; i++) {
        for (let k = 0; k < d; k++) {
          const f = m(k, i);
          const src = (blk * d + k) * dim;
          const dst = (blk * d + i) * dim;
          let s = 0;
          for (let c = 0; c < dim; c++) {
            s += dout[dst + c]! * p[src + c]!;
            dp[src + c]! += f * dout[dst + c]!;
          }
          dm(k, i, s);
        }
      }
    };
    for (let g = 0; g < G; g++) {
      rowBlockBack(
        dl.wv,
        pv,
        dpv,
        g,
        (k, i) => a.inv[g * dd + k * d + i]!,
        (k, i, v) => dAinv[g * dd + k * d + i]! += v,
      );
      rowBlockBack(
        dl.wk,
        pk,
        dpk,
        g,
        (k, i) => b.eff[g * dd + i * d + k]!,
        (k, i, v) => dBeff[g * dd + i * d + k]! += v,
      );
    }
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / rep);
      rowBlockBack(
        dl.wq,
        pq,
        dpq,
        h,
        (k, i) => b.inv[g * dd + k * d + i]!,
        (k, i, v) => dBinv[g * dd + k * d + i]! += v,
      );
      for (let r = 0; r < oRows; r++) {
        for (let i = 0; i < d; i++) {
          const gi = dl.wo[r * oCols + h * d + i]!;
          if (gi === 0) continue;
          for (let j = 0; j < d; j++) {
            dAeff[g * dd + i * d + j]! += gi * layer.wo[r * oCols + h * d + j]!;
          }
        }
      }
    }
    // Through the inverses: dX = −X⁻ᵀ · dY · X⁻ᵀ, then through the masks.
    const inverseBack = (
      inv: Float64Array,
      dinv: Float64Array,
      deff: Float64Array,
      mask: Float64Array,
    ) => {
      for (let g = 0; g < G; g++) {
        const o = g * dd;
        for (let i = 0; i < d; i++) {
          for (let j = 0; j < d; j++) {
            let s = 0;
            for (let k = 0; k < d; k++) {
              const yk = inv[o + k * d + i]!;
              if (yk === 0) continue;
              for (let l = 0; l < d; l++) s += yk * dinv[o + k * d + l]! * inv[o + j * d + l]!;
            }
            deff[o + i * d + j]! -= s;
          }
        }
      }
      return deff.map((v, i) => v * mask[i % dd]!);
    };
    const dqkv = new Float64Array(dim);
    const dfc = new Float64Array(dim);
    const colBack = (ds: Float64Array, dp: Float64Array, w: Float64Array) => {
      for (let i = 0; i < w.length; i++) ds[i % dim]! += dp[i]! * w[i]!;
    };
    colBack(dqkv, dpq, layer.wq);
    colBack(dqkv, dpk, layer.wk);
    colBack(dqkv, dpv, layer.wv);
    colBack(dfc, dl.w1, layer.w1);
    colBack(dfc, dl.w3, layer.w3);
    for (let j = 0; j < dim; j++) {
      dqkv[j]! -= (dl.attnNorm[j]! * layer.attnNorm[j]!) / params.qkv[j]! ** 2;
      dfc[j]! -= (dl.ffnNorm[j]! * layer.ffnNorm[j]!) / params.fc[j]! ** 2;
    }
    return {
      qkv: dqkv,
      fc: dfc,
      out: inverseBack(a.inv, dAinv, dAeff, masks.out),
      qk: inverseBack(b.inv, dBinv, dBeff, masks.qk),
    };
  };
  return { layer: folded, back };
}
