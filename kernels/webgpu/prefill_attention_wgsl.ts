/**
 * WGSL of causal GQA attention for prefill (more than one query row): a workgroup takes
 * {@linkcode PREFILL_QUERIES} consecutive query rows of one head and walks the KV cache in tiles of
 * `keys` positions staged in workgroup memory, so each key and value is read from global memory
 * once per query tile instead of once per query (the decode kernel, `ATTENTION_WGSL` in
 * `ops_wgsl.ts`, runs one workgroup per head and query row).
 *
 * Eight threads share a query row: each scores `keys / 8` keys of the tile against the row (vec4
 * dot products from workgroup memory, rows padded by one vec4 so that the eight lanes hit distinct
 * banks), the scores meet in workgroup memory, and the lanes then run the online softmax of their
 * row over the tile (running maximum and sum, rescaled as the maximum grows; each lane
 * exponentiates its own keys' scores) and accumulate their shares of the output's vec4s. Keys past
 * a row's own position are masked, so one kernel serves every tile of the causal triangle; tiles
 * past the query tile's last row are never read.
 *
 * The bindings and uniform are the decode kernel's (`AP`), so one bind group serves both.
 *
 * @module
 */
import { type KvQuantLayout, kvReadWgsl } from "./kv_quant_wgsl.ts";

/** Query rows per workgroup. */
export const PREFILL_QUERIES = 32;

/** Threads sharing a query row. */
const LANES = 8;

/** Key tile lengths tried, longest first. */
const KEY_TILES = [32, 16, 8] as const;

/**
 * Workgroup memory of the kernel for a head size and key tile, in bytes; a quantized KV cache
 * stages each tile's dequantized keys and values beside the float ones.
 */
export function prefillAttentionBytes(headDim: number, keys: number, quantized = false): number {
  const D4 = headDim / 4;
  const tile = keys * (D4 + 1) + keys * D4;
  return 16 * (PREFILL_QUERIES * (D4 + 1) + (quantized ? 2 : 1) * tile) +
    4 * PREFILL_QUERIES * (keys + 1);
}

/**
 * The key tile for a head size within `maxBytes` of workgroup memory (the longest of 32, 16, 8
 * that fits), or undefined where the prefill kernel does not apply (head size not a multiple of
 * 4, or nothing fits): the decode kernel then runs every row.
 */
export function prefillKeyTile(
  headDim: number,
  maxBytes: number,
  quantized = false,
): number | undefined {
  if (!(Number.isInteger(headDim) && headDim > 0 && headDim % 4 === 0)) return undefined;
  return KEY_TILES.find((keys) => prefillAttentionBytes(headDim, keys, quantized) <= maxBytes);
}

/**
 * The kernel for a head size (a multiple of 4) and key tile (a multiple of 8). Dispatch
 * `(ceil(T / 32), nHeads, 1)` workgroups; query row `t` sits at position `st.pos + t`. With a
 * quantized KV cache (`kv`, `kv_quant_wgsl.ts`: bindings 6 and 7; 3 and 4 its float windows, 8 and
 * 9 the step's key and value rows, where positions from `pos` on are read), a tile stages both the
 * float and the dequantized keys and values its rows need, and each row takes, per position, the
 * one the CPU's view gives a query at its position.
 */
export function prefillAttentionShader(
  headDim: number,
  keys: number,
  kv?: KvQuantLayout,
): string {
  const D4 = headDim / 4;
  const QS = D4 + 1;
  const KS = D4 + 1;
  const SS = keys + 1;
  const NV = Math.ceil(D4 / LANES);
  const threads = PREFILL_QUERIES * LANES;
  // This lane's keys lane, lane + 8, …: the query's vec4 is read once for all of them.
  const mine = Array.from({ length: keys / LANES }, (_, u) => u);
  const scores = [
    ...mine.map((u) => `    var s${u} = 0.0;`),
    `    for (var d = 0u; d < ${D4}u; d++) {`,
    `      let qv = qs[i * ${QS}u + d];`,
    ...mine.map((u) => {
      const at = `(lane + ${LANES * u}u) * ${KS}u + d`;
      const key = kv
        ? `select(ks[${at}], ksq[${at}], kv0 + lane + ${LANES * u}u < kBr)`
        : `ks[${at}]`;
      return `      s${u} += dot(qv, ${key});`;
    }),
    `    }`,
    ...mine.map((u) =>
      `    ss[i * ${SS}u + lane + ${LANES * u}u] = ` +
      `select(-3.0e38, s${u}, kv0 + lane + ${LANES * u}u <= own);`
    ),
  ].join("\n");
  const value = kv
    ? `select(vs[j * ${D4}u + d], vsq[j * ${D4}u + d], kv0 + j < vBr)`
    : `vs[j * ${D4}u + d]`;
  const stageQuantized = kv
    ? `
        let c = (kvo + d) * 4u;
        if (kv0 + j < kBt) { kqv = kdq4(kv0 + j, c); }
        if (kv0 + j < vBt) { vqv = vdq4(kv0 + j, c); }`
    : "";
  return `${kv ? kvReadWgsl(kv) : ""}
struct AP { nHeads: u32, nKvHeads: u32, headDim: u32, kvDim: u32,
            scale: f32, qStride: u32, kg: u32, b: u32 }
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: AP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> vc: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
var<workgroup> qs: array<vec4<f32>, ${PREFILL_QUERIES * QS}>;
var<workgroup> ks: array<vec4<f32>, ${keys * KS}>;
var<workgroup> vs: array<vec4<f32>, ${keys * D4}>;
var<workgroup> ss: array<f32, ${PREFILL_QUERIES * SS}>;${
    kv
      ? `
@group(0) @binding(8) var<storage, read> kn: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> vn: array<vec4<f32>>;
var<workgroup> ksq: array<vec4<f32>, ${keys * KS}>;
var<workgroup> vsq: array<vec4<f32>, ${keys * D4}>;`
      : ""
  }

@compute @workgroup_size(${threads})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let h = wg.y;
  let tBase = wg.x * ${PREFILL_QUERIES}u;
  let i = lid / ${LANES}u;
  let lane = lid % ${LANES}u;
  let t = tBase + i;
  let own = st.pos + t;
  let kvo = (h / (p.nHeads / p.nKvHeads)) * ${D4}u;
  let kv4 = p.kvDim / 4u;
  let q4 = p.qStride / 4u;
  for (var idx = lid; idx < ${PREFILL_QUERIES * D4}u; idx += ${threads}u) {
    let r = idx / ${D4}u;
    let d = idx % ${D4}u;
    var v = vec4<f32>(0.0);
    if (tBase + r < st.T) { v = q[(tBase + r) * q4 + h * ${D4}u + d] * p.scale; }
    qs[r * ${QS}u + d] = v;
  }
  // Keys this query tile needs: up to its last row's position.
  let kvEnd = st.pos + min(tBase + ${PREFILL_QUERIES}u, st.T);${
    kv
      ? `
  // Positions read quantized: by this row, and by the tile's last row (the most).
  let kBr = keysBefore(own);
  let vBr = valuesBefore(own);
  let kBt = keysBefore(kvEnd - 1u);
  let vBt = valuesBefore(kvEnd - 1u);`
      : ""
  }
  var m = -3.0e38;
  var l = 0.0;
  var acc: array<vec4<f32>, ${NV}>;
  for (var kv0 = 0u; kv0 < kvEnd; kv0 += ${keys}u) {
    for (var idx = lid; idx < ${keys * D4}u; idx += ${threads}u) {
      let j = idx / ${D4}u;
      let d = idx % ${D4}u;
      var kv = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);${
    kv
      ? `
      var kqv = vec4<f32>(0.0);
      var vqv = vec4<f32>(0.0);`
      : ""
  }
      if (kv0 + j < kvEnd) {${
    kv
      ? `
        if (kv0 + j >= st.pos) {
          let g = (kv0 + j - st.pos) * kv4 + kvo + d;
          kv = kn[g];
          vv = vn[g];
        } else {
          let g = win(kv0 + j) * kv4 + kvo + d;
          kv = kc[g];
          vv = vc[g];
        }`
      : `
        let g = (kv0 + j) * kv4 + kvo + d;
        kv = kc[g];
        vv = vc[g];`
  }${stageQuantized}
      }
      ks[j * ${KS}u + d] = kv;
      vs[j * ${D4}u + d] = vv;${
    kv
      ? `
      ksq[j * ${KS}u + d] = kqv;
      vsq[j * ${D4}u + d] = vqv;`
      : ""
  }
    }
    workgroupBarrier();
${scores}
    workgroupBarrier();
    // Every lane of a row finds the same new maximum; each then turns its own keys' scores into
    // probabilities in place (one exp per key, not one per key and lane).
    var mt = m;
    for (var j = 0u; j < ${keys}u; j++) { mt = max(mt, ss[i * ${SS}u + j]); }
    workgroupBarrier();
    for (var j = lane; j < ${keys}u; j += ${LANES}u) {
      let s = ss[i * ${SS}u + j];
      ss[i * ${SS}u + j] = select(0.0, exp(s - mt), kv0 + j <= own);
    }
    let corr = exp(m - mt);
    m = mt;
    l *= corr;
    for (var v = 0u; v < ${NV}u; v++) { acc[v] *= corr; }
    workgroupBarrier();
    for (var j = 0u; j < ${keys}u; j++) {
      let pj = ss[i * ${SS}u + j];
      l += pj;
      for (var v = 0u; v < ${NV}u; v++) {
        let d = lane + ${LANES}u * v;
        if (d < ${D4}u) { acc[v] += pj * ${value}; }
      }
    }
    workgroupBarrier();
  }
  if (t < st.T) {
    for (var v = 0u; v < ${NV}u; v++) {
      let d = lane + ${LANES}u * v;
      if (d < ${D4}u) { out[t * q4 + h * ${D4}u + d] = acc[v] / l; }
    }
  }
}
`;
}
