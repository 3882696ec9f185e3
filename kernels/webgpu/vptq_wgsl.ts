/**
 * WGSL for VPTQ's matmul (`kernels/formats/vptq.ts`). Stored column `j` is matrix column
 * `perm[j]` with `w = q · scale[j] + bias[j]`, so
 *
 * `y[t][r] = Σ_j q(r, j) · xs[t][j] + Σ_j bias[j] · x[t][perm[j]]`, `xs[t][j] = scale[j] · x[t][perm[j]]`,
 *
 * in two kernels and the shared epilogue (`codebook_epilogue_wgsl.ts`):
 *
 * - {@linkcode vptqPrepShader}: workgroups of {@linkcode VPTQ_PREP_COLUMNS} columns gather `xs` and
 *   sum their part of the bias term;
 * - {@linkcode vptqShader}: a thread owns one vector group (`v` consecutive output rows) and takes
 *   every `S`-th stored column of its column split, `unroll` columns a step; for each column it
 *   reads the group's index (and residual index) from the packed streams (consecutive groups are
 *   consecutive indices, so neighbouring threads read neighbouring bits), adds the centroid's `v`
 *   values times `xs[t][j]` for `TT` token rows, and the `S` threads of a group meet in a
 *   workgroup reduction; the outlier columns (`rows × o`, stored first) are added by the first
 *   split. Everything is unrolled over compile-time constants (the `TT · v` sums are scalars,
 *   never a private array, which NVIDIA keeps in off-chip local memory); whole steps run without
 *   bounds checks, the columns left one at a time. Centroids are read through the cache or, with
 *   `shared`, from workgroup memory. Each column split writes its partial sums; the epilogue adds
 *   them and the bias term into the output.
 *
 * Bindings of the prep: 0 params, 1 `Step`, 2 x, 3 column words (`perm`, then scale and bias as
 * f32 bits), 4 xs, 5 bias terms' parts (`vptqPrepGroups` a token row); dispatch
`(vptqPrepGroups(cols), T, 1)`. Of the main kernel: 0 params, 1 `Step`,
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

/** Columns per thread and step by default: 8 index loads (of 32 bytes a warp) in flight together. */
export const VPTQ_UNROLL = 8;

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

/** Columns a workgroup of the prep shader takes (4 a thread, their loads in flight together). */
export const VPTQ_PREP_COLUMNS = 1024;

/** Workgroups of the prep shader per token row, and so the bias term's parts. */
export function vptqPrepGroups(cols: number): number {
  return Math.ceil(cols / VPTQ_PREP_COLUMNS);
}

/** The prep shader: `xs` and (with `norm`) the bias terms' parts (see the module notes). */
export function vptqPrepShader(cols: number, norm: boolean): string {
  const per = VPTQ_PREP_COLUMNS / 256;
  const ks = Array.from({ length: per }, (_, k) => k);
  return `// ${vptqPrepKey(cols, norm)}
${CODEBOOK_PARAMS}
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> side: array<u32>;
@group(0) @binding(4) var<storage, read_write> xs: array<f32>;
@group(0) @binding(5) var<storage, read_write> bsum: array<f32>;
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let t = wg.y;
  // The columns' permutation entries first, then their activations: loads in flight together.
${
    ks.map((k) =>
      `  let j${k} = min(wg.x * ${VPTQ_PREP_COLUMNS}u + ${k * 256}u + lid, ${cols - 1}u);`
    ).join("\n")
  }
${ks.map((k) => `  let xp${k} = x[t * p.xStride + side[j${k}]];`).join("\n")}
  var part = 0.0;
${
    ks.map((k) =>
      `  if (wg.x * ${VPTQ_PREP_COLUMNS}u + ${k * 256}u + lid < ${cols}u) {
${
        norm
          ? `    xs[t * ${cols}u + j${k}] = xp${k} * bitcast<f32>(side[${cols}u + j${k}]);
    part += xp${k} * bitcast<f32>(side[${2 * cols}u + j${k}]);`
          : `    xs[t * ${cols}u + j${k}] = xp${k};`
      }
  }`
    ).join("\n")
  }
${
    norm
      ? `  red[lid] = part;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { bsum[t * ${vptqPrepGroups(cols)}u + wg.x] = red[0]; }`
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
  const U = Math.max(1, o.unroll ?? VPTQ_UNROLL);
  const codebookFloats = o.mainFloats + o.resFloats;
  const cb = o.shared ? "wcb" : "cb";
  const residual = o.resBits > 0;
  const tokens = Array.from({ length: TT }, (_, t) => t);
  const values = Array.from({ length: V }, (_, l) => l);
  // Everything over compile-time constants: a token row's V sums are scalars, not an array.
  const accs = tokens.flatMap((t) => values.map((l) => `  var acc${t}_${l} = 0.0;`)).join("\n");
  const tokenRow = (t: number) => (TT === 1 ? "wg.y" : `min(wg.y * ${TT}u + ${t}u, st.T - 1u)`);
  const column = (q: number) => {
    const s = [`      {`, `        let base = ix${q} * ${V}u;`];
    if (residual) s.push(`        let rbase = ${o.mainFloats}u + rx${q} * ${V}u;`);
    for (const l of values) {
      s.push(
        `        let w${l} = ${cb}[base + ${l}u]${residual ? ` + ${cb}[rbase + ${l}u]` : ""};`,
      );
    }
    for (const t of tokens) {
      s.push(`        let xv${t} = xs[xb${t} + ${O}u + j${q}];`);
      for (const l of values) s.push(`        acc${t}_${l} += w${l} * xv${t};`);
    }
    s.push("      }");
    return s.join("\n");
  };
  const loads = (q: number, j: string) =>
    [
      `      let j${q} = ${j};`,
      `      let ix${q} = mainIndex(j${q} * ${G}u + g);`,
      ...(residual ? [`      let rx${q} = resIndex(j${q} * ${G}u + g);`] : []),
    ].join("\n");
  // Columns of the split: whole steps of U a thread unguarded, then the rest one at a time.
  const stepCols = S * U;
  const fullSteps = Math.floor(chunk / stepCols);
  const body = [
    `    let jStart = z * ${chunk}u;`,
    `    let end = min(${Q}u, jStart + ${chunk}u);`,
    `    if (jStart + ${fullSteps * stepCols}u <= end) {`,
    `    for (var i = 0u; i < ${fullSteps}u; i++) {`,
    ...Array.from({ length: U }, (_, q) => loads(q, `jStart + i * ${stepCols}u + ${q * S}u + s`)),
    ...Array.from({ length: U }, (_, q) => column(q)),
    "    }",
    `    for (var j = jStart + ${fullSteps * stepCols}u + s; j < end; j += ${S}u) {`,
    loads(0, "j"),
    column(0),
    "    }",
    "    } else {",
    `    for (var j = jStart + s; j < end; j += ${S}u) {`,
    loads(0, "j"),
    column(0),
    "    }",
    "    }",
  ];
  const outliers = O > 0
    ? `    if (z == 0u) {
      for (var j = s; j < ${O}u; j += ${S}u) {
${
      tokens.map((t) =>
        `        let xo${t} = xs[xb${t} + j];
${
          values.map((l) =>
            `        acc${t}_${l} += select(0.0, cb[${codebookFloats}u + min(g * ${V}u + ${l}u, ${
              o.rows - 1
            }u) * ${O}u + j], g * ${V}u + ${l}u < ${o.rows}u) * xo${t};`
          ).join("\n")
        }`
      ).join("\n")
    }
      }
    }
`
    : "";
  const reduce = tokens.map((t) =>
    `${values.map((l) => `  red[${l * 256}u + lid] = acc${t}_${l};`).join("\n")}
  workgroupBarrier();
  if (s == 0u && g < ${G}u && wg.y * ${TT}u + ${t}u < st.T) {
${
      values.map((l) =>
        `    if (g * ${V}u + ${l}u < ${o.rows}u) {
      var v = 0.0;
      for (var k = 0u; k < ${S}u; k++) { v += red[${l * 256}u + k * ${GB}u + gi]; }
      partial[(z * st.T + wg.y * ${TT}u + ${t}u) * ${o.rows}u + g * ${V}u + ${l}u] = v;
    }`
      ).join("\n")
    }
  }
${t < TT - 1 ? "  workgroupBarrier();\n" : ""}`
  ).join("");
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
  let z = wg.z;
${
    o.shared
      ? `  for (var i = lid; i < ${codebookFloats}u; i += 256u) { wcb[i] = cb[i]; }\n  workgroupBarrier();\n`
      : ""
  }${tokens.map((t) => `  let xb${t} = ${tokenRow(t)} * ${cols}u;`).join("\n")}
${accs}
  if (g < ${G}u) {
${body.join("\n")}
${outliers}  }
${reduce}}
`;
}
