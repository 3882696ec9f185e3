/**
 * WGSL for AQLM's matmul (`kernels/formats/aqlm.ts`): `out[t][r] (+)= s_r · Σ_j Σ_m Σ_i
 * C[m][code(r, j, m)][i] · x[t][j·g + i]`, decoding the codes inside the product. 32 threads share
 * a row, each taking groups of `g` weights in turn: it reads the group's `M` codes from the row's
 * bit stream, sums their codewords (f16 pairs) and multiplies the sum with `TT` token rows of
 * activations (1 when decoding; more for prefill, so each decoded group serves several tokens);
 * the row's partial sums meet in a workgroup reduction. The codebooks are read through the cache,
 * or, with `shared`, copied into workgroup memory first (only where they fit: not 1x16's
 * 65,536 codewords). Each thread takes `unroll` consecutive groups a step, their codes loaded
 * together (about 16 bytes), so more loads are in flight. A last group past `cols` (the format pads it) reads zeros for the missing
 * activations.
 *
 * Bindings: 0 params (`CODEBOOK_PARAMS`), 1 `Step`, 2 x, 3 codes (`rowWords` a row), 4 codebook
 * words, 5 out, 6 row scales (f32). Dispatch `(⌈rows / 8⌉, ⌈T / TT⌉, 1)`.
 *
 * @module
 */
import { CODEBOOK_PARAMS, CODEBOOK_STORE } from "./codebook_epilogue_wgsl.ts";

/** Threads sharing a row, and rows per workgroup of 256. */
export const AQLM_LANES = 32;
export const AQLM_ROWS_PER_GROUP = 256 / AQLM_LANES;

/** What the AQLM shader is built for. */
export interface AqlmShaderOptions {
  codebooks: number;
  bits: number;
  groupSize: number;
  /** Words per codeword and per row of codes. */
  stride: number;
  rowWords: number;
  cols: number;
  /** Token rows per thread. */
  tokens: number;
  /** Codebooks in workgroup memory (else read through the cache). */
  shared: boolean;
  /** Consecutive groups a thread takes per step (default {@linkcode aqlmUnroll}). */
  unroll?: number;
}

/** Groups per thread and step by default: about 16 bytes of codes, at most 8 groups. */
export function aqlmUnroll(o: Pick<AqlmShaderOptions, "codebooks" | "bits">): number {
  return Math.max(1, Math.min(8, Math.floor(128 / (o.codebooks * o.bits))));
}

/** Thrown for options the shader cannot take. */
export class AqlmShaderError extends RangeError {
  override name = "AqlmShaderError";
}

/** Words of all codebooks. */
export function aqlmCodebookWords(o: Pick<AqlmShaderOptions, "codebooks" | "bits" | "stride">) {
  return o.codebooks * 2 ** o.bits * o.stride;
}

/** The cache key of {@linkcode aqlmShader}. */
export function aqlmKey(o: AqlmShaderOptions): string {
  return `aqlm:${o.codebooks}x${o.bits}:g${o.groupSize}:s${o.stride}:w${o.rowWords}:c${o.cols}:` +
    `t${o.tokens}:u${o.unroll ?? aqlmUnroll(o)}:${o.shared ? "shared" : "cache"}`;
}

/** The AQLM matmul shader (see the module notes). */
export function aqlmShader(o: AqlmShaderOptions): string {
  const { codebooks: M, bits: B, groupSize: G, stride, cols, tokens: TT } = o;
  if (!(B >= 1 && B <= 16 && G >= 1 && stride === Math.ceil(G / 2) && TT >= 1)) {
    throw new AqlmShaderError(`No AQLM shader for ${JSON.stringify(o)}`);
  }
  const groups = Math.ceil(cols / G);
  const U = o.unroll ?? aqlmUnroll(o);
  const cb = o.shared ? "wcb" : "cb";
  const words = aqlmCodebookWords(o);
  // Codes of a width dividing 32 never straddle two words.
  const straddle = 32 % B !== 0
    ? `  if (sh + ${B}u > 32u) { v |= codes[w + 1u] << (32u - sh); }\n`
    : "";
  const sum: string[] = [];
  for (let m = 0; m < M; m++) {
    sum.push(`      { let at = (${m * 2 ** B}u + cs[u * ${M}u + ${m}u]) * ${stride}u;`);
    for (let h = 0; h < stride; h++) {
      sum.push(`        let h${h} = unpack2x16float(${cb}[at + ${h}u]);`);
      for (const [half, i] of [["x", 2 * h], ["y", 2 * h + 1]] as const) {
        if (i < G) sum.push(`        w[${i}] += h${h}.${half};`);
      }
    }
    sum.push("      }");
  }
  const tail = cols % G !== 0;
  const dot: string[] = [];
  for (let i = 0; i < G; i++) {
    dot.push(
      tail
        ? `        if (col + ${i}u < ${cols}u) { d += w[${i}] * x[xb + ${i}u]; }`
        : `        d += w[${i}] * x[xb + ${i}u];`,
    );
  }
  return `// ${aqlmKey(o)}
${CODEBOOK_PARAMS}
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> codes: array<u32>;
@group(0) @binding(4) var<storage, read> cb: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> scales: array<f32>;
var<workgroup> red: array<f32, 256>;
${o.shared ? `var<workgroup> wcb: array<u32, ${words}>;` : ""}
${CODEBOOK_STORE}
fn code(base: u32, k: u32) -> u32 {
  let bit = k * ${B}u;
  let w = base + (bit >> 5u);
  let sh = bit & 31u;
  var v = codes[w] >> sh;
${straddle}  return v & ${2 ** B - 1}u;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let lane = lid % ${AQLM_LANES}u;
  let row = wg.x * ${AQLM_ROWS_PER_GROUP}u + lid / ${AQLM_LANES}u;
  let t0 = wg.y * ${TT}u;
${
    o.shared
      ? `  for (var i = lid; i < ${words}u; i += 256u) { wcb[i] = cb[i]; }\n  workgroupBarrier();\n`
      : ""
  }  var acc: array<f32, ${TT}>;
  if (row < p.rows) {
    let base = row * ${o.rowWords}u;
    for (var j0 = lane * ${U}u; j0 < ${groups}u; j0 += ${AQLM_LANES * U}u) {
      // The codes of the lane's ${U} groups first: their loads are in flight together.
      var cs: array<u32, ${U * M}>;
      for (var k = 0u; k < ${U * M}u; k++) {
        if (j0 + k / ${M}u < ${groups}u) { cs[k] = code(base, j0 * ${M}u + k); }
      }
      for (var u = 0u; u < ${U}u; u++) {
      let j = j0 + u;
      if (j >= ${groups}u) { break; }
      // Zeroed by assignment: a declaration's zero value is not re-applied per iteration everywhere.
      var w: array<f32, ${G}>;
      w = array<f32, ${G}>();
${sum.join("\n")}
      let col = j * ${G}u;
      for (var tt = 0u; tt < ${TT}u; tt++) {
        if (t0 + tt >= st.T) { break; }
        let xb = (t0 + tt) * p.xStride + col;
        var d = 0.0;
${dot.join("\n")}
        acc[tt] += d;
      }
      }
    }
  }
  for (var tt = 0u; tt < ${TT}u; tt++) {
    red[lid] = acc[tt];
    workgroupBarrier();
    for (var s = ${AQLM_LANES / 2}u; s > 0u; s >>= 1u) {
      if (lane < s) { red[lid] += red[lid + s]; }
      workgroupBarrier();
    }
    if (lane == 0u && row < p.rows && t0 + tt < st.T) { store(t0 + tt, row, red[lid] * scales[row]); }
    workgroupBarrier();
  }
}
`;
}
