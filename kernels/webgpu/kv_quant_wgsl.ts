/**
 * WGSL of the quantized KV cache (KIVI; the recipe is in `kernels/formats/runtime_quant.ts`, the
 * CPU's cache in `kernels/cpu/kv_cache.ts`). A layer's cache is two kinds of buffer:
 *
 * - a float32 window per cache (keys, values) of {@linkcode KvQuantLayout}'s `window` rows, which
 *   attention reads for the earlier positions still in full precision: position `j` lives in row
 *   `j % window`. It holds KIVI's residual window (the last `keyBlock` positions, which covers the
 *   values' `residual` and the incomplete key group) and a few rows of slack for cutting a cache
 *   back (see `kvQuantLayout`). A step's own keys and values are read from the step's rows (by
 *   token, one buffer the layers share, as the projections write them) and copied into the window
 *   after attention (`kv_window_wgsl.ts`; a one-token step's row before, as decoding reads it
 *   there), so a prompt longer than the window never overwrites a row its queries still read;
 * - one buffer per cache holding every position's codes packed into u32 words (`32 / codeBits`
 *   channels a word, rows by position) followed by the groups' side words: for integers
 *   `pack2x16float(scale, min)` (both f16 values, as on the CPU), for FP8 the f32 scale's bits.
 *   Key sides are indexed by `[token group][channel]`, value sides by `[position][channel group]`.
 *
 * So a KV4 cache of `n` positions costs `n` × 4 bits a channel plus the sides and a window of
 * `keyBlock` and a few more float rows (the runner's: 160 at KIVI's residual of 128), not `n` float
 * rows beside the codes.
 *
 * - {@linkcode kvQuantizeKeysShader}: each key group of `group` tokens that a forward step
 *   completes (those ending at a position in `[pos, pos + T)`), per channel; a thread takes one
 *   code word's channels.
 * - {@linkcode kvQuantizeValuesShader}: each new position's values, per group of channels.
 * - {@linkcode kvReadWgsl}: the bindings and dequantizing reads the attention kernels use; a query
 *   at position `p` reads positions before `keysBefore(p)` / `valuesBefore(p)` from the codes,
 *   later ones in full precision (the window's row `win(j)` before the step, the step's rows from
 *   `pos` on), exactly as the CPU's view.
 *
 * The integer recipe is computed in float64 on the CPU; here every rounding it makes is
 * reproduced exactly in f32: `hi − lo` and `x − min` are kept as exact two-term sums, and the
 * f16 scale and the integer code are settled by comparing against the exact midpoint between the
 * two candidates. FP8 divides in f32 rounded as the CPU's `fround(x / scale)` (`divRn` of
 * `double_float_wgsl.ts`: a GPU's own division may be ulps off).
 *
 * @module
 */
import type { KvCacheSettings } from "../../core/model.ts";
import { FP8_E4M3, FP8_E5M2, type Minifloat } from "../formats/minifloat.ts";
import { MIN_SCALE } from "../formats/scaled_minifloat.ts";
import { fp8Fn } from "./gemv_a8_wgsl.ts";
import { DOUBLE_FLOAT_WGSL } from "./double_float_wgsl.ts";

/** Thrown for KV-cache settings or shapes the WebGPU kernels cannot take. */
export class KvQuantError extends Error {
  override name = "KvQuantError";
}

/** Threads per workgroup of the quantization kernels (as `linearGroups` counts them). */
const WORKGROUP = 256;

/** How one layer's quantized keys and values are laid out (the same for keys and values). */
export interface KvQuantLayout {
  /** Integer bits (`int<b>`), or an FP8 element. */
  element: { kind: "int"; bits: number } | { kind: "fp8"; minifloat: Minifloat };
  /** Bits a code takes in its word (int3 takes 4). */
  codeBits: number;
  /** Codes per u32 word. */
  per: number;
  /** Channels of a cache row (`nKvHeads · headDim`). */
  kvDim: number;
  /** u32 words of one position's codes. */
  rowWords: number;
  /** Positions the cache holds. */
  maxSeqLen: number;
  /** Rows of the float window: position `j` is row `j % window`. */
  window: number;
  /** Tokens per key group (per channel). */
  keyGroup: number;
  /** Attention reads quantized keys a block of this many tokens at a time. */
  keyBlock: number;
  /** Channels per value group (per token). */
  valueGroup: number;
  /** The full-precision window. */
  residual: number;
}

const FP8: Readonly<Record<string, Minifloat>> = { fp8: FP8_E4M3, fp8_e5m2: FP8_E5M2 };

/**
 * The layout of a cache with `settings` (validated as the CPU's cache validates them, plus what
 * the kernels need: a head width that is a multiple of 4), whose float window keeps `slack` rows
 * beyond KIVI's `keyBlock` (default: every position).
 *
 * The float window: a step at `pos` reads the window's rows of positions `pos + 1 − keyBlock …
 * pos − 1` (the values' window starts at `pos + 1 − residual`, the first key group it may complete
 * at `pos + 1 − keyGroup`, the keys read in full precision at `keysBefore(pos) ≥ pos + 2 −
 * keyBlock`, and `keyBlock` is the largest of the three) and its own from the step's rows, and
 * writes position `q` into the window after those reads (a one-token step: before, over position
 * `pos − window`, which it does not read). So `keyBlock` rows serve any step; the slack lets a
 * cache that was written further be cut back and continue (`kvWindowRewind`).
 */
export function kvQuantLayout(
  settings: KvCacheSettings,
  nKvHeads: number,
  headDim: number,
  maxSeqLen: number,
  slack: number = maxSeqLen,
): KvQuantLayout {
  const { format, group, residual } = settings;
  const bits = Number(/^int(\d)$/.exec(format)?.[1]);
  const minifloat = FP8[format];
  if (!(bits >= 2 && bits <= 8) && minifloat === undefined) {
    throw new KvQuantError(`KV cache format "${format}" has no WebGPU kernels (int2…int8, fp8)`);
  }
  const keyGroup = group > 0 ? group : residual;
  const keyBlock = residual > 0 ? residual : group;
  const valueGroup = group > 0 ? Math.min(group, headDim) : headDim;
  if (!(keyGroup > 0) || keyBlock % keyGroup !== 0) {
    throw new KvQuantError(
      `kv_cache group ${group} and residual ${residual} do not fit: the residual must be a ` +
        `multiple of the group, and one of them positive`,
    );
  }
  if (headDim % valueGroup !== 0 || headDim % 4 !== 0) {
    throw new KvQuantError(
      `kv_cache group ${group} and head width ${headDim}: the group must divide the head width, ` +
        `a multiple of 4 on WebGPU`,
    );
  }
  const codeBits = minifloat ? 8 : bits === 3 ? 4 : bits > 4 ? 8 : bits;
  const per = 32 / codeBits;
  const kvDim = nKvHeads * headDim;
  return {
    element: minifloat ? { kind: "fp8", minifloat } : { kind: "int", bits },
    codeBits,
    per,
    kvDim,
    rowWords: Math.ceil(kvDim / per),
    maxSeqLen,
    window: Math.min(maxSeqLen, keyBlock + slack),
    keyGroup,
    keyBlock,
    valueGroup,
    residual,
  };
}

/**
 * How far past a length `n` a cache may have been written (positions up to `n + rewind − 1`) and
 * still continue at `n`: the window's rows a step at `n` reads, positions `n + 1 − keyBlock` on,
 * are all still there. Infinity where the window holds every position.
 */
export function kvWindowRewind(l: KvQuantLayout): number {
  return l.window >= l.maxSeqLen ? Infinity : l.window - l.keyBlock + 1;
}

/** u32 words of the key buffer: codes, then `[token group][channel]` sides. */
export function kvKeyWords(l: KvQuantLayout): number {
  return l.maxSeqLen * l.rowWords + Math.ceil(l.maxSeqLen / l.keyGroup) * l.kvDim;
}

/** u32 words of the value buffer: codes, then `[position][channel group]` sides. */
export function kvValueWords(l: KvQuantLayout): number {
  return l.maxSeqLen * l.rowWords + l.maxSeqLen * (l.kvDim / l.valueGroup);
}

/** Key groups a step of `T` tokens can complete: the dispatch's group slots. */
export function kvKeySlots(l: KvQuantLayout, T: number): number {
  return Math.floor(T / l.keyGroup) + 1;
}

/** Exact-arithmetic helpers of the integer recipe (see the module notes). */
const EXACT_WGSL = `
// s + e == a - b exactly (Knuth's two-sum).
fn twoDiff(a: f32, b: f32) -> vec2<f32> {
  let s = a - b;
  let bb = s - a;
  return vec2<f32>(s, (a - (s - bb)) + (-b - bb));
}

// The sign of (s + e) - m, for an exact m: s - m is exact where the two are within a factor of
// two (Sterbenz), and elsewhere e (below half an ulp of s) cannot change its sign.
fn sgnDiff(s: f32, e: f32, m: f32) -> f32 {
  return (s - m) + e;
}

// f32 bits of 2^k for -126 <= k <= 127.
fn pow2(k: i32) -> f32 {
  return bitcast<f32>(u32(k + 127) << 23u);
}

// (s + e) / den rounded to f16 (nearest, ties to even), for s + e >= 0 and den < 2^12.
fn f16Quotient(s: f32, e: f32, den: f32) -> f32 {
  let c = s / den;
  if (c <= 0.0) { return 0.0; }
  let ex = i32((bitcast<u32>(c) >> 23u) & 0xffu) - 127;
  let u = pow2(max(ex, -14) - 10);
  let n = floor(c / u);
  let a = n * u;
  let t = sgnDiff(s, e, (a + 0.5 * u) * den);
  if (t > 0.0 || (t == 0.0 && (u32(n) & 1u) == 1u)) { return a + u; }
  return a;
}

fn f16Round(x: f32) -> f32 {
  let r = f16Quotient(abs(x), 0.0, 1.0);
  return select(r, -r, x < 0.0);
}

// round((x - mn) / scale) (ties to even) clamped to [0, maxq], for a positive f16 scale.
fn intCode(x: f32, mn: f32, scale: f32, maxq: f32) -> u32 {
  let d = twoDiff(x, mn);
  let fl = floor(d.x / scale);
  let t = sgnDiff(d.x, d.y, (fl + 0.5) * scale);
  var q = fl;
  if (t > 0.0 || (t == 0.0 && (i32(fl) & 1) == 1)) { q = fl + 1.0; }
  return u32(clamp(q, 0.0, maxq));
}
`;

/** WGSL `fp8Code(r)`: the code of an FP8 value `r`, and `fp8Value(code)`: its value. */
function fp8CodeWgsl(m: Minifloat): string {
  const M = m.mantissaBits;
  const E = m.exponentBits;
  const sign = 1 << (E + M);
  const mmask = (1 << M) - 1;
  return `
fn fp8Code(r: f32) -> u32 {
  let a = abs(r);
  var c = 0u;
  if (a >= ${2 ** m.minExponent}) {
    let b = bitcast<u32>(a);
    c = ((((b >> 23u) & 0xffu) - ${127 - m.bias}u) << ${M}u) | ((b >> ${23 - M}u) & ${mmask}u);
  } else {
    c = u32(a * ${1 / m.minSubnormal}.0);
  }
  return c | select(0u, ${sign}u, r < 0.0);
}

fn fp8Value(c: u32) -> f32 {
  let ex = (c >> ${M}u) & ${(1 << E) - 1}u;
  var a = f32(c & ${mmask}u) * ${m.minSubnormal};
  if (ex != 0u) {
    a = bitcast<f32>(((ex + ${127 - m.bias}u) << 23u) | ((c & ${mmask}u) << ${23 - M}u));
  }
  return select(a, -a, (c & ${sign}u) != 0u);
}
`;
}

/** WGSL of a group's statistics and codes: `side(lo, hi)` and `code(x, side)`. */
function recipeWgsl(l: KvQuantLayout): string {
  if (l.element.kind === "fp8") {
    const m = l.element.minifloat;
    return `${fp8Fn(m)}${fp8CodeWgsl(m)}${DOUBLE_FLOAT_WGSL}
// The group's scale, as scaledMinifloatScale(amax, element, "f32"): divisions rounded as the
// CPU's (divRn), whatever the GPU's.
fn groupSide(lo: f32, hi: f32) -> vec2<f32> {
  return vec2<f32>(max(divRn(max(abs(lo), abs(hi)), ${m.max}.0), ${MIN_SCALE}), 0.0);
}
fn sideWord(s: vec2<f32>) -> u32 { return bitcast<u32>(s.x); }
fn code(x: f32, s: vec2<f32>) -> u32 { return fp8Code(fp8(divRn(x, s.x))); }
`;
  }
  const maxq = (1 << l.element.bits) - 1;
  return `${EXACT_WGSL}
// (scale, min) in f16: f16((hi - lo) / maxq) and f16(lo), rounded once each as on the CPU.
fn groupSide(lo: f32, hi: f32) -> vec2<f32> {
  let d = twoDiff(hi, lo);
  return vec2<f32>(f16Quotient(d.x, d.y, ${maxq}.0), f16Round(lo));
}
fn sideWord(s: vec2<f32>) -> u32 { return pack2x16float(s); }
fn code(x: f32, s: vec2<f32>) -> u32 {
  if (s.x == 0.0) { return 0u; }
  return intCode(x, s.y, s.x, ${maxq}.0);
}
`;
}

/**
 * FP8's division (`divRn`) needs `ddOne` = 1.0 from a uniform: `min(T, 1)`, 1 in every dispatch
 * with work, which no compiler can know.
 */
function ddOneInit(l: KvQuantLayout): string {
  return l.element.kind === "fp8" ? "  ddOne = f32(min(st.T, 1u));\n" : "";
}

/** The quantization kernels' bindings: the step, the float window, the step's rows, the codes. */
const STEP = `struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> st: Step;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;`;

/**
 * Quantizes the key groups a step completes: groups `g` in `[⌊pos/group⌋, ⌊(pos+T)/group⌋)`, one
 * thread per (group slot, code word), reading positions before `pos` from the window and the
 * step's own from its rows. Bindings: 0 `Step`, 1 the float key window, 2 the step's key rows, 3
 * the quantized key buffer. Dispatch `linearGroups(kvKeySlots(T) · rowWords)`.
 */
export function kvQuantizeKeysShader(l: KvQuantLayout): string {
  const { per, kvDim, rowWords: W, keyGroup: G, codeBits, window } = l;
  return `${recipeWgsl(l)}
${STEP}

// Channel c of position t: from the window before the step, from the step's rows after.
fn key(t: u32, c: u32) -> f32 {
  if (t >= st.pos) { return rows[(t - st.pos) * ${kvDim}u + c]; }
  return src[(t % ${window}u) * ${kvDim}u + c];
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
${ddOneInit(l)}  let i = gid.x + gid.y * nwg.x * ${WORKGROUP}u;
  let w = i % ${W}u;
  let g = st.pos / ${G}u + i / ${W}u;
  if (g >= (st.pos + st.T) / ${G}u) { return; }
  let t0 = g * ${G}u;
  var sides: array<vec2<f32>, ${per}>;
  for (var k = 0u; k < ${per}u; k++) {
    let c = w * ${per}u + k;
    if (c >= ${kvDim}u) { break; }
    var lo = key(t0, c);
    var hi = lo;
    for (var t = t0 + 1u; t < t0 + ${G}u; t++) {
      let x = key(t, c);
      lo = min(lo, x);
      hi = max(hi, x);
    }
    sides[k] = groupSide(lo, hi);
    dst[${l.maxSeqLen * W}u + g * ${kvDim}u + c] = sideWord(sides[k]);
  }
  for (var t = t0; t < t0 + ${G}u; t++) {
    var word = 0u;
    for (var k = 0u; k < ${per}u; k++) {
      let c = w * ${per}u + k;
      if (c >= ${kvDim}u) { break; }
      word |= code(key(t, c), sides[k]) << (k * ${codeBits}u);
    }
    dst[t * ${W}u + w] = word;
  }
}
`;
}

/**
 * Quantizes the values of the step's positions `pos … pos+T−1` (the step's rows), one thread per
 * (position, code word); the thread holding a group's first channel writes its side. Bindings as
 * {@linkcode kvQuantizeKeysShader}'s (the value window, unread, and rows); dispatch
 * `linearGroups(T · rowWords)`.
 */
export function kvQuantizeValuesShader(l: KvQuantLayout): string {
  const { per, kvDim, rowWords: W, valueGroup: G, codeBits } = l;
  return `${recipeWgsl(l)}
${STEP}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
${ddOneInit(l)}  let i = gid.x + gid.y * nwg.x * ${WORKGROUP}u;
  let w = i % ${W}u;
  if (i / ${W}u >= st.T) { return; }
  let t = st.pos + i / ${W}u;
  let row = (t - st.pos) * ${kvDim}u;
  var side = vec2<f32>(0.0);
  var word = 0u;
  for (var k = 0u; k < ${per}u; k++) {
    let c = w * ${per}u + k;
    if (c >= ${kvDim}u) { break; }
    if (k == 0u || c % ${G}u == 0u) {
      let c0 = c - c % ${G}u;
      var lo = rows[row + c0];
      var hi = lo;
      for (var j = c0 + 1u; j < c0 + ${G}u; j++) {
        lo = min(lo, rows[row + j]);
        hi = max(hi, rows[row + j]);
      }
      side = groupSide(lo, hi);
      if (c == c0) { dst[${l.maxSeqLen * W}u + t * ${kvDim / G}u + c / ${G}u] = sideWord(side); }
    }
    word |= code(rows[row + c], side) << (k * ${codeBits}u);
  }
  dst[t * ${W}u + w] = word;
}
`;
}

/**
 * What an attention kernel adds to read a quantized cache: bindings `kq` (6) and `vq` (7), the
 * read-only key and value buffers; `keysBefore(p)` / `valuesBefore(p)`, the positions a query at
 * `p` reads from them; `kdq4(j, c)` / `vdq4(j, c)` (channels `c … c+3` of position `j`,
 * dequantized) and `vdq(j, c)` (one channel's value); and `win(j)`, position `j`'s row in the
 * float windows. A kernel that reads a step's own positions (prefill) declares the step rows
 * itself (bindings 8 and 9, in its element type).
 */
export function kvReadWgsl(l: KvQuantLayout): string {
  const { per, kvDim, rowWords: W, codeBits, keyGroup, valueGroup, keyBlock, residual } = l;
  const mask = (2 ** codeBits - 1) >>> 0;
  const value = l.element.kind === "fp8"
    ? `fp8Value(code) * bitcast<f32>(side)`
    : `f32(code) * unpack2x16float(side).x + unpack2x16float(side).y`;
  const fp8 = l.element.kind === "fp8" ? fp8CodeWgsl(l.element.minifloat) : "";
  return `${fp8}
@group(0) @binding(6) var<storage, read> kq: array<u32>;
@group(0) @binding(7) var<storage, read> vq: array<u32>;

fn win(j: u32) -> u32 { return j % ${l.window}u; }
fn keysBefore(p: u32) -> u32 { return ${keyBlock}u * ((p + 1u) / ${keyBlock}u); }
fn valuesBefore(p: u32) -> u32 { return select(0u, p + 1u - ${residual}u, p + 1u > ${residual}u); }

fn kdq(j: u32, c: u32) -> f32 {
  let code = (kq[j * ${W}u + c / ${per}u] >> ((c % ${per}u) * ${codeBits}u)) & ${mask}u;
  let side = kq[${l.maxSeqLen * W}u + (j / ${keyGroup}u) * ${kvDim}u + c];
  return ${value};
}
fn vdq(j: u32, c: u32) -> f32 {
  let code = (vq[j * ${W}u + c / ${per}u] >> ((c % ${per}u) * ${codeBits}u)) & ${mask}u;
  let side = vq[${l.maxSeqLen * W}u + j * ${kvDim / valueGroup}u + c / ${valueGroup}u];
  return ${value};
}
fn kdq4(j: u32, c: u32) -> vec4<f32> {
  return vec4<f32>(kdq(j, c), kdq(j, c + 1u), kdq(j, c + 2u), kdq(j, c + 3u));
}
fn vdq4(j: u32, c: u32) -> vec4<f32> {
  return vec4<f32>(vdq(j, c), vdq(j, c + 1u), vdq(j, c + 2u), vdq(j, c + 3u));
}
`;
}
