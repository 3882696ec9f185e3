/**
 * WGSL for VPTQ's matmul (`kernels/formats/vptq.ts`). Stored column `j` is matrix column
 * `perm[j]` with `w = q · scale[j] + bias[j]`, so
 *
 * `y[t][r] = Σ_j q(r, j) · xs[t][j] + Σ_j bias[j] · x[t][perm[j]]`, `xs[t][j] = scale[j] · x[t][perm[j]]`,
 *
 * in two kernels and the shared epilogue (`codebook_epilogue_wgsl.ts`):
 *
 * - {@linkcode vptqPrepShader}: one workgroup per token row gathers `xs` and sums the bias term;
 * - {@linkcode vptqShader}: a thread owns one vector group (`v` consecutive output rows) over
 *   steps of `unroll` stored columns (every `S`-th step of its column split); for each column it
 *   reads the group's index
 *   (and residual index) from the packed streams (consecutive groups are consecutive indices, so
 *   neighbouring threads read neighbouring bits), adds the centroid's `v` values times
 *   `xs[t][j]` for `TT` token rows, and the `S` threads of a group meet in a workgroup reduction;
 *   the outlier columns (`rows × o`, stored first) are added by the first split. Centroids are
 *   read through the cache or, with `shared`, from workgroup memory. Each column split writes its
 *   partial sums; the epilogue adds them and the bias term into the output.
 *
 * Bindings of the prep: 0 params, 1 `Step`, 2 x, 3 column words (`perm`, then scale and bias as
 * f32 bits), 4 xs, 5 bias terms; dispatch `(T, 1, 1)`. Of the main kernel: 0 params, 1 `Step`,
 * 2 xs, 3 index words, 4 centroids (main, residual, then the outliers, f32), 5 partial sums;
 * dispatch `(⌈G / GB⌉, ⌈T / TT⌉, splits)`.
 *
 * @module
 */
import { CODEBOOK_PARAMS } from "./codebook_epilogue_wgsl.ts";

/** Vector groups per workgroup of the main kernel, and threads per group (`GB × S = 256`). */
export const VPTQ_GROUPS_PER_WORKGROUP = 64;
export const VPTQ_SLICES = 256 / VPTQ_GROUPS_PER_WORKGROUP;

/** What the VPTQ kernels are built for. */
export interface VptqShaderOptions {
  vectorLen: number;
  /** Index bits (main, residual: 0 for none). */
  bits: number;
  resBits: number;
  /** Word where the residual index stream starts. */
  resOffset: number;
  /** Floats of the main and residual centroids (the outliers follow). */
  mainFloats: number;
  resFloats: number;
  rows: number;
  cols: number;
  outlierCols: number;
  /** Column splits of the main kernel (its z dimension). */
  splits: number;
  tokens: number;
  shared: boolean;
  /** Columns a thread takes per step (default {@linkcode VPTQ_UNROLL}). */
  unroll?: number;
}

/** Columns per thread and step by default, their index loads in flight together. */
export const VPTQ_UNROLL = 4;

/** The cache key of {@linkcode vptqShader}. */
export function vptqKey(o: VptqShaderOptions): string {
  return `vptq:v${o.vectorLen}:b${o.bits}:${o.resBits}@${o.resOffset}:f${o.mainFloats}:` +
    `${o.resFloats}:${o.rows}x${o.cols}:o${o.outlierCols}:z${o.splits}:t${o.tokens}:` +
    `u${o.unroll ?? VPTQ_UNROLL}:` +
    (o.shared ? "shared" : "cache");
}

/** The cache key of {@linkcode vptqPrepShader}. */
export function vptqPrepKey(cols: number, norm: boolean): string {
  return `vptq-prep:${cols}:${norm ? "norm" : "plain"}`;
}

/** The prep shader: `xs` and (with `norm`) the bias terms (see the module notes). */
export function vptqPrepShader(cols: number, norm: boolean): string {
  return `// ${vptqPrepKey(cols, norm)}
${CODEBOOK_PARAMS}
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> side: array<u32>;
@group(0) @binding(4) var<storage, read_write> xs: array<f32>;
@group(0) @binding(5) var<storage, read_write> bsum: array<f32>;
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let t = wg.x;
  var part = 0.0;
  for (var j = lid; j < ${cols}u; j += 256u) {
    let xp = x[t * p.xStride + side[j]];
${
    norm
      ? `    xs[t * ${cols}u + j] = xp * bitcast<f32>(side[${cols}u + j]);
    part += xp * bitcast<f32>(side[${2 * cols}u + j]);`
      : `    xs[t * ${cols}u + j] = xp;`
  }
  }
${
    norm
      ? `  red[lid] = part;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { bsum[t] = red[0]; }`
      : ""
  }
}
`;
}

/** WGSL reading the `bits`-bit index `at` of the stream starting at word `from`. */
function indexFn(name: string, bits: number, from: number): string {
  const straddle = 32 % bits !== 0
    ? `  if (sh + ${bits}u > 32u) { v |= idx[w + 1u] << (32u - sh); }\n`
    : "";
  return `fn ${name}(at: u32) -> u32 {
  let bit = at * ${bits}u;
  let w = ${from}u + (bit >> 5u);
  let sh = bit & 31u;
  var v = idx[w] >> sh;
${straddle}  return v & ${2 ** bits - 1}u;
}
`;
}

/** The main kernel (see the module notes). */
export function vptqShader(o: VptqShaderOptions): string {
  const { vectorLen: V, cols, outlierCols: O, tokens: TT, splits } = o;
  const GB = VPTQ_GROUPS_PER_WORKGROUP;
  const S = VPTQ_SLICES;
  const G = Math.ceil(o.rows / V);
  const Q = cols - O;
  const chunk = Math.ceil(Q / splits);
  const U = o.unroll ?? VPTQ_UNROLL;
  const codebookFloats = o.mainFloats + o.resFloats;
  const cb = o.shared ? "wcb" : "cb";
  const residual = o.resBits > 0;
  return `// ${vptqKey(o)}
${CODEBOOK_PARAMS}
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read> idx: array<u32>;
@group(0) @binding(4) var<storage, read> cb: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
var<workgroup> red: array<f32, ${256 * V}>;
${o.shared ? `var<workgroup> wcb: array<f32, ${codebookFloats}>;` : ""}
${indexFn("mainIndex", o.bits, 0)}${residual ? indexFn("resIndex", o.resBits, o.resOffset) : ""}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let gi = lid % ${GB}u;
  let s = lid / ${GB}u;
  let g = wg.x * ${GB}u + gi;
  let t0 = wg.y * ${TT}u;
  let z = wg.z;
${
    o.shared
      ? `  for (var i = lid; i < ${codebookFloats}u; i += 256u) { wcb[i] = cb[i]; }\n  workgroupBarrier();\n`
      : ""
  }  var acc: array<f32, ${TT * V}>;
  if (g < ${G}u) {
    let end = min(${Q}u, (z + 1u) * ${chunk}u);
    for (var j0 = z * ${chunk}u + s * ${U}u; j0 < end; j0 += ${S * U}u) {
      // The indices of the thread's ${U} columns first: their loads are in flight together.
      var ix: array<u32, ${U}>;
${
    residual
      ? `      var rx: array<u32, ${U}>;
`
      : ""
  }      for (var u = 0u; u < ${U}u; u++) {
        if (j0 + u < end) {
          ix[u] = mainIndex((j0 + u) * ${G}u + g);
${
    residual
      ? `          rx[u] = resIndex((j0 + u) * ${G}u + g);
`
      : ""
  }        }
      }
      for (var u = 0u; u < ${U}u; u++) {
      let j = j0 + u;
      if (j >= end) { break; }
      let base = ix[u] * ${V}u;
${
    residual
      ? `      let rbase = ${o.mainFloats}u + rx[u] * ${V}u;
`
      : ""
  }      var w: array<f32, ${V}>;
      for (var l = 0u; l < ${V}u; l++) { w[l] = ${cb}[base + l]${
    residual ? ` + ${cb}[rbase + l]` : ""
  }; }
      for (var tt = 0u; tt < ${TT}u; tt++) {
        if (t0 + tt >= st.T) { break; }
        let xv = xs[(t0 + tt) * ${cols}u + ${O}u + j];
        for (var l = 0u; l < ${V}u; l++) { acc[tt * ${V}u + l] += w[l] * xv; }
      }
      }
    }
${
    O > 0
      ? `    if (z == 0u) {
      for (var j = s; j < ${O}u; j += ${S}u) {
        for (var tt = 0u; tt < ${TT}u; tt++) {
          if (t0 + tt >= st.T) { break; }
          let xv = xs[(t0 + tt) * ${cols}u + j];
          for (var l = 0u; l < ${V}u; l++) {
            let r = g * ${V}u + l;
            if (r < ${o.rows}u) { acc[tt * ${V}u + l] += cb[${codebookFloats}u + r * ${O}u + j] * xv; }
          }
        }
      }
    }
`
      : ""
  }  }
  for (var tt = 0u; tt < ${TT}u; tt++) {
    for (var l = 0u; l < ${V}u; l++) { red[l * 256u + lid] = acc[tt * ${V}u + l]; }
    workgroupBarrier();
    if (s == 0u && g < ${G}u && t0 + tt < st.T) {
      for (var l = 0u; l < ${V}u; l++) {
        let r = g * ${V}u + l;
        if (r < ${o.rows}u) {
          var v = 0.0;
          for (var k = 0u; k < ${S}u; k++) { v += red[l * 256u + k * ${GB}u + gi]; }
          partial[(z * st.T + t0 + tt) * ${o.rows}u + r] = v;
        }
      }
    }
    workgroupBarrier();
  }
}
`;
}
