/**
 * WGSL of causal GQA attention for one query row (decoding), split over the KV cache: the
 * partial kernel runs a workgroup per head and block of {@linkcode DECODE_SPLIT_KEYS} cached
 * positions (its scores, their maximum and sum, and the block's softmax-weighted sum of values),
 * and the combine kernel, a workgroup per head, rescales the blocks to their common maximum and
 * divides by the total sum ("flash decoding").
 *
 * Why: one workgroup per head (`ATTENTION_WGSL`, which prefill rows without a tile also use) gives
 * TinyLlama's 32 heads 32 workgroups for a 132-multiprocessor GPU, each walking every cached
 * position in turn; decoding ran at the same ~5.5 ms a token for f32, f16 and int4 weights on an
 * H100 (kernels/webgpu/PERF.md), a cost no weight format changes. Here the blocks run side by side,
 * and their loads are vector (keys) or coalesced across threads (values).
 *
 * The grid covers the whole cache (`nSplits` blocks): blocks past the current position return at
 * once, so the dispatch's size is fixed when it is recorded, as the runner's programs need.
 * Both kernels read the `Step` uniform (`pos`: the query's position; `T` must be 1).
 * Where every reader of the output is a float GEMV, that GEMV combines the blocks itself as it
 * loads its input (`gemv_combine_wgsl.ts`, the same arithmetic) and the combine kernel does not
 * run.
 *
 * @module
 */
import { type KvQuantLayout, kvReadWgsl } from "./kv_quant_wgsl.ts";
import { combineFunctionsWgsl } from "./gemv_combine_wgsl.ts";

/** Cached positions per workgroup of the partial kernel (one per thread). */
export const DECODE_SPLIT_KEYS = 64;

const STEP = `struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(1) var<uniform> st: Step;`;

const PARAMS = `struct DP { nHeads: u32, nKvHeads: u32, headDim: u32, kvDim: u32,
            scale: f32, nSplits: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: DP;`;

/** Floats a block's partial result takes: its maximum, its sum, then `headDim` values. */
export function decodePartialFloats(headDim: number): number {
  return headDim + 2;
}

/** Thrown for a head size the split kernels are not built for. */
export class DecodeAttentionError extends Error {
  override name = "DecodeAttentionError";
}

function checkHeadDim(headDim: number): void {
  if (!(Number.isInteger(headDim) && headDim > 0 && headDim % 4 === 0 && headDim <= 256)) {
    throw new DecodeAttentionError(
      `Head size ${headDim} is not a multiple of 4 up to 256, as split decode attention needs`,
    );
  }
}

/**
 * The partial kernel for a head size (a multiple of 4, at most 256). Bindings: 0 the `DP`
 * uniform, 1 `Step`, 2 queries, 3 the key cache, 4 the value cache (rows of `kvDim` by position),
 * 5 the partial results (`[head][split]` blocks of {@linkcode decodePartialFloats} floats).
 * Dispatch `(nSplits, nHeads, 1)`. With a quantized KV cache (`kv`, `kv_quant_wgsl.ts`), also 6
 * and 7, its key and value buffers: positions the CPU's view reads quantized are dequantized, and
 * 3 and 4 are its float windows (position `j` at row `j % window`).
 *
 * With `rope` (a float cache only), the kernel also does the stacked q/k/v split's work
 * (`qkv_scatter_wgsl.ts`, the same arithmetic) for its one-token step: binding 2 is then the
 * stacked `[q | k | v]` row, 3 and 4 are written too, and 6 is RoPE's (cos, sin) table. Each
 * workgroup rotates its head's query and its KV head's key as it loads them, reads the step's own
 * key and value from the stacked row instead of the cache, and the workgroup of the block holding
 * the position and of the KV head's first query head writes them to the cache for later steps; no
 * workgroup reads that cache row, so the dispatch needs no ordering among its workgroups.
 *
 * @example
 * ```ts
 * decodeAttentionShader(64).includes("@workgroup_size(64)"); // true
 * ```
 */
export function decodeAttentionShader(
  headDim: number,
  kv?: KvQuantLayout,
  rope?: "interleaved" | "half",
): string {
  checkHeadDim(headDim);
  if (kv && rope) {
    throw new DecodeAttentionError(`RoPE style "${rope}" in the kernel needs a float KV cache`);
  }
  const D4 = headDim / 4;
  const K = DECODE_SPLIT_KEYS;
  const keyDot = kv
    ? `if (j < keysBefore(st.pos)) {
      for (var i = 0u; i < ${D4}u; i++) { dot += qs[i] * kdq4(j, kvo + 4u * i); }
    } else {
      for (var i = 0u; i < ${D4}u; i++) { dot += qs[i] * kc[kb + i]; }
    }`
    : rope
    ? `if (j == st.pos) {
      for (var i = 0u; i < ${D4}u; i++) { dot += qs[i] * ks[i]; }
    } else {
      for (var i = 0u; i < ${D4}u; i++) { dot += qs[i] * kc[kb + i]; }
    }`
    : `for (var i = 0u; i < ${D4}u; i++) { dot += qs[i] * kc[kb + i]; }`;
  const valueSum = kv
    ? `let vB = valuesBefore(st.pos);
    for (var jj = 0u; jj < n; jj++) {
      let jv = j0 + jj;
      var v: f32;
      if (jv < vB) { v = vdq(jv, kvo + d); } else { v = vc[win(jv) * p.kvDim + kvo + d]; }
      acc += pr[jj] * v;
    }`
    : rope
    ? `for (var jj = 0u; jj < n; jj++) {
      let jv = j0 + jj;
      var v: f32;
      if (jv == st.pos) { v = qkv[vOff + kvo + d]; } else { v = vc[jv * p.kvDim + kvo + d]; }
      acc += pr[jj] * v;
    }`
    : `for (var jj = 0u; jj < n; jj++) { acc += pr[jj] * vc[(j0 + jj) * p.kvDim + kvo + d]; }`;
  const half = headDim / 2;
  const pair = rope === "interleaved"
    ? `let a = 2u * i;
    let b = a + 1u;`
    : `let a = i;
    let b = i + ${half}u;`;
  // The query, and the step's key, rotated as the scatter rotates them (ROPE_WGSL's arithmetic).
  const loadQuery = rope
    ? `let vOff = p.nHeads * ${headDim}u + p.kvDim;
  for (var i = lid; i < ${half}u; i += ${K}u) {
    ${pair}
    let cs = table[st.pos * ${half}u + i];
    let qb = h * ${headDim}u;
    let x0 = qkv[qb + a];
    let x1 = qkv[qb + b];
    qs[a / 4u][a % 4u] = x0 * cs.x - x1 * cs.y;
    qs[b / 4u][b % 4u] = x0 * cs.y + x1 * cs.x;
    let kb = p.nHeads * ${headDim}u + kvo;
    let k0 = qkv[kb + a];
    let k1 = qkv[kb + b];
    ks[a / 4u][a % 4u] = k0 * cs.x - k1 * cs.y;
    ks[b / 4u][b % 4u] = k0 * cs.y + k1 * cs.x;
  }`
    : `for (var i = lid; i < ${D4}u; i += ${K}u) { qs[i] = q[h * ${D4}u + i]; }`;
  // One workgroup per KV head caches the step's key and value (after its own reads).
  const cacheStep = rope
    ? `
  if (wg.x == st.pos / ${K}u && h % (p.nHeads / p.nKvHeads) == 0u) {
    for (var i = lid; i < ${D4}u; i += ${K}u) { kc[(st.pos * p.kvDim + kvo) / 4u + i] = ks[i]; }
    for (var d = lid; d < ${headDim}u; d += ${K}u) {
      vc[st.pos * p.kvDim + kvo + d] = qkv[vOff + kvo + d];
    }
  }`
    : "";
  const bindings = rope
    ? `@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;
@group(0) @binding(6) var<storage, read> table: array<vec2<f32>>;
var<workgroup> ks: array<vec4<f32>, ${D4}>;`
    : `@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> vc: array<f32>;`;
  return `${kv ? kvReadWgsl(kv) : ""}${PARAMS}
${STEP}
${bindings}
@group(0) @binding(5) var<storage, read_write> part: array<f32>;
var<workgroup> qs: array<vec4<f32>, ${D4}>;
var<workgroup> red: array<f32, ${K}>;
var<workgroup> pr: array<f32, ${K}>;

@compute @workgroup_size(${K})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let len = st.pos + 1u;
  let j0 = wg.x * ${K}u;
  // Blocks past the query's position have nothing to do (the same for the whole workgroup).
  if (j0 >= len) { return; }
  let h = wg.y;
  let kvo = (h / (p.nHeads / p.nKvHeads)) * ${headDim}u;
  ${loadQuery}
  workgroupBarrier();
  // One cached position per thread: its score, from vector loads of its key row.
  let j = j0 + lid;
  var s = -3.0e38;
  if (j < len) {
    let kb = (${kv ? "win(j)" : "j"} * p.kvDim + kvo) / 4u;
    var dot = vec4<f32>(0.0);
    ${keyDot}
    s = (dot.x + dot.y + dot.z + dot.w) * p.scale;
  }
  red[lid] = s;
  workgroupBarrier();
  for (var w = ${K / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  let e = select(0.0, exp(s - m), j < len);
  pr[lid] = e;
  red[lid] = e;
  workgroupBarrier();
  for (var w = ${K / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] += red[lid + w]; }
    workgroupBarrier();
  }
  // The block's weighted values: threads take output elements, so value loads are coalesced.
  let n = min(${K}u, len - j0);
  let base = (h * p.nSplits + wg.x) * ${headDim + 2}u;
  for (var d = lid; d < ${headDim}u; d += ${K}u) {
    var acc = 0.0;
    ${valueSum}
    part[base + 2u + d] = acc;
  }
  if (lid == 0u) {
    part[base] = m;
    part[base + 1u] = red[0];
  }${cacheStep}
}
`;
}

/**
 * The combine kernel for a head size: `out[h·headDim + d] = Σ_b e^(m_b − M) acc_b[d] / Σ_b e^(m_b −
 * M) l_b` over the blocks `b` up to the query's position, `M` their largest maximum. Bindings: 0
 * the `DP` uniform, 1 `Step`, 2 the partial results, 3 the output row. Dispatch `(nHeads, 1, 1)`.
 *
 * @example
 * ```ts
 * decodeCombineShader(128).includes("fn main"); // true
 * ```
 */
export function decodeCombineShader(headDim: number): string {
  checkHeadDim(headDim);
  const K = DECODE_SPLIT_KEYS;
  return `${PARAMS}
${STEP}
@group(0) @binding(2) var<storage, read> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
fn pf(i: u32) -> f32 { return part[i]; }
${combineFunctionsWgsl(decodePartialFloats(headDim))}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let h = wg.x;
  let blocks = (st.pos + ${K}u) / ${K}u;
  let first = h * p.nSplits * ${decodePartialFloats(headDim)}u;
  let mx = combineMax(first, blocks);
  let total = combineTotal(first, blocks, mx);
  for (var d = lid; d < ${headDim}u; d += 64u) {
    out[h * ${headDim}u + d] = combineValue(first, blocks, mx, d) / total;
  }
}
`;
}
