/**
 * WGSL of causal GQA attention for prefill with one thread per query row: a workgroup takes
 * {@linkcode ROW_QUERIES} consecutive query rows of one head, stages the KV cache a tile of
 * {@linkcode ROW_KEYS} positions at a time in workgroup memory, and each thread keeps its row's
 * query, running maximum, sum and output in registers. Only the tile loads meet at barriers (two
 * a tile); scores, the online softmax and the weighted sum run without any exchange between
 * threads. The lane-shared kernel (`prefill_attention_wgsl.ts`: eight threads a row, four
 * barriers a tile) spent 18 % of a TinyLlama-shaped 512-token prefill on an H100 in attention
 * (PERF.md); this one serves heads of up to {@linkcode ROW_MAX_HEAD} with a float32 cache, that one
 * the rest.
 *
 * The bindings and uniform are the decode kernel's (`AP`), so one bind group serves both.
 *
 * @module
 */

/** Query rows (threads) per workgroup. */
export const ROW_QUERIES = 64;

/** Cached positions staged per tile. */
export const ROW_KEYS = 32;

/** Largest head size: a thread holds its query and output, 2 × headDim floats, in registers. */
export const ROW_MAX_HEAD = 64;

/** Workgroup memory of the kernel for a head size, in bytes (one tile of keys and values). */
export function prefillRowsBytes(headDim: number): number {
  return 2 * ROW_KEYS * headDim * 4;
}

/** Whether the kernel serves a head size within `maxBytes` of workgroup memory. */
export function prefillRowsApplies(headDim: number, maxBytes: number): boolean {
  return Number.isInteger(headDim) && headDim > 0 && headDim % 4 === 0 &&
    headDim <= ROW_MAX_HEAD && prefillRowsBytes(headDim) <= maxBytes;
}

/**
 * The kernel for a head size the kernel serves ({@linkcode prefillRowsApplies}). Dispatch
 * `(ceil(T / ROW_QUERIES), nHeads, 1)`; query row `t` sits at position `st.pos + t`.
 */
export function prefillRowsShader(headDim: number): string {
  const D4 = headDim / 4;
  const ds = Array.from({ length: D4 }, (_, d) => d);
  const each = (line: (d: number) => string) => ds.map(line).join("\n");
  return `
struct AP { nHeads: u32, nKvHeads: u32, headDim: u32, kvDim: u32,
            scale: f32, qStride: u32, kg: u32, b: u32 }
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: AP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> vc: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
var<workgroup> ks: array<vec4<f32>, ${ROW_KEYS * D4}>;
var<workgroup> vs: array<vec4<f32>, ${ROW_KEYS * D4}>;

@compute @workgroup_size(${ROW_QUERIES})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let h = wg.y;
  let tBase = wg.x * ${ROW_QUERIES}u;
  let t = tBase + lid;
  let own = st.pos + t;
  let kvo = (h / (p.nHeads / p.nKvHeads)) * ${D4}u;
  let kv4 = p.kvDim / 4u;
  let qb = min(t, st.T - 1u) * (p.qStride / 4u) + h * ${D4}u;
${each((d) => `  let q${d} = q[qb + ${d}u] * p.scale;`)}
${each((d) => `  var a${d} = vec4<f32>(0.0);`)}
  var m = -3.0e38;
  var l = 0.0;
  // Keys this query tile needs: up to its last row's position.
  let kvEnd = st.pos + min(tBase + ${ROW_QUERIES}u, st.T);
  for (var kv0 = 0u; kv0 < kvEnd; kv0 += ${ROW_KEYS}u) {
    for (var idx = lid; idx < ${ROW_KEYS * D4}u; idx += ${ROW_QUERIES}u) {
      let j = idx / ${D4}u;
      var kv = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);
      if (kv0 + j < kvEnd) {
        let g = (kv0 + j) * kv4 + kvo + idx % ${D4}u;
        kv = kc[g];
        vv = vc[g];
      }
      ks[idx] = kv;
      vs[idx] = vv;
    }
    workgroupBarrier();
    var s: array<f32, ${ROW_KEYS}>;
    var mt = m;
    for (var j = 0u; j < ${ROW_KEYS}u; j++) {
      let kb = j * ${D4}u;
      let sj = ${ds.map((d) => `dot(q${d}, ks[kb + ${d}u])`).join(" + ")};
      s[j] = select(-3.0e38, sj, kv0 + j <= own);
      mt = max(mt, s[j]);
    }
    let corr = exp(m - mt);
    m = mt;
    l *= corr;
${each((d) => `    a${d} *= corr;`)}
    for (var j = 0u; j < ${ROW_KEYS}u; j++) {
      let pj = select(0.0, exp(s[j] - mt), kv0 + j <= own);
      l += pj;
      let vb = j * ${D4}u;
${each((d) => `      a${d} += pj * vs[vb + ${d}u];`)}
    }
    workgroupBarrier();
  }
  if (t < st.T) {
    let ob = t * (p.qStride / 4u) + h * ${D4}u;
${each((d) => `    out[ob + ${d}u] = a${d} / l;`)}
  }
}
`;
}
