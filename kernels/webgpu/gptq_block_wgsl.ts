/**
 * WGSL for GPTQ's in-block column loop on integer grids (one dispatch per block of columns):
 * each thread owns one row of the weights, keeps the row's `count` block values in private
 * memory, and for each column `i` of the block, in quantization order,
 *
 * - at a group's first column (free groups only), fits the row's scale and zero point to the
 *   group's columns as the device's weights hold them at the block's start (the reference reads
 *   the outer `W`, without the block's own earlier updates; so does `gptq_loop.ts`);
 * - rounds the value on the row's grid, `clamp(round(w / scale) + zero, minq, maxq)`, ties to
 *   even, and stores the code at the column's original position (act_order);
 * - writes the error `e = (w − q) / U_ii` to the block's error matrix (`count × rows`, the `B`
 *   of the trailing `AᵀB` update, `atb_wgsl.ts`), adds `(w − q)² / U_ii² / 2` to the row's
 *   loss, and subtracts `e · U_ij` from the block's later values.
 *
 * The arithmetic is float32 (as PyTorch's reference runs on a GPU); the decisions that pick a
 * code or a scale are exact, so that a float32 value gives the code and scale that the CPU's
 * float64 arithmetic (`kernels/formats/int.ts`: `groupParams`, `roundHalfEven`, `roundScale`)
 * gives for the same value: a rounding to an integer compares `w` with `(k ± ½) · scale`
 * (products split into exact halves, so no fused multiply-add is assumed), and a scale
 * `n / maxq` is rounded to f16 by comparing `n` with `maxq` times the f16 midpoints, or to bf16
 * and f32 through the correctly rounded f32 quotient, as `roundScale` does. An asymmetric
 * group's range `hi − lo` is carried as an exact float32 pair. The sums whose rounding these
 * decisions read pass through `opaque`, so that a compiler's algebra (a software
 * driver rewrites `(a + b) − a` as `b`) cannot drop it.
 *
 * @module
 */
import type { ScaleDtype } from "../../core/model.ts";

/** Rows (threads) per workgroup. */
export const GPTQ_BLOCK_WORKGROUP = 64;

/** Thrown for a shape or grid the kernel cannot take. */
export class GptqBlockArgumentError extends Error {
  override name = "GptqBlockArgumentError";
}

/** The integer grid a shader is specialised for (`kernels/formats/int.ts` settings). */
export interface GptqIntGrid {
  /** Code bits, 2…8. */
  bits: number;
  symmetric: boolean;
  /** `range: restricted` (codes from 1, scale `amax / (2^(b−1) − 1)`). */
  restricted: boolean;
  scaleDtype: ScaleDtype;
  /** Whether groups are fitted in the loop (free groups) rather than fixed beforehand. */
  fit: boolean;
  /** Most columns per block (the private array's length). */
  block: number;
}

/** Why the kernel cannot take `g`, or undefined. */
export function gptqBlockUnsupported(g: GptqIntGrid): string | undefined {
  if (!(Number.isInteger(g.bits) && g.bits >= 2 && g.bits <= 8)) return `${g.bits}-bit codes`;
  if (!(Number.isInteger(g.block) && g.block >= 1 && g.block <= 1024)) {
    return `blocks of ${g.block} columns (1…1024)`;
  }
  if (g.restricted && !g.symmetric) return "range: restricted without symmetric";
  return undefined;
}

/** The pipeline cache key of {@linkcode gptqBlockShader} (it is also keyed on the text). */
export function gptqBlockKey(g: GptqIntGrid): string {
  const sym = g.symmetric ? "sym" : "asym";
  const range = g.restricted ? "-restricted" : "";
  return `gptq-block-int${g.bits}-${sym}${range}-${g.scaleDtype}-${
    g.fit ? "fit" : "fixed"
  }-${g.block}`;
}

/** One block's dispatch: the matrix, the block `[i1, i1 + count)`, the group layout. */
export interface GptqBlockParams {
  rows: number;
  cols: number;
  i1: number;
  count: number;
  /** Columns per group (in original column order); `cols` for one group per row. */
  groupSize: number;
  /** u32 words per row of the code buffer (four 8-bit codes a word). */
  codeStride: number;
}

/** u32 words per row of the code buffer of a `cols`-column matrix. */
export function gptqCodeStride(cols: number): number {
  return Math.ceil(cols / 4);
}

/** The uniform words of one dispatch (validated). */
export function gptqBlockUniform(p: GptqBlockParams, g: GptqIntGrid): Uint32Array<ArrayBuffer> {
  for (const [k, v] of Object.entries(p)) {
    if (!(Number.isInteger(v) && v >= 0 && v < 2 ** 31)) {
      throw new GptqBlockArgumentError(`GPTQ block parameter ${k} must be a u32, got ${v}`);
    }
  }
  if (
    p.count < 1 || p.count > g.block || p.i1 + p.count > p.cols || p.groupSize < 1 ||
    p.codeStride < gptqCodeStride(p.cols)
  ) {
    throw new GptqBlockArgumentError(
      `GPTQ block [${p.i1}, ${p.i1 + p.count}) with groups of ${p.groupSize} does not fit ` +
        `${p.cols} columns, blocks of up to ${g.block} and ${p.codeStride} code words a row`,
    );
  }
  const groups = Math.ceil(p.cols / p.groupSize);
  return Uint32Array.from([p.rows, p.cols, p.i1, p.count, p.groupSize, groups, p.codeStride, 0]);
}

/** Workgroups of one dispatch over `rows` rows. */
export function gptqBlockGroups(rows: number): [number, number, number] {
  return [Math.max(1, Math.ceil(rows / GPTQ_BLOCK_WORKGROUP)), 1, 1];
}

/** `v` as a WGSL f32 literal (exact for the powers of two and small integers used here). */
function f(v: number): string {
  return Number.isInteger(v) ? `${v}.0` : v.toExponential();
}

/**
 * WGSL `scale_of(n, ne)`: `(n + ne) / maxq` rounded to the scale dtype (ties to even), as
 * `roundScale` rounds the float64 quotient; 0 becomes the dtype's smallest value.
 */
function scaleFn(g: GptqIntGrid, divisor: number): string {
  const m = f(divisor);
  if (g.scaleDtype === "f16") {
    // f16 candidates have 11 significant bits and their midpoints 12, so `m · mid` is exact.
    return `fn f16_floor(x: f32) -> f32 {
  if (x < ${f(2 ** -14)}) { return floor(x * ${f(2 ** 24)}) * ${f(2 ** -24)}; }
  return bitcast<f32>(bitcast<u32>(x) & 0xffffe000u);
}
fn f16_ulp(c: f32) -> f32 {
  if (c < ${f(2 ** -14)}) { return ${f(2 ** -24)}; }
  return bitcast<f32>((bitcast<u32>(c) & 0x7f800000u) - (10u << 23u));
}
// sign of (n + ne) − m·c for m·c exact and close to n (Sterbenz: n − m·c is exact).
fn above(n: f32, ne: f32, c: f32) -> f32 {
  return opaque(n - ${m} * c) + ne;
}
fn scale_of(n: f32, ne: f32) -> f32 {
  var c = f16_floor(n / ${m});
  if (c > 0.0 && above(n, ne, c) < 0.0) {
    c = f16_floor(bitcast<f32>(bitcast<u32>(c) - 1u));
  }
  let u = f16_ulp(c);
  let t = above(n, ne, c + 0.5 * u);
  if (t > 0.0 || (t == 0.0 && (u32(c / u) & 1u) == 1u)) { c += u; }
  return select(c, ${f(2 ** -24)}, c == 0.0);
}`;
  }
  // bf16 as roundScale does it: the f32 quotient (correctly rounded), then its bf16 rounding.
  const bf16 = g.scaleDtype === "bf16"
    ? `let b = bitcast<u32>(q);
  let r = bitcast<f32>(((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) << 16u);
  return select(r, ${f(2 ** -133)}, r == 0.0);`
    : `return select(q, ${f(2 ** -149)}, q == 0.0);`;
  return `fn f32_ulp(c: f32) -> f32 {
  return max(bitcast<f32>(bitcast<u32>(c) & 0x7f800000u) * ${f(2 ** -23)}, ${f(2 ** -149)});
}
fn scale_of(n: f32, ne: f32) -> f32 {
  var q = n / ${m};
  for (var it = 0u; it < 3u; it++) {
    // (n + ne) − m·q, with n − m·q exact.
    let r = n_minus(n, ${m}, q) + ne;
    let h = 0.5 * ${m} * f32_ulp(q);
    let odd = (bitcast<u32>(q) & 1u) == 1u;
    if (r > h || (r == h && odd)) {
      q = bitcast<f32>(bitcast<u32>(q) + 1u);
    } else if (q > 0.0 && (r < -h || (r == -h && odd))) {
      q = bitcast<f32>(bitcast<u32>(q) - 1u);
    }
  }
  ${bf16}
}`;
}

/** WGSL `fit(r, col, at)`: the row's parameters of the group starting at `col` into `params`. */
function fitFn(g: GptqIntGrid): string {
  const maxq = 2 ** g.bits - 1;
  const half = 2 ** (g.bits - 1);
  const fitted = g.symmetric
    ? `let amax = max(-lo, hi);
  if (amax == 0.0) { return vec2<f32>(1.0, ${f(half)}); }
  return vec2<f32>(scale_of(${g.restricted ? "amax" : "2.0 * amax"}, 0.0), ${f(half)});`
    : `if (hi == lo) { return vec2<f32>(1.0, 0.0); }
  // hi − lo = a + b (both ≥ 0) as s + e exactly (Fast2Sum, a ≥ b); s is made opaque, or a
  // compiler may rewrite (a + b) − a as b and lose e.
  let a = max(hi, -lo);
  let b = min(hi, -lo);
  let s = opaque(a + b);
  let e = b - (s - a);
  let scale = scale_of(s, e);
  return vec2<f32>(scale, clamp(round_div(-lo, scale), 0.0, ${f(maxq)}));`;
  return `fn fit(r: u32, col: u32) -> vec2<f32> {
  let end = min(p.cols, col + p.gsize);
  var lo = 0.0;
  var hi = 0.0;
  for (var c = col; c < end; c++) {
    let v = wt[c * p.rows + r];
    if (v < lo) { lo = v; }
    if (v > hi) { hi = v; }
  }
  ${fitted}
}`;
}

/**
 * The kernel. Bindings (signature `urrrwwww`): the {@linkcode gptqBlockUniform} words; `Wᵀ`
 * (`cols × rows`, the weights at the block's start); the block's rows of `U` (`count × cols`);
 * the column order (original column of each quantization position); the parameters (`rows ×
 * groups` pairs: f32 scale bits, zero point), read and, for free groups, written; the codes
 * (`rows × codeStride` words, four bytes each, by original column); the errors (`count ×
 * rows`); the loss per row. Dispatch {@linkcode gptqBlockGroups}.
 */
export function gptqBlockShader(g: GptqIntGrid): string {
  const why = gptqBlockUnsupported(g);
  if (why !== undefined) throw new GptqBlockArgumentError(`GPTQ's block kernel cannot take ${why}`);
  const maxq = 2 ** g.bits - 1;
  const minq = g.restricted ? 1 : 0;
  const divisor = g.symmetric && g.restricted ? 2 ** (g.bits - 1) - 1 : maxq;
  const fitStep = g.fit
    ? `if (col % p.gsize == 0u) {
      let fitted = fit(r, col);
      params[2u * at] = bitcast<u32>(fitted.x);
      params[2u * at + 1u] = u32(fitted.y);
    }`
    : "";
  return `// ${gptqBlockKey(g)}
struct P { rows: u32, cols: u32, i1: u32, count: u32, gsize: u32, groups: u32, stride: u32,
  zero: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> perm: array<u32>;
@group(0) @binding(4) var<storage, read_write> params: array<u32>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;
@group(0) @binding(6) var<storage, read_write> err: array<f32>;
@group(0) @binding(7) var<storage, read_write> loss: array<f32>;
var<private> w1: array<f32, ${g.block}>;

// x, through a uniform the compiler cannot see is 0, so it cannot fold arithmetic across it.
fn opaque(x: f32) -> f32 {
  return select(x, 0.0, p.zero != 0u);
}

// n − m·q for m of at most 12 significant bits: exact where it is small (q near n / m), else
// of the right sign. q is split in halves of 12 bits whose products with m are exact, so no
// fused multiply-add is needed (a software Vulkan driver may not fuse).
fn n_minus(n: f32, m: f32, q: f32) -> f32 {
  let qh = bitcast<f32>(bitcast<u32>(q) & 0xfffff000u);
  return opaque(n - m * qh) - m * (q - qh);
}

// round(n / s), ties to even, decided exactly: n against (k ± ½)·s. Quotients past 2¹¹ are
// beyond every code range (the caller clamps), so they keep the approximate rounding.
fn round_div(n: f32, s: f32) -> f32 {
  var k = round(n / s);
  if (abs(k) > ${f(2 ** 11)}) { return k; }
  for (var it = 0u; it < 2u; it++) {
    let odd = abs(k % 2.0) == 1.0;
    let up = n_minus(n, k + 0.5, s);
    let down = n_minus(n, k - 0.5, s);
    if (up > 0.0 || (up == 0.0 && odd)) {
      k += 1.0;
    } else if (down < 0.0 || (down == 0.0 && odd)) {
      k -= 1.0;
    }
  }
  return k;
}

${g.fit ? `${scaleFn(g, divisor)}\n\n${fitFn(g)}` : ""}

@compute @workgroup_size(${GPTQ_BLOCK_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  if (r >= p.rows) { return; }
  for (var j = 0u; j < p.count; j++) { w1[j] = wt[(p.i1 + j) * p.rows + r]; }
  var total = 0.0;
  for (var i = 0u; i < p.count; i++) {
    let col = p.i1 + i;
    let orig = perm[col];
    let at = r * p.groups + orig / p.gsize;
    ${fitStep}
    let scale = bitcast<f32>(params[2u * at]);
    let zero = f32(params[2u * at + 1u]);
    let w = w1[i];
    let k = clamp(round_div(w, scale) + zero, ${f(minq)}, ${f(maxq)});
    let q = scale * (k - zero);
    let word = r * p.stride + orig / 4u;
    let shift = (orig % 4u) * 8u;
    codes[word] = (codes[word] & ~(0xffu << shift)) | (u32(k) << shift);
    let d = u[i * p.cols + col];
    let e = (w - q) / d;
    total += (w - q) * (w - q) / (d * d) / 2.0;
    err[i * p.rows + r] = e;
    for (var j = i + 1u; j < p.count; j++) { w1[j] -= e * u[i * p.cols + p.i1 + j]; }
  }
  loss[r] += total;
}
`;
}
