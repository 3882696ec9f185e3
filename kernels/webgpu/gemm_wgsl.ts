/**
 * WGSL of the prefill GEMM, `out[t][r] (+)= tensorScale · Σ_k x[t][k] · W[r][k]`, over weights
 * in any {@linkcode Layout} the GEMV takes (the same bindings and uniforms, `matmul_wgsl.ts`), with
 * the tile shape a parameter ({@linkcode GemmTiling}):
 *
 * - a workgroup computes `rows × tokens` outputs; each step over `depth` input features stages the
 *   activations (`depth × tokens`) and the weights, decoded to f32 once per tile
 *   (`depth × rows`), in workgroup memory;
 * - each thread then accumulates `rowsPerThread × tokensPerThread` outputs in registers from vec4
 *   reads of both tiles. A thread's vec4s are strided by the threads along that edge, so that the
 *   threads of a warp read consecutive vec4s (rows) or the same one (tokens): no bank conflicts;
 * - activation rows of the tile are padded by one vec4 so that the staging writes, which walk the
 *   input features of a token (coalesced global reads), spread over the banks.
 *
 * Partial tiles (tokens past `T`, rows past the part's rows, features past `cols`) read zeros and
 * write nothing.
 *
 * @module
 */
import { CHUNK, constantZero, type Layout, vectorWords } from "./pack.ts";
import { decoders, elementFn, MATMUL_PARAMS, scaleExpr } from "./matmul_wgsl.ts";

/** The tile shape of the GEMM kernel. */
export interface GemmTiling {
  /** Weight rows (output features) per workgroup. */
  rows: number;
  /** Tokens (activation rows) per workgroup. */
  tokens: number;
  /** Input features per step: 8, 16 or 32 (a step stays inside one 32-element chunk). */
  depth: number;
  /** Output rows per thread, a multiple of 4 (vec4 reads of the weight tile). */
  rowsPerThread: number;
  /** Tokens per thread, a multiple of 4 (vec4 reads of the activation tile). */
  tokensPerThread: number;
}

/**
 * The default tiling: 128 rows × 64 tokens, 16 features deep, 8 × 4 outputs per thread (256
 * threads, 12 KiB of workgroup memory, within WebGPU's default 16 KiB).
 */
export const DEFAULT_GEMM_TILING: Readonly<GemmTiling> = {
  rows: 128,
  tokens: 64,
  depth: 16,
  rowsPerThread: 8,
  tokensPerThread: 4,
};

/** Thrown for a tiling the kernel cannot be built with. */
export class GemmTilingError extends Error {
  override name = "GemmTilingError";
}

/** A tiling's name and pipeline-cache key, `rows×tokens×depth/rowsPerThread×tokensPerThread`. */
export function gemmTilingKey(t: GemmTiling): string {
  return `${t.rows}x${t.tokens}x${t.depth}/${t.rowsPerThread}x${t.tokensPerThread}`;
}

/** Threads per workgroup of a tiling. */
export function gemmThreads(t: GemmTiling): number {
  return (t.rows / t.rowsPerThread) * (t.tokens / t.tokensPerThread);
}

/** Workgroup memory of a tiling in bytes (weight tile and padded activation tile). */
export function gemmWorkgroupBytes(t: GemmTiling): number {
  return t.depth * (t.rows + t.tokens + 4) * 4;
}

/**
 * Checks a tiling against the kernel's rules and a device's limits (threads and workgroup memory
 * per workgroup); throws {@linkcode GemmTilingError}.
 */
export function validateGemmTiling(
  t: GemmTiling,
  limits: { maxThreads: number; maxWorkgroupBytes: number } = {
    maxThreads: 256,
    maxWorkgroupBytes: 16384,
  },
): void {
  const key = gemmTilingKey(t);
  const fail = (why: string) => {
    throw new GemmTilingError(`GEMM tiling "${key}": ${why}`);
  };
  if (![8, 16, 32].includes(t.depth)) fail("depth must be 8, 16 or 32");
  const edges: [number, number][] = [[t.rows, t.rowsPerThread], [t.tokens, t.tokensPerThread]];
  for (const [edge, per] of edges) {
    if (!(Number.isInteger(per) && per >= 4 && per % 4 === 0)) {
      fail("outputs per thread must be multiples of 4");
    }
    if (!(Number.isInteger(edge) && edge % per === 0)) {
      fail("tile edges must be multiples of the outputs per thread");
    }
  }
  const threads = gemmThreads(t);
  if (threads < 32 || threads > limits.maxThreads) {
    fail(`${threads} threads per workgroup (32 to ${limits.maxThreads} allowed)`);
  }
  // Each thread decodes a run of whole elements of one weight row and stages whole activations.
  const perThread = (t.rows * t.depth) / threads;
  if (!Number.isInteger(perThread) || t.depth % perThread !== 0) {
    fail("rows × depth must split into runs of one row per thread");
  }
  if ((t.tokens * t.depth) % threads !== 0) fail("tokens × depth must be a multiple of threads");
  const bytes = gemmWorkgroupBytes(t);
  if (bytes > limits.maxWorkgroupBytes) {
    fail(`${bytes} bytes of workgroup memory (at most ${limits.maxWorkgroupBytes})`);
  }
}

/** WGSL statements setting `val` to the f32 weight of element `e` of chunk `c` of row `rr`. */
function decodeElement(layout: Layout): string {
  if (layout.element === "f32") return `val = bitcast<f32>(wrd(rr, c, e));`;
  const W = layout.bits;
  const q = constantZero(layout) ? `(q - ${layout.zero}.0)` : "q";
  let apply: string;
  switch (layout.scale) {
    case "f16zero":
      apply = `sz.x * (q - sz.y)`;
      break;
    case "f16min":
      apply = `sz.x * q + sz.y`;
      break;
    case "none":
      apply = q;
      break;
    default:
      apply = `${scaleExpr(layout, "gidx")} * ${q}`;
  }
  const pair = layout.scale === "f16zero" || layout.scale === "f16min";
  return `let bit = e * ${W}u;
      let wi = bit >> 5u;
      let sh = bit & 31u;
      var code = wrd(rr, c, wi) >> sh;
      if (sh + ${W}u > 32u) { code |= wrd(rr, c, wi + 1u) << (32u - sh); }
      code &= ${(1 << W) - 1}u;
      let q = ${elementFn(layout)}(code);
      let gidx = rr * p.groups + ((c * ${CHUNK}u + e) >> p.gshift);
      ${pair ? `let sz = ${scaleExpr(layout, "gidx")};` : ""}
      val = ${apply};`;
}

/**
 * The GEMM kernel of a layout and tiling (validated by the caller). Dispatch
 * {@linkcode gemmGroups} workgroups; `st.T` tokens from `p.xOff` with row stride `p.xStride`.
 */
export function gemmShader(layout: Layout, tiling: GemmTiling = DEFAULT_GEMM_TILING): string {
  const { rows: BM, tokens: BN, depth: BK, rowsPerThread: TM, tokensPerThread: TN } = tiling;
  const threads = gemmThreads(tiling);
  const NTX = BM / TM; // threads along rows
  const NTY = BN / TN; // threads along tokens
  const WS = BM / 4; // vec4s per weight-tile row (one input feature)
  const XS = BN / 4 + 1; // vec4s per activation-tile row, padded
  const EW = (BM * BK) / threads; // weight elements each thread decodes per step
  const EX = (BN * BK) / threads; // activations each thread stages per step
  const V = vectorWords(layout.bits);
  const NV = layout.bits / V;
  const MI = TM / 4;
  const NJ = TN / 4;
  const accs: string[] = [];
  const body: string[] = [];
  const stores: string[] = [];
  for (let i = 0; i < MI; i++) body.push(`      let b${i} = ws[kk * ${WS}u + tx + ${i * NTX}u];`);
  for (let j = 0; j < NJ; j++) {
    body.push(`      let a${j} = xs[kk * ${XS}u + ty + ${j * NTY}u];`);
    for (let u = 0; u < 4; u++) {
      for (let i = 0; i < MI; i++) {
        const acc = `acc${j}_${u}_${i}`;
        accs.push(`  var ${acc} = vec4<f32>(0.0);`);
        body.push(`      ${acc} = fma(vec4<f32>(a${j}.${"xyzw"[u]}), b${i}, ${acc});`);
        stores.push(
          `  store(tokBase + ${4 * (j * NTY) + u}u + ty * 4u, rowBase + ${
            4 * (i * NTX)
          }u + tx * 4u, ${acc});`,
        );
      }
    }
  }
  return `${MATMUL_PARAMS}
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wq: array<u32>;
var<workgroup> xs: array<vec4<f32>, ${BK * XS}>;
var<workgroup> ws: array<vec4<f32>, ${BK * WS}>;
${decoders(layout)}
fn wrd(row: u32, c: u32, w: u32) -> u32 {
  let s0 = (c / ${layout.tpr}u) * ${layout.tpr}u;
  let width = min(${layout.tpr}u, p.chunks - s0);
  let v = (row * p.chunks + s0) * ${NV}u + (w / ${V}u) * width + (c - s0);
  return wq[v * ${V}u + w % ${V}u];
}

/** Writes 4 consecutive rows of token t (those inside the output). */
fn store(t: u32, r: u32, v: vec4<f32>) {
  if (t >= st.T) { return; }
  let ob = p.outOff + st.pos * p.outPosStride + t * p.outStride;
  for (var c = 0u; c < 4u; c++) {
    if (r + c < p.rows) {
      var y = v[c] * p.tscale;
      if (p.accumulate != 0u) { y += out[ob + r + c]; }
      out[ob + r + c] = y;
    }
  }
}

@compute @workgroup_size(${threads})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let tx = lid % ${NTX}u;
  let ty = lid / ${NTX}u;
  let rowBase = wg.x * ${BM}u;
  let tokBase = wg.y * ${BN}u;
  // The weight run this thread decodes: row drow of the tile, elements part·EW … of the step.
  let drow = lid / ${BK / EW}u;
  let part = lid % ${BK / EW}u;
  let rr = min(rowBase + drow, p.rows - 1u);
  let rowOk = rowBase + drow < p.rows;
${accs.join("\n")}
  for (var k0 = 0u; k0 < p.chunks * ${CHUNK}u; k0 += ${BK}u) {
    let c = k0 / ${CHUNK}u;
    for (var h = 0u; h < ${EX}u; h++) {
      let slot = lid + h * ${threads}u;
      let kk = slot % ${BK}u;
      let tt = slot / ${BK}u;
      let t = tokBase + tt;
      let k = k0 + kk;
      var v = 0.0;
      if (t < st.T && k < p.cols) { v = x[p.xOff + t * p.xStride + k]; }
      xs[kk * ${XS}u + tt / 4u][tt % 4u] = v;
    }
    for (var i = 0u; i < ${EW}u; i++) {
      let kk = part * ${EW}u + i;
      let e = k0 % ${CHUNK}u + kk;
      var val: f32;
      ${decodeElement(layout)}
      ws[kk * ${WS}u + drow / 4u][drow % 4u] = select(0.0, val, rowOk);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
${body.join("\n")}
    }
    workgroupBarrier();
  }
${stores.join("\n")}
}
`;
}

/** Workgroups of a GEMM dispatch over `rows` weight rows and `T` tokens. */
export function gemmGroups(tiling: GemmTiling, rows: number, T: number): [number, number, number] {
  return [Math.ceil(rows / tiling.rows), Math.ceil(T / tiling.tokens), 1];
}
