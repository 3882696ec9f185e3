/**
 * WGSL for QuIP#'s run-time activation transform: every row of `n` values multiplied by random
 * signs and then by the Hadamard transform `M = (H_K ⊗ H_{n/K}) / √n` or its transpose — the same
 * transform as the CPU's `kernels/cpu/hadamard.ts` (which documents the layout). One workgroup per
 * row: the row is loaded into workgroup memory (times its sign), the K blocks of `n/K` values go
 * through the Walsh–Hadamard butterfly stage by stage (one barrier a stage), then each value `j`
 * of every block is mixed by the stored ±1 factor (a storage buffer of K × K f32; K = 1 for powers
 * of two) and scaled by `1/√n`. Rows longer than a workgroup's memory holds go through
 * `hadamard_wide_wgsl.ts` instead (the same transform in passes over global memory); the callers
 * (`codebook_matmul.ts`, `Kernels.hadamard`) choose by the row's length.
 *
 * Bindings: 0 params `{rows}` (uniform), 1 input rows `x` (f32), 2 output rows `y` (f32), 3 signs
 * (n f32, ±1), 4 the factor (K × K f32, row-major). Dispatch `(rows, 1, 1)`. With `step` (inside a
 * forward pass, `codebook_matmul.ts`), binding 5 is the pass's `Step` uniform (dynamic offset)
 * and its `T` is the row count instead; with `place` as well, the output is scaled per value and
 * placed (or accumulated) in the pass's output rows ({@linkcode HadamardShaderOptions.place}).
 *
 * @module
 */
import { hadamardPlan } from "../cpu/hadamard.ts";

/** Threads per workgroup of the transform. */
export const HADAMARD_WORKGROUP = 64;

/** Thrown for a row too long for one workgroup's memory (the wide kernel's to transform). */
export class HadamardShaderError extends RangeError {
  override name = "HadamardShaderError";
}

/**
 * Largest row the shader holds in workgroup memory (16 KiB of f32, WebGPU's guaranteed size);
 * longer rows take the passes of `hadamard_wide_wgsl.ts`.
 */
export const HADAMARD_MAX_N = 4096;

/** Options of {@linkcode hadamardShader}. */
export interface HadamardShaderOptions {
  /** Rows from a `Step` uniform at binding 5 (see the module notes). */
  step?: boolean;
  /** Workgroup memory the device allows (default 16 KiB, WebGPU's guaranteed size). */
  maxBytes?: number;
  /**
   * Threads per workgroup (default {@linkcode HADAMARD_WORKGROUP}); a forward pass's transform of
   * one long row takes 256, so that each butterfly stage is fewer steps per thread.
   */
  workgroup?: number;
  /**
   * The forward pass's output form (with `step`): binding 0 is `{rows, outOff, outStride,
   * outPosStride, accumulate}`, binding 6 a factor per value (QuIP#'s `sv`), and value `o` of row
   * `t` is written to, or added to, `y[outOff + pos·outPosStride + t·outStride + o]`.
   */
  place?: boolean;
}

/** The cache key of {@linkcode hadamardShader}'s source. */
export function hadamardKey(
  n: number,
  transpose: boolean,
  options: HadamardShaderOptions = {},
): string {
  return `hadamard:${n}:${transpose ? "t" : "n"}${options.step ? ":step" : ""}` +
    `${options.place ? ":place" : ""}:${options.workgroup ?? HADAMARD_WORKGROUP}`;
}

/**
 * The shader transforming rows of `n` values by `M` (or `Mᵀ` with `transpose`), after multiplying
 * them by the signs; a {@linkcode HadamardShaderError} when `n` exceeds what a workgroup holds
 * ({@linkcode HADAMARD_MAX_N} unless `options.maxBytes` says more) and a `HadamardSizeError` when
 * `n` has no transform.
 */
export function hadamardShader(
  n: number,
  transpose: boolean,
  options: HadamardShaderOptions = {},
): string {
  const { k, pow2 } = hadamardPlan(n);
  checkSize(n, options.maxBytes === undefined ? HADAMARD_MAX_N : Math.floor(options.maxBytes / 4));
  const wg = options.workgroup ?? HADAMARD_WORKGROUP;
  const factor = transpose ? "h[c * K + r]" : "h[r * K + c]";
  if (options.place && !options.step) {
    throw new HadamardShaderError("The placed output form needs the Step uniform (step: true)");
  }
  const rows = options.step ? "st.T" : "params.rows";
  const params = options.place
    ? "rows: u32, outOff: u32, outStride: u32, outPosStride: u32, accumulate: u32"
    : "rows: u32";
  const store = options.place
    ? `let at = params.outOff + st.pos * params.outPosStride + row * params.outStride + o;
    let value = acc * scale * post[o];
    if (params.accumulate != 0u) { y[at] += value; } else { y[at] = value; }`
    : "y[base + o] = acc * scale;";
  const step = options.step
    ? "struct Step { T: u32, pos: u32, a: u32, b: u32 }\n@group(0) @binding(5) var<uniform> st: Step;\n"
    : "";
  return `const N = ${n}u;
const K = ${k}u;
const P = ${pow2}u;
struct Params { ${params} }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> signs: array<f32>;
@group(0) @binding(4) var<storage, read> h: array<f32>;
${step}${
    options.place ? "@group(0) @binding(6) var<storage, read> post: array<f32>;\n" : ""
  }var<workgroup> v: array<f32, ${n}>;
${swizzleFn(n)}

@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wgid: vec3<u32>) {
  let row = wgid.x;
  if (row >= ${rows}) { return; }
  let base = row * N;
${transformBody(n, wg, "x[base + i] * signs[i]", factor, store)}}
`;
}

/**
 * The body both shaders share, for workgroups of `wg` threads: load the row into workgroup memory
 * (`load`, an expression of `i`), the butterflies of each block of P, then the mix by the factor
 * (`factor`, of `r` and `c`) into `acc`, with `scale` = `1/√n` in scope for `store` (a statement
 * of `o`).
 */
function transformBody(n: number, wg: number, load: string, factor: string, store: string): string {
  // Without a factor (K = 1) the mix is the value times the stored 1, which keeps binding 4 in
  // the interface of layouts made from the shader.
  const { k, pow2 } = hadamardPlan(n);
  const mix = k === 1 ? "let acc = h[0] * v[sw(o)];" : `let r = o / P;
    let j = o % P;
    var acc = 0.0;
    for (var c = 0u; c < K; c++) { acc += ${factor} * v[sw(c * P + j)]; }`;
  return `  for (var i = lid; i < N; i += ${wg}u) { v[sw(i)] = ${load}; }
  workgroupBarrier();
${radixButterflies(n, 1, pow2, wg)}  let scale = ${1 / Math.sqrt(n)};
  for (var o = lid; o < N; o += ${wg}u) {
    ${mix}
    ${store}
  }
`;
}

/**
 * WGSL `fn sw(i)`: where the workgroup array `v` (of `n` values) keeps value `i`. With `n` a
 * multiple of 16, the low four bits are XORed with bits 5–8, which keeps `i` within its block of
 * 16 and spreads the first register round's reads (thread `g` takes values `16g … 16g + 15`, all
 * in two banks of 32 unswizzled) over all banks; elsewhere it is `i`.
 */
export function swizzleFn(n: number): string {
  return n % 16 === 0
    ? "fn sw(i: u32) -> u32 { return i ^ ((i >> 5u) & 15u); }"
    : "fn sw(i: u32) -> u32 { return i; }";
}

/** Butterfly stages a thread takes at once in registers (a 2^4 = 16-value Walsh–Hadamard block). */
const RADIX_BITS = 4;

/**
 * WGSL running the butterfly stages of strides `from`, 2·from, … `block`/2 within every block of
 * `block` values (a power of two) of the workgroup array `v` of `n` values, for workgroups of `wg`
 * threads, ending with a barrier. Stages are taken {@linkcode RADIX_BITS} at a time: a thread
 * loads the 2^r values a round's strides pair (`base + m·stride`, `base` with the round's bits
 * clear) into registers, runs the r stages unrolled over constant indices and writes them back, so
 * a 4096-value block takes 3 rounds (3 barriers) instead of 12. Stages run in increasing stride
 * within and across rounds, the order of the one-stage-a-barrier form and of the CPU's
 * `kernels/cpu/hadamard.ts`, so every sum is formed in the same order.
 */
export function radixButterflies(n: number, from: number, block: number, wg: number): string {
  const out: string[] = [];
  for (let a = Math.log2(from); a < Math.log2(block); a += RADIX_BITS) {
    const r = Math.min(RADIX_BITS, Math.log2(block) - a);
    const size = 2 ** r;
    const groups = n / size;
    const at = (m: number) => `at0 + ${m * 2 ** a}u`;
    const values = Array.from({ length: size }, (_, m) => m);
    const stages: string[] = [];
    for (let b = 0; b < r; b++) {
      for (const m of values) {
        if (m & (2 ** b)) continue;
        const o = m + 2 ** b;
        stages.push(`      { let t = x${m} + x${o}; x${o} = x${m} - x${o}; x${m} = t; }`);
      }
    }
    out.push(`  for (var g = lid; g < ${groups}u; g += ${wg}u) {
    let at0 = ((g >> ${a}u) << ${a + r}u) | (g & ${2 ** a - 1}u);
${values.map((m) => `    var x${m} = v[sw(${at(m)})];`).join("\n")}
${stages.join("\n")}
${values.map((m) => `    v[sw(${at(m)})] = x${m};`).join("\n")}
  }
  workgroupBarrier();
`);
  }
  return out.join("");
}

/**
 * The shader of a decoder block's `hadamard` step (a rotated model's run-time transform,
 * `core/graph.ts`): in place, each block of `n` values of the slice's rows is replaced by
 * `M · v` (no signs), as `hadamardTransform` does on the CPU. Row `t` of the slice starts at
 * `off + pos·posStride + t·rowStride` (KV-cache rows are laid out by position); workgroup
 * `(b, t)` transforms block `b` of row `t`.
 *
 * Bindings: 0 params `{off, posStride, rowStride}` (uniform), 1 the step `{T, pos}` (uniform,
 * dynamic offset), 2 the factor (K × K f32), 3 the rows (read-write). Dispatch
 * `(blocks per row, T, 1)`.
 */
export function blockHadamardShader(n: number): string {
  const { k, pow2 } = hadamardPlan(n);
  checkSize(n, HADAMARD_MAX_N);
  return `const N = ${n}u;
const K = ${k}u;
const P = ${pow2}u;
struct Params { off: u32, posStride: u32, rowStride: u32, pad: u32 }
@group(0) @binding(0) var<uniform> params: Params;
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> h: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
var<workgroup> v: array<f32, ${n}>;
${swizzleFn(n)}

@compute @workgroup_size(${HADAMARD_WORKGROUP})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wgid: vec3<u32>) {
  let base = params.off + st.pos * params.posStride + wgid.y * params.rowStride + wgid.x * N;
${
    transformBody(
      n,
      HADAMARD_WORKGROUP,
      "buf[base + i]",
      "h[r * K + c]",
      "buf[base + o] = acc * scale;",
    )
  }}
`;
}

/** A {@linkcode HadamardShaderError} when a row of `n` exceeds the `maxN` a workgroup holds. */
function checkSize(n: number, maxN: number): void {
  if (n > maxN) {
    throw new HadamardShaderError(
      `A Hadamard row of ${n} values exceeds the ${maxN} a workgroup holds ` +
        `(hadamard_wide_wgsl.ts transforms longer rows)`,
    );
  }
}

/** The factor buffer's contents for size `n`: K × K f32 (`[1]` for powers of two). */
export function hadamardFactorData(n: number): Float32Array {
  const { k, factor } = hadamardPlan(n);
  return k === 1 ? Float32Array.of(1) : Float32Array.from(factor);
}
