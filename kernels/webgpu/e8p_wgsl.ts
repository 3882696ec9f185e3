/**
 * WGSL for the middle step of QuIP#'s matmul (`kernels/formats/e8p_format.ts`): `z[t][r] =
 * Σ_j ĉ(r, j) · u[t][8j .. 8j + 8)`, with `u` the input after its signs and Hadamard transform
 * (`hadamard_wgsl.ts`) and `ĉ` the E8P12 codeword of code `(r, j)` (plus the residual codeword
 * divided by ρ for `e8p12-rvq3`/`-rvq4`), decoded in the kernel from the 256 absolute patterns
 * ({@linkcode e8pTable}: eight 3-bit `2|v|` nibbles, bit 31 the pattern's odd sum) and the code's
 * sign byte, as `e8p_codebook.ts` defines it. 32 threads share a row, each taking `unroll`
 * consecutive codewords a step (their codes loaded together) for `TT` token rows; partial sums meet in a workgroup reduction. The table (and the
 * E81B grid of `rvq3`) is read through the cache, or with `shared` from workgroup memory.
 *
 * Bindings: 0 params (`CODEBOOK_PARAMS`), 1 `Step`, 2 u (rows of `cols`), 3 codes, 4 the table
 * words (then E81B as f32 bits), 5 z (rows of `rows`), 6 residual codes. Dispatch
 * `(⌈rows / 8⌉, ⌈T / TT⌉, 1)`.
 *
 * @module
 */
import { E81B_GRID, E8P_ABS, E8P_RVQ } from "../formats/e8p_codebook.ts";
import { CODEBOOK_PARAMS } from "./codebook_epilogue_wgsl.ts";
import { AQLM_LANES as LANES } from "./aqlm_wgsl.ts";

/** What the E8P shader is built for. */
export interface E8pShaderOptions {
  rvq: 0 | 3 | 4;
  rowWords: number;
  secondWords: number;
  cols: number;
  tokens: number;
  shared: boolean;
  /** Consecutive codewords a thread takes per step (default {@linkcode E8P_UNROLL}). */
  unroll?: number;
}

/** Codewords per thread and step by default: 16 bytes of E8P12 codes loaded together. */
export const E8P_UNROLL = 8;

/** The cache key of {@linkcode e8pShader}. */
export function e8pKey(o: E8pShaderOptions): string {
  return `e8p:rvq${o.rvq}:w${o.rowWords}:${o.secondWords}:c${o.cols}:t${o.tokens}:` +
    `u${o.unroll ?? E8P_UNROLL}:` +
    (o.shared ? "shared" : "cache");
}

/** The decoder's table: 256 pattern words, then (for `rvq3`) the E81B grid as f32 bits. */
export function e8pTable(rvq: 0 | 3 | 4): Uint32Array {
  const out = new Uint32Array(256 + (rvq === 3 ? 256 * 8 : 0));
  for (let k = 0; k < 256; k++) {
    let sum = 0;
    let word = 0;
    for (let i = 0; i < 8; i++) {
      const v = E8P_ABS[8 * k + i]!;
      sum += v;
      word += 2 * v * 2 ** (4 * i);
    }
    out[k] = word + (sum % 2 ? 2 ** 31 : 0);
  }
  if (rvq === 3) out.set(new Uint32Array(E81B_GRID.buffer, E81B_GRID.byteOffset, 2048), 256);
  return out;
}

/** Which bit of the sign byte negates coordinate `i` (`e8p_codebook.ts`). */
const SLOT = [0, 4, 1, 5, 2, 6, 3, 7] as const;

/** The E8P shader (see the module notes). */
export function e8pShader(o: E8pShaderOptions): string {
  const { cols, tokens: TT } = o;
  const vectors = Math.ceil(cols / 8);
  const U = o.unroll ?? E8P_UNROLL;
  const tb = o.shared ? "wtb" : "tb";
  const tableWords = 256 + (o.rvq === 3 ? 2048 : 0);
  const decode = SLOT.map((slot, i) =>
    `  v[${i}] = f32((a >> ${4 * i}u) & 7u) * select(0.5, -0.5, ((s >> ${slot}u) & 1u) == 1u) + sh;`
  ).join("\n");
  const rho = o.rvq ? E8P_RVQ[o.rvq].residScale : 1;
  const secondLoad = o.rvq === 4
    ? `          cs2[k] = (second[row * ${o.secondWords}u + (j >> 1u)] >> (16u * (j & 1u))) & 0xffffu;\n`
    : o.rvq === 3
    ? `          cs2[k] = (second[row * ${o.secondWords}u + (j >> 2u)] >> (8u * (j & 3u))) & 0xffu;\n`
    : "";
  const residual = o.rvq === 4
    ? `      let r2 = e8p(cs2[k]);
      for (var i = 0u; i < 8u; i++) { w[i] += r2[i] / ${rho}; }`
    : o.rvq === 3
    ? `      for (var i = 0u; i < 8u; i++) { w[i] += bitcast<f32>(${tb}[256u + cs2[k] * 8u + i]) / ${rho}; }`
    : "";
  const tail = cols % 8 !== 0;
  return `// ${e8pKey(o)}
${CODEBOOK_PARAMS}
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> codes: array<u32>;
@group(0) @binding(4) var<storage, read> tb: array<u32>;
@group(0) @binding(5) var<storage, read_write> z: array<f32>;
@group(0) @binding(6) var<storage, read> second: array<u32>;
var<workgroup> red: array<f32, 256>;
${o.shared ? `var<workgroup> wtb: array<u32, ${tableWords}>;` : ""}

fn e8p(code: u32) -> array<f32, 8> {
  let a = ${tb}[code >> 8u];
  var s = code & 255u;
  let par = countOneBits(s) & 1u;
  s ^= par;
  s ^= (a >> 31u) << 7u;
  let sh = select(0.25, -0.25, par == 1u);
  var v: array<f32, 8>;
${decode}
  return v;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let lane = lid % ${LANES}u;
  let row = wg.x * ${256 / LANES}u + lid / ${LANES}u;
  let t0 = wg.y * ${TT}u;
${
    o.shared
      ? `  for (var i = lid; i < ${tableWords}u; i += 256u) { wtb[i] = tb[i]; }\n  workgroupBarrier();\n`
      : ""
  }  var acc: array<f32, ${TT}>;
  if (row < p.rows) {
    for (var j0 = lane * ${U}u; j0 < ${vectors}u; j0 += ${LANES * U}u) {
      // The codes of the lane's ${U} codewords first: their loads are in flight together.
      var cs: array<u32, ${U}>;
${
    o.rvq
      ? `      var cs2: array<u32, ${U}>;
`
      : ""
  }      for (var k = 0u; k < ${U}u; k++) {
        let j = j0 + k;
        if (j < ${vectors}u) {
          cs[k] = (codes[row * ${o.rowWords}u + (j >> 1u)] >> (16u * (j & 1u))) & 0xffffu;
${secondLoad}        }
      }
      for (var k = 0u; k < ${U}u; k++) {
      let j = j0 + k;
      if (j >= ${vectors}u) { break; }
      var w = e8p(cs[k]);
${residual}
      for (var tt = 0u; tt < ${TT}u; tt++) {
        if (t0 + tt >= st.T) { break; }
        let ub = (t0 + tt) * ${cols}u + j * 8u;
        var d = 0.0;
        for (var i = 0u; i < 8u; i++) {
${
    tail
      ? `          if (j * 8u + i < ${cols}u) { d += w[i] * u[ub + i]; }`
      : "          d += w[i] * u[ub + i];"
  }
        }
        acc[tt] += d;
      }
      }
    }
  }
  for (var tt = 0u; tt < ${TT}u; tt++) {
    red[lid] = acc[tt];
    workgroupBarrier();
    for (var s = ${LANES / 2}u; s > 0u; s >>= 1u) {
      if (lane < s) { red[lid] += red[lid + s]; }
      workgroupBarrier();
    }
    if (lane == 0u && row < p.rows && t0 + tt < st.T) { z[(t0 + tt) * p.rows + row] = red[lid]; }
    workgroupBarrier();
  }
}
`;
}
