/**
 * WGSL of the step after a block's stacked q/k/v projection (see `stack_rows.ts`): each token
 * row of the one matmul's output `[q | k | v]` is split into the query buffer and the layer's KV
 * cache at the row's position, with RoPE applied to the query and key heads on the way. It
 * replaces two RoPE dispatches and lets the three projections be one, so a decode step's layer
 * costs three dispatches fewer. RoPE is `ROPE_WGSL`'s arithmetic, term for term. A quantized KV
 * cache (`kv_quant_wgsl.ts`) takes the step's keys and values by token (its step rows) and, for a
 * one-token step, also into its float windows at row `pos % rows`.
 * With a float cache, a one-token step's split attention kernel does this work itself
 * (`decode_attention_wgsl.ts`'s `rope`) and the scatter does not run.
 *
 * @module
 */

/** What {@linkcode qkvScatterParams} packs into the kernel's uniform. */
export interface QkvScatterShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** RoPE's pairing: adjacent elements, or the two halves of a head. */
  style: "interleaved" | "half";
}

/** Thrown for a shape the kernel cannot take. */
export class QkvScatterError extends Error {
  override name = "QkvScatterError";
}

/**
 * The uniform's words (`rows`: a quantized cache's window rows, else unused); throws
 * {@linkcode QkvScatterError} for an odd head size.
 */
export function qkvScatterParams(o: QkvScatterShape, rows: number): number[] {
  if (!(o.headDim >= 2 && o.headDim % 2 === 0)) {
    throw new QkvScatterError(`Head size ${o.headDim} is not even`);
  }
  const qDim = o.nHeads * o.headDim;
  const kvDim = o.nKvHeads * o.headDim;
  return [
    o.nHeads,
    o.nKvHeads,
    o.headDim,
    qDim + 2 * kvDim,
    o.style === "interleaved" ? 1 : 0,
    kvDim,
    rows,
    0,
  ];
}

/** Threads of a dispatch over `T` rows: one per RoPE pair of q and k, one per value element. */
export function qkvScatterThreads(o: QkvScatterShape, T: number): number {
  return T * ((o.nHeads + o.nKvHeads) * (o.headDim / 2) + o.nKvHeads * o.headDim);
}

/**
 * `q[t] = rope(qkv[t][0, qDim))`, `keys[pos + t] = rope(qkv[t][qDim, qDim + kvDim))`,
 * `values[pos + t] = qkv[t][qDim + kvDim, …)`, with a `[position][headDim/2]` (cos, sin) table.
 * Bindings: uniform, step, table, qkv, q, keys, values (`usrrwww`). With `kv` (a quantized
 * cache), keys and values go to the step rows `newKeys[t]` and `newValues[t]` (bindings 7 and 8,
 * `usrrwwwww`), and at `T = 1` also to the windows' row `pos % rows`.
 */
export function qkvScatterShader(kv: boolean): string {
  const store = (cache: string, fresh: string, offset: string, value: string) =>
    kv
      ? `${fresh}[t * p.kvDim + ${offset}] = ${value};
    if (st.T == 1u) { ${cache}[(st.pos % p.rows) * p.kvDim + ${offset}] = ${value}; }`
      : `${cache}[(st.pos + t) * p.kvDim + ${offset}] = ${value};`;
  return `
struct QP { nHeads: u32, nKvHeads: u32, headDim: u32, width: u32,
            interleaved: u32, kvDim: u32, rows: u32, b: u32 }
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: QP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> qkv: array<f32>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> keys: array<f32>;
@group(0) @binding(6) var<storage, read_write> values: array<f32>;${
    kv
      ? `
@group(0) @binding(7) var<storage, read_write> newKeys: array<f32>;
@group(0) @binding(8) var<storage, read_write> newValues: array<f32>;`
      : ""
  }

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = gid.y * nwg.x * 256u + gid.x;
  let half = p.headDim / 2u;
  let heads = p.nHeads + p.nKvHeads;
  let pairs = st.T * heads * half;
  if (id < pairs) {
    let i = id % half;
    let h = (id / half) % heads;
    let t = id / (half * heads);
    var a = i;
    var b = i + half;
    if (p.interleaved != 0u) {
      a = 2u * i;
      b = a + 1u;
    }
    // Query heads then key heads lie one after another in the stacked row.
    let src = t * p.width + h * p.headDim;
    let cs = table[(st.pos + t) * half + i];
    let x0 = qkv[src + a];
    let x1 = qkv[src + b];
    let y0 = x0 * cs.x - x1 * cs.y;
    let y1 = x0 * cs.y + x1 * cs.x;
    if (h < p.nHeads) {
      let dst = t * p.nHeads * p.headDim + h * p.headDim;
      q[dst + a] = y0;
      q[dst + b] = y1;
    } else {
      let e = (h - p.nHeads) * p.headDim;
      ${store("keys", "newKeys", "e + a", "y0")}
      ${store("keys", "newKeys", "e + b", "y1")}
    }
    return;
  }
  let j = id - pairs;
  if (j >= st.T * p.kvDim) { return; }
  let t = j / p.kvDim;
  let e = j % p.kvDim;
  ${store("values", "newValues", "e", "qkv[t * p.width + p.nHeads * p.headDim + p.kvDim + e]")}
}
`;
}
