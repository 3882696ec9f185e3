/**
 * ggml's K-quants: 256-element super-blocks of 16 or 32-element sub-blocks whose scales (and
 * mins) are themselves quantized to 4, 6 or 8 bits under one or two f16 super-scales.
 * Decoders follow ggml's `dequantize_row_q{2..6}_K` (and Q8_K); encoders follow
 * `quantize_row_q{2..6}_K_ref`, which `llama-quantize` runs when no importance matrix is given.
 * Every float operation is rounded to float32 in ggml's order.
 *
 * Super-block layouts (little-endian; d, dmin are f16):
 * - Q2_K (84 B): scales[16] (low nibble scale, high nibble min), qs[64] (2-bit), d, dmin
 * - Q3_K (110 B): hmask[32] (3rd bit), qs[64] (low 2 bits), scales[12] (6-bit, packed), d
 * - Q4_K (144 B): d, dmin, scales[12] (6-bit scales and mins), qs[128] (4-bit)
 * - Q5_K (176 B): d, dmin, scales[12], qh[32] (5th bit), qs[128] (low 4 bits)
 * - Q6_K (210 B): ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d
 * - Q8_K (292 B): d (f32), qs[256] (int8), bsums[16] (int16, sums of 16 codes; unused here)
 *
 * @module
 */
import { blockCount, readF16, writeU16 } from "./block_io.ts";
import { f32ToF16, nearestInt } from "./numeric.ts";

const f = Math.fround;
const QK_K = 256;
/** ggml's GROUP_MAX_EPS: sub-blocks whose largest magnitude is below it count as all zero. */
const GROUP_MAX_EPS = 1e-15;

/** The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block (ggml `get_scale_min_k4`). */
export function scaleMinK4(j: number, bytes: Uint8Array, o: number): [number, number] {
  if (j < 4) return [bytes[o + j]! & 63, bytes[o + j + 4]! & 63];
  const sc = (bytes[o + j + 4]! & 0x0f) | ((bytes[o + j - 4]! >> 6) << 4);
  const m = (bytes[o + j + 4]! >> 4) | ((bytes[o + j]! >> 6) << 4);
  return [sc, m];
}

/** The signed 6-bit scale (-32..31) of sub-block `j` of a Q3_K block whose scales start at `o`. */
export function scaleQ3K(j: number, bytes: Uint8Array, o: number): number {
  const low = j < 8 ? bytes[o + j]! & 0x0f : bytes[o + j - 8]! >> 4;
  const high = (bytes[o + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

/** Decodes Q2_K: y = d·sc·q - dmin·m with 4-bit sc, m per 16 elements and q in 0..3. */
export function decodeQ2K(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q2_K", QK_K, 84, n, bytes);
  const y = new Float32Array(n);
  let k = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 84;
    const d = readF16(bytes, o + 80);
    const min = readF16(bytes, o + 82);
    let is = 0;
    for (let half = 0; half < 2; half++) {
      const q = o + 16 + half * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const sc = bytes[o + is++]!;
          const dl = f(d * (sc & 0x0f));
          const ml = f(min * (sc >> 4));
          for (let l = 0; l < 16; l++) {
            y[k++] = f(dl * ((bytes[q + part * 16 + l]! >> shift) & 3)) - ml;
          }
        }
      }
    }
  }
  return y;
}

/** Decodes Q3_K: y = d·sc·(q - 4·[high bit clear]) with signed 6-bit sc per 16 elements. */
export function decodeQ3K(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q3_K", QK_K, 110, n, bytes);
  const y = new Float32Array(n);
  let k = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 110;
    const dAll = readF16(bytes, o + 108);
    let is = 0;
    let m = 1;
    for (let half = 0; half < 2; half++) {
      const q = o + 32 + half * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const dl = f(dAll * scaleQ3K(is++, bytes, o + 96));
          for (let l = 0; l < 16; l++) {
            const low = (bytes[q + part * 16 + l]! >> shift) & 3;
            const high = bytes[o + part * 16 + l]! & m ? 0 : 4;
            y[k++] = dl * (low - high);
          }
        }
        m <<= 1;
      }
    }
  }
  return y;
}

/** Decodes Q4_K: y = d·sc·q - dmin·m with 6-bit sc, m per 32 elements and q in 0..15. */
export function decodeQ4K(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q4_K", QK_K, 144, n, bytes);
  const y = new Float32Array(n);
  let k = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 144;
    const d = readF16(bytes, o);
    const min = readF16(bytes, o + 2);
    for (let j = 0; j < 4; j++) {
      const [sc1, m1] = scaleMinK4(2 * j, bytes, o + 4);
      const [sc2, m2] = scaleMinK4(2 * j + 1, bytes, o + 4);
      const d1 = f(d * sc1);
      const min1 = f(min * m1);
      const d2 = f(d * sc2);
      const min2 = f(min * m2);
      const q = o + 16 + 32 * j;
      for (let l = 0; l < 32; l++) y[k++] = f(d1 * (bytes[q + l]! & 0x0f)) - min1;
      for (let l = 0; l < 32; l++) y[k++] = f(d2 * (bytes[q + l]! >> 4)) - min2;
    }
  }
  return y;
}

/** Decodes Q5_K: as Q4_K with a fifth bit from `qh`, q in 0..31. */
export function decodeQ5K(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q5_K", QK_K, 176, n, bytes);
  const y = new Float32Array(n);
  let k = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 176;
    const d = readF16(bytes, o);
    const min = readF16(bytes, o + 2);
    let u1 = 1;
    let u2 = 2;
    for (let j = 0; j < 4; j++) {
      const [sc1, m1] = scaleMinK4(2 * j, bytes, o + 4);
      const [sc2, m2] = scaleMinK4(2 * j + 1, bytes, o + 4);
      const d1 = f(d * sc1);
      const min1 = f(min * m1);
      const d2 = f(d * sc2);
      const min2 = f(min * m2);
      const ql = o + 48 + 32 * j;
      const qh = o + 16;
      for (let l = 0; l < 32; l++) {
        const q = (bytes[ql + l]! & 0x0f) + (bytes[qh + l]! & u1 ? 16 : 0);
        y[k++] = f(d1 * q) - min1;
      }
      for (let l = 0; l < 32; l++) {
        const q = (bytes[ql + l]! >> 4) + (bytes[qh + l]! & u2 ? 16 : 0);
        y[k++] = f(d2 * q) - min2;
      }
      u1 <<= 2;
      u2 <<= 2;
    }
  }
  return y;
}

/** Decodes Q6_K: y = (d·sc)·(q - 32) with int8 sc per 16 elements and q in 0..63. */
export function decodeQ6K(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q6_K", QK_K, 210, n, bytes);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const o = i * 210;
    const d = readF16(bytes, o + 208);
    for (let half = 0; half < 2; half++) {
      const ql = o + 64 * half;
      const qh = o + 128 + 32 * half;
      const sc = o + 192 + 8 * half;
      const yo = i * QK_K + 128 * half;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = bytes[qh + l]!;
        const q1 = ((bytes[ql + l]! & 0x0f) | ((h & 3) << 4)) - 32;
        const q2 = ((bytes[ql + l + 32]! & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((bytes[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((bytes[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        y[yo + l] = f(d * int8(bytes[sc + is]!)) * q1;
        y[yo + l + 32] = f(d * int8(bytes[sc + is + 2]!)) * q2;
        y[yo + l + 64] = f(d * int8(bytes[sc + is + 4]!)) * q3;
        y[yo + l + 96] = f(d * int8(bytes[sc + is + 6]!)) * q4;
      }
    }
  }
  return y;
}

/** Decodes Q8_K (the activation format of K-quant dot products): y = d·q with an f32 d. */
export function decodeQ8K(bytes: Uint8Array, n: number): Float32Array {
  const nb = blockCount("Q8_K", QK_K, 292, n, bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const y = new Float32Array(n);
  for (let i = 0; i < nb; i++) {
    const d = view.getFloat32(i * 292, true);
    for (let j = 0; j < QK_K; j++) y[i * QK_K + j] = d * int8(bytes[i * 292 + 4 + j]!);
  }
  return y;
}

function int8(b: number): number {
  return (b << 24) >> 24;
}

/** Scale and (negated) min of one sub-block, with its codes written into `L`. */
interface ScaleMin {
  scale: number;
  min: number;
}

/**
 * ggml `make_qkx2_quants`: fits x ≈ scale·L + min (min ≤ 0) with L in 0..nmax by a grid search
 * over `nstep + 1` candidate inverse scales and weighted least squares; returns the scale and
 * `-min`. `L` receives the codes of the best candidate.
 */
function makeQkx2Quants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  weights: Float32Array,
  L: Uint8Array,
  lo: number,
  Laux: Uint8Array,
  rmin: number,
  rdelta: number,
  nstep: number,
  useMad: boolean,
): ScaleMin {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = weights[0]!;
  let sumX = f(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = weights[i]!;
    sumW = f(sumW + w);
    sumX = f(sumX + f(w * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    return { scale: 0, min: -min };
  }
  let iscale = f(nmax / f(max - min));
  let scale = f(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(xi - min)))));
    L[lo + i] = l;
    let diff = f(f(f(scale * l) + min) - xi);
    diff = useMad ? Math.abs(diff) : f(diff * diff);
    bestError = f(bestError + f(weights[i]! * diff));
  }
  if (nstep < 1) return { scale, min: -min };
  for (let is = 0; is <= nstep; is++) {
    // `min` is the best fit so far, so later candidates are measured from it, as in ggml.
    iscale = f(f(f(rmin + f(f(rdelta) * is)) + nmax) / f(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(xi - min)))));
      Laux[i] = l;
      const wl = f(weights[i]! * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * xi));
    }
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (D > 0) {
      let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
      let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        let diff = f(f(f(thisScale * Laux[i]!) + thisMin) - x[xo + i]!);
        diff = useMad ? Math.abs(diff) : f(diff * diff);
        curError = f(curError + f(weights[i]! * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i]!;
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return { scale, min: -min };
}

/**
 * ggml `make_q3_quants` with `do_rmse`: symmetric codes L in -nmax..nmax-1 (stored + nmax),
 * refined one element at a time to maximise the x²-weighted fit; returns the scale.
 */
function makeQ3Quants(nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  const n = 16;
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  const iscale = f(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * xi))));
    L[lo + i] = l;
    const w = f(xi * xi);
    sumlx = f(sumlx + f(f(w * xi) * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const w = f(xi * xi);
      const li = L[lo + i]!;
      let slx = f(sumlx - f(f(w * xi) * li));
      if (slx > 0) {
        let sl2 = f(suml2 - f(f(w * li) * li));
        const newL = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(f(xi * sl2) / slx))));
        if (newL !== li) {
          slx = f(slx + f(f(w * xi) * newL));
          sl2 = f(sl2 + f(f(w * newL) * newL));
          if (sl2 > 0 && f(f(slx * slx) * suml2) > f(f(sumlx * sumlx) * sl2)) {
            L[lo + i] = newL;
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (!nChanged) break;
  }
  for (let i = 0; i < n; i++) L[lo + i] = L[lo + i]! + nmax;
  return suml2 > 0 ? f(sumlx / suml2) : 0;
}

/**
 * ggml `make_qx_quants` with `rmse_type` 1 and no importance weights (weights x²): symmetric
 * codes in -nmax..nmax-1 (stored + nmax), best of 19 candidate scales; returns the scale.
 */
function makeQxQuants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  L: Int8Array,
  lo: number,
): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  let iscale = f(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * xi))));
    L[lo + i] = l + nmax;
    const w = f(xi * xi);
    sumlx = f(sumlx + f(f(w * xi) * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  let scale = suml2 ? f(sumlx / suml2) : 0;
  let best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f(-f(nmax + f(f(0.1) * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * xi))));
      const w = f(xi * xi);
      sumlx = f(sumlx + f(f(w * xi) * l));
      suml2 = f(suml2 + f(f(w * l) * l));
    }
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      for (let i = 0; i < n; i++) {
        const l = nearestInt(f(iscale * x[xo + i]!));
        L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

/** Packs 2-bit codes as ggml does: byte l of each 32-byte group holds elements l, l+32, l+64, l+96. */
function pack2Bit(L: Uint8Array | Int8Array, out: Uint8Array, qo: number): void {
  for (let j = 0; j < QK_K; j += 128) {
    for (let l = 0; l < 32; l++) {
      out[qo + j / 4 + l] = L[j + l]! | (L[j + l + 32]! << 2) | (L[j + l + 64]! << 4) |
        (L[j + l + 96]! << 6);
    }
  }
}

/** Encodes as Q2_K like `quantize_row_q2_K_ref`. */
export function encodeQ2K(x: Float32Array): Uint8Array {
  const nb = blockCount("Q2_K", QK_K, 84, x.length);
  const out = new Uint8Array(nb * 84);
  const L = new Uint8Array(QK_K);
  const Laux = new Uint8Array(16);
  const weights = new Float32Array(16);
  const mins = new Float32Array(16);
  const scales = new Float32Array(16);
  for (let i = 0; i < nb; i++) {
    const xo = i * QK_K;
    const o = i * 84;
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < 16; j++) {
      for (let l = 0; l < 16; l++) weights[l] = Math.abs(x[xo + 16 * j + l]!);
      const r = makeQkx2Quants(
        16,
        3,
        x,
        xo + 16 * j,
        weights,
        L,
        16 * j,
        Laux,
        -0.5,
        0.1,
        15,
        true,
      );
      scales[j] = r.scale;
      mins[j] = r.min;
      if (r.scale > maxScale) maxScale = r.scale;
      if (r.min > maxMin) maxMin = r.min;
    }
    if (maxScale > 0) {
      const iscale = f(15 / maxScale);
      for (let j = 0; j < 16; j++) out[o + j] = nearestInt(f(iscale * scales[j]!)) & 0xff;
      writeU16(out, o + 80, f32ToF16(f(maxScale / 15)));
    }
    if (maxMin > 0) {
      const iscale = f(15 / maxMin);
      for (let j = 0; j < 16; j++) out[o + j]! |= (nearestInt(f(iscale * mins[j]!)) << 4) & 0xff;
      writeU16(out, o + 82, f32ToF16(f(maxMin / 15)));
    }
    const dAll = readF16(out, o + 80);
    const mAll = readF16(out, o + 82);
    for (let j = 0; j < 16; j++) {
      const d = f(dAll * (out[o + j]! & 0x0f));
      if (!d) continue;
      const dm = f(mAll * (out[o + j]! >> 4));
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f(f(x[xo + 16 * j + ii]! + dm) / d));
        L[16 * j + ii] = Math.max(0, Math.min(3, l));
      }
    }
    pack2Bit(L, out, o + 16);
  }
  return out;
}

/** Encodes as Q3_K like `quantize_row_q3_K_ref`. */
export function encodeQ3K(x: Float32Array): Uint8Array {
  const nb = blockCount("Q3_K", QK_K, 110, x.length);
  const out = new Uint8Array(nb * 110);
  const L = new Int8Array(QK_K);
  const scales = new Float32Array(16);
  for (let i = 0; i < nb; i++) {
    const xo = i * QK_K;
    const o = i * 110;
    let maxScale = 0;
    let amax = 0;
    for (let j = 0; j < 16; j++) {
      scales[j] = makeQ3Quants(4, x, xo + 16 * j, L, 16 * j);
      const scale = Math.abs(scales[j]!);
      if (scale > amax) {
        amax = scale;
        maxScale = scales[j]!;
      }
    }
    const so = o + 96;
    if (maxScale) {
      const iscale = f(-32 / maxScale);
      for (let j = 0; j < 16; j++) {
        let l = int8(nearestInt(f(iscale * scales[j]!)) & 0xff);
        l = Math.max(-32, Math.min(31, l)) + 32;
        if (j < 8) out[so + j] = l & 0x0f;
        else out[so + j - 8]! |= (l & 0x0f) << 4;
        out[so + 8 + (j % 4)]! |= (l >> 4) << (2 * (j >> 2));
      }
      writeU16(out, o + 108, f32ToF16(f(1 / iscale)));
    }
    const dAll = readF16(out, o + 108);
    for (let j = 0; j < 16; j++) {
      const d = f(dAll * scaleQ3K(j, out, so));
      if (!d) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f(x[xo + 16 * j + ii]! / d));
        L[16 * j + ii] = Math.max(-4, Math.min(3, l)) + 4;
      }
    }
    // The third bit of element j goes to bit j/32 of hmask[j % 32].
    for (let j = 0; j < QK_K; j++) {
      if (L[j]! > 3) {
        out[o + (j % 32)]! |= 1 << (j >> 5);
        L[j] = L[j]! - 4;
      }
    }
    pack2Bit(L, out, o + 32);
  }
  return out;
}

/** Shared by Q4_K and Q5_K: per-32 scales/mins from `make_qkx2_quants`, packed to 6 bits. */
function encodeScaleMinBlocks(
  x: Float32Array,
  xo: number,
  out: Uint8Array,
  o: number,
  L: Uint8Array,
  nmax: number,
  rmin: number,
  nstep: number,
): void {
  const Laux = new Uint8Array(32);
  const weights = new Float32Array(32);
  const mins = new Float32Array(8);
  const scales = new Float32Array(8);
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) {
      const v = x[xo + 32 * j + l]!;
      sumX2 = f(sumX2 + f(v * v));
    }
    const avX = f(Math.sqrt(f(sumX2 / 32)));
    for (let l = 0; l < 32; l++) weights[l] = f(avX + Math.abs(x[xo + 32 * j + l]!));
    const r = makeQkx2Quants(
      32,
      nmax,
      x,
      xo + 32 * j,
      weights,
      L,
      32 * j,
      Laux,
      rmin,
      0.1,
      nstep,
      false,
    );
    scales[j] = r.scale;
    mins[j] = r.min;
    if (r.scale > maxScale) maxScale = r.scale;
    if (r.min > maxMin) maxMin = r.min;
  }
  const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
  const so = o + 4;
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, nearestInt(f(invScale * scales[j]!)) & 0xff);
    const lm = Math.min(63, nearestInt(f(invMin * mins[j]!)) & 0xff);
    if (j < 4) {
      out[so + j] = ls;
      out[so + j + 4] = lm;
    } else {
      out[so + j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
      out[so + j - 4]! |= (ls >> 4) << 6;
      out[so + j]! |= (lm >> 4) << 6;
    }
  }
  writeU16(out, o, f32ToF16(f(maxScale / 63)));
  writeU16(out, o + 2, f32ToF16(f(maxMin / 63)));
  const dAll = readF16(out, o);
  const mAll = readF16(out, o + 2);
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMinK4(j, out, so);
    const d = f(dAll * sc);
    if (!d) continue;
    const dm = f(mAll * m);
    for (let ii = 0; ii < 32; ii++) {
      const l = nearestInt(f(f(x[xo + 32 * j + ii]! + dm) / d));
      L[32 * j + ii] = Math.max(0, Math.min(nmax, l));
    }
  }
}

/** Encodes as Q4_K like `quantize_row_q4_K_ref`. */
export function encodeQ4K(x: Float32Array): Uint8Array {
  const nb = blockCount("Q4_K", QK_K, 144, x.length);
  const out = new Uint8Array(nb * 144);
  const L = new Uint8Array(QK_K);
  for (let i = 0; i < nb; i++) {
    const o = i * 144;
    encodeScaleMinBlocks(x, i * QK_K, out, o, L, 15, -1, 20);
    for (let j = 0; j < 4; j++) {
      for (let l = 0; l < 32; l++) {
        out[o + 16 + 32 * j + l] = L[64 * j + l]! | (L[64 * j + l + 32]! << 4);
      }
    }
  }
  return out;
}

/** Encodes as Q5_K like `quantize_row_q5_K_ref`. */
export function encodeQ5K(x: Float32Array): Uint8Array {
  const nb = blockCount("Q5_K", QK_K, 176, x.length);
  const out = new Uint8Array(nb * 176);
  const L = new Uint8Array(QK_K);
  for (let i = 0; i < nb; i++) {
    const o = i * 176;
    encodeScaleMinBlocks(x, i * QK_K, out, o, L, 31, -0.5, 15);
    let m1 = 1;
    let m2 = 2;
    for (let j = 0; j < 4; j++) {
      for (let l = 0; l < 32; l++) {
        let l1 = L[64 * j + l]!;
        if (l1 > 15) {
          l1 -= 16;
          out[o + 16 + l]! |= m1;
        }
        let l2 = L[64 * j + l + 32]!;
        if (l2 > 15) {
          l2 -= 16;
          out[o + 16 + l]! |= m2;
        }
        out[o + 48 + 32 * j + l] = l1 | (l2 << 4);
      }
      m1 <<= 2;
      m2 <<= 2;
    }
  }
  return out;
}

/** Encodes as Q6_K like `quantize_row_q6_K_ref`. */
export function encodeQ6K(x: Float32Array): Uint8Array {
  const nb = blockCount("Q6_K", QK_K, 210, x.length);
  const out = new Uint8Array(nb * 210);
  const L = new Int8Array(QK_K);
  const scales = new Float32Array(16);
  for (let i = 0; i < nb; i++) {
    const xo = i * QK_K;
    const o = i * 210;
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < 16; ib++) {
      const scale = makeQxQuants(16, 32, x, xo + 16 * ib, L, 16 * ib);
      scales[ib] = scale;
      if (Math.abs(scale) > maxAbsScale) {
        maxAbsScale = Math.abs(scale);
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) continue; // an all-zero block stays all-zero bytes
    const iscale = f(-128 / maxScale);
    writeU16(out, o + 208, f32ToF16(f(1 / iscale)));
    for (let ib = 0; ib < 16; ib++) {
      out[o + 192 + ib] = Math.min(127, nearestInt(f(iscale * scales[ib]!))) & 0xff;
    }
    const dAll = readF16(out, o + 208);
    for (let j = 0; j < 16; j++) {
      const d = f(dAll * int8(out[o + 192 + j]!));
      if (!d) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f(x[xo + 16 * j + ii]! / d));
        L[16 * j + ii] = Math.max(-32, Math.min(31, l)) + 32;
      }
    }
    for (let half = 0; half < 2; half++) {
      const j = 128 * half;
      const ql = o + 64 * half;
      const qh = o + 128 + 32 * half;
      for (let l = 0; l < 32; l++) {
        const a = L[j + l]!;
        const b = L[j + l + 32]!;
        const c = L[j + l + 64]!;
        const e = L[j + l + 96]!;
        out[ql + l] = (a & 0x0f) | ((c & 0x0f) << 4);
        out[ql + l + 32] = (b & 0x0f) | ((e & 0x0f) << 4);
        out[qh + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
      }
    }
  }
  return out;
}
