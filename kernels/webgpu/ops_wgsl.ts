/**
 * WGSL of the non-matmul ops: RMSNorm, RoPE, causal GQA attention over the KV cache, SwiGLU, and
 * the copy and fill kernels of the perf run. All read the per-slice `Step` uniform (`T` token
 * rows starting at position `pos`) at binding 1, so one bind group serves every forward pass.
 *
 * @module
 */
import { type KvQuantLayout, kvReadWgsl } from "./kv_quant_wgsl.ts";

const STEP = `struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(1) var<uniform> st: Step;`;

/** `out[t] = w · x[t] / sqrt(mean(x[t]²) + eps)`; one workgroup per token row. */
export const RMSNORM_WGSL = `
struct NP { dim: u32, eps: f32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: NP;
${STEP}
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let base = wg.x * p.dim;
  var ss = 0.0;
  for (var i = lid; i < p.dim; i += 256u) {
    let v = x[base + i];
    ss += v * v;
  }
  red[lid] = ss;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(red[0] / f32(p.dim) + p.eps);
  for (var i = lid; i < p.dim; i += 256u) {
    out[base + i] = w[i] * (inv * x[base + i]);
  }
}
`;

/**
 * Rotary embedding in place on `T` rows of `nHeads × headDim` starting at
 * `off + pos·posStride`, with a `[position][headDim/2]` table of (cos, sin).
 */
export const ROPE_WGSL = `
struct RP { nHeads: u32, headDim: u32, rowStride: u32, off: u32,
            posStride: u32, interleaved: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: RP;
${STEP}
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = gid.y * nwg.x * 256u + gid.x;
  let half = p.headDim / 2u;
  if (id >= st.T * p.nHeads * half) { return; }
  let i = id % half;
  let h = (id / half) % p.nHeads;
  let t = id / (half * p.nHeads);
  let base = p.off + st.pos * p.posStride + t * p.rowStride + h * p.headDim;
  var a = base + i;
  var b = a + half;
  if (p.interleaved != 0u) {
    a = base + 2u * i;
    b = a + 1u;
  }
  let cs = table[(st.pos + t) * half + i];
  let x0 = buf[a];
  let x1 = buf[b];
  buf[a] = x0 * cs.x - x1 * cs.y;
  buf[b] = x0 * cs.y + x1 * cs.x;
}
`;

/**
 * Causal grouped-query attention: workgroup `(h, t)` attends query row `t` (position `pos + t`)
 * of head `h` to cache positions `0 … pos + t`, 64 keys at a time with a running softmax
 * (max-rescaled sums), so any context length fits in fixed workgroup memory. Scores take one
 * thread per key; the weighted sum of values one thread per output element, where heads narrower
 * than 64 split the keys among `kg = 64 / headDim` groups of threads and add the groups' partial
 * sums at the end. `headDim ≤ 256`. With a quantized KV cache (`kv`, `kv_quant_wgsl.ts`: bindings
 * 6 and 7; 3 and 4 its float windows, 8 and 9 the step's key and value rows, where positions from
 * `pos` on are read), each row reads the positions the CPU's view reads quantized from the codes:
 * the prefill rows the tiled kernel cannot take (its key tile does not fit workgroup memory).
 */
export function attentionShader(kv?: KvQuantLayout): string {
  const keyDot = kv
    ? `if (j < keysBefore(st.pos + t)) {
        for (var d = 0u; d < p.headDim; d++) { dot += qs[d] * kdq(j, kvo + d); }
      } else {
        for (var d = 0u; d < p.headDim; d++) { dot += qs[d] * fk(j, kvo + d); }
      }`
    : `for (var d = 0u; d < p.headDim; d++) { dot += qs[d] * kc[kb + d]; }`;
  const value = kv
    ? `select(fv(j0 + jj, kvo + d), vdq(j0 + jj, kvo + d), j0 + jj < valuesBefore(st.pos + t))`
    : `vc[vb + d]`;
  // A quantized cache's full-precision keys and values: the window's before the step, the
  // step's rows from its first position on.
  const floats = kv
    ? `
@group(0) @binding(8) var<storage, read> kn: array<f32>;
@group(0) @binding(9) var<storage, read> vn: array<f32>;
fn fk(j: u32, c: u32) -> f32 {
  if (j >= st.pos) { return kn[(j - st.pos) * p.kvDim + c]; }
  return kc[win(j) * p.kvDim + c];
}
fn fv(j: u32, c: u32) -> f32 {
  if (j >= st.pos) { return vn[(j - st.pos) * p.kvDim + c]; }
  return vc[win(j) * p.kvDim + c];
}`
    : "";
  return `${kv ? kvReadWgsl(kv) : ""}
struct AP { nHeads: u32, nKvHeads: u32, headDim: u32, kvDim: u32,
            scale: f32, qStride: u32, kg: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: AP;
${STEP}
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kc: array<f32>;
@group(0) @binding(4) var<storage, read> vc: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
${floats}
var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> pr: array<f32, 64>;
var<workgroup> part: array<f32, 64>;
var<workgroup> lsum: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let h = wg.x;
  let t = wg.y;
  let len = st.pos + t + 1u;
  let kvo = (h / (p.nHeads / p.nKvHeads)) * p.headDim;
  let qo = t * p.qStride + h * p.headDim;
  for (var d = lid; d < p.headDim; d += 64u) { qs[d] = q[qo + d]; }
  // This thread's key group and first output element (then every 64th when kg = 1).
  let g = lid % p.kg;
  let d0 = lid / p.kg;
  workgroupBarrier();
  var m = -3.0e38;
  var l = 0.0;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var j0 = 0u; j0 < len; j0 += 64u) {
    let j = j0 + lid;
    var s = -3.0e38;
    if (j < len) {
      var dot = 0.0;
      let kb = j * p.kvDim + kvo;
      ${keyDot}
      s = dot * p.scale;
    }
    sc[lid] = s;
    workgroupBarrier();
    let n = min(64u, len - j0);
    var cmax = m;
    for (var jj = 0u; jj < n; jj++) { cmax = max(cmax, sc[jj]); }
    let corr = exp(m - cmax);
    m = cmax;
    pr[lid] = select(0.0, exp(s - m), j < len);
    workgroupBarrier();
    l *= corr;
    for (var k = 0u; k < 4u; k++) { acc[k] *= corr; }
    for (var jj = g; jj < n; jj += p.kg) {
      let pj = pr[jj];
      l += pj;
      let vb = (j0 + jj) * p.kvDim + kvo;
      for (var k = 0u; k < 4u; k++) {
        let d = d0 + 64u * k;
        if (d < p.headDim) { acc[k] += pj * ${value}; }
      }
    }
    workgroupBarrier();
  }
  if (p.kg == 1u) {
    for (var k = 0u; k < 4u; k++) {
      let d = d0 + 64u * k;
      if (d < p.headDim) { out[qo + d] = acc[k] / l; }
    }
    return;
  }
  part[lid] = acc[0];
  lsum[lid] = l;
  workgroupBarrier();
  if (g == 0u && d0 < p.headDim) {
    var a = 0.0;
    var lt = 0.0;
    for (var i = 0u; i < p.kg; i++) {
      a += part[lid + i];
      lt += lsum[lid + i];
    }
    out[qo + d0] = a / lt;
  }
}
`;
}

/** The attention kernel over a float32 KV cache ({@linkcode attentionShader}). */
export const ATTENTION_WGSL: string = attentionShader();

/** In place `gate = silu(gate) · up` over `T` rows of `n`. */
export const SWIGLU_WGSL = `
struct SP { n: u32, a: u32, b: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: SP;
${STEP}
@group(0) @binding(2) var<storage, read_write> gate: array<f32>;
@group(0) @binding(3) var<storage, read> up: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * 256u + gid.x;
  if (i >= st.T * p.n) { return; }
  let g = gate[i];
  gate[i] = g / (1.0 + exp(-g)) * up[i];
}
`;

/** Copies `n` vec4<u32> (4 per thread, coalesced): the bandwidth yardstick of the perf run. */
export const COPY_WGSL = `
struct CP { n: u32, a: u32, b: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: CP;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let base = (wg.y * nwg.x + wg.x) * 1024u + lid;
  for (var i = 0u; i < 4u; i++) {
    let idx = base + i * 256u;
    if (idx < p.n) { dst[idx] = src[idx]; }
  }
}
`;

/**
 * Fills `n` u32 words: `mode` 0 writes a hash of the index and `seed` (random codes), 1 writes
 * `seed` itself (e.g. a pair of f16 scales), 2 writes a float in [-0.5, 0.5) from the hash.
 */
export const FILL_WGSL = `
struct FP { n: u32, seed: u32, mode: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: FP;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

fn hash(v: u32) -> u32 {
  var x = v * 747796405u + 2891336453u;
  x = ((x >> ((x >> 28u) + 4u)) ^ x) * 277803737u;
  return (x >> 22u) ^ x;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * 256u + gid.x;
  if (i >= p.n) { return; }
  let h = hash(i ^ (p.seed * 0x9e3779b9u));
  if (p.mode == 0u) { dst[i] = h; }
  if (p.mode == 1u) { dst[i] = p.seed; }
  if (p.mode == 2u) { dst[i] = bitcast<u32>(bitcast<f32>((h >> 9u) | 0x3f800000u) - 1.5); }
}
`;

/** In place `buf[off + pos·posStride + t·rowStride + i] += bias[i]` for `i < n`, `t < T`. */
export const BIAS_WGSL = `
struct BP { n: u32, off: u32, posStride: u32, rowStride: u32 }
@group(0) @binding(0) var<uniform> p: BP;
${STEP}
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = gid.y * nwg.x * 256u + gid.x;
  if (id >= st.T * p.n) { return; }
  let i = id % p.n;
  let t = id / p.n;
  let o = p.off + st.pos * p.posStride + t * p.rowStride + i;
  buf[o] = buf[o] + bias[i];
}
`;

/**
 * In place RMSNorm of each head (`headDim` elements, weight `w`) of `T` rows of `heads` heads at
 * `off + pos·posStride + t·rowStride`: Qwen3's query/key norm. Workgroup `(h, t)`.
 */
export const HEADNORM_WGSL = `
struct HP { dim: u32, eps: f32, off: u32, posStride: u32, rowStride: u32, a: u32, b: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: HP;
${STEP}
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let base = p.off + st.pos * p.posStride + wg.y * p.rowStride + wg.x * p.dim;
  var ss = 0.0;
  for (var i = lid; i < p.dim; i += 64u) {
    let v = buf[base + i];
    ss += v * v;
  }
  red[lid] = ss;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(red[0] / f32(p.dim) + p.eps);
  for (var i = lid; i < p.dim; i += 64u) {
    buf[base + i] = w[i] * (inv * buf[base + i]);
  }
}
`;
