/**
 * WGSL for the Hadamard transform of rows too long for one workgroup's memory (the one-workgroup
 * kernel, `hadamard_wgsl.ts`, holds {@linkcode HADAMARD_MAX_N} values by default): the same
 * `M = (H_K ⊗ H_P) / √n` (or `Mᵀ`) as the CPU's `kernels/cpu/hadamard.ts`, `n = K · P` with `P` a
 * power of two, as up to three passes over the row in global memory, each a dispatch whose
 * workgroups hold a tile of at most `tile` values in workgroup memory:
 *
 * 1. **butterflies**: each chunk of `C = min(P, tile)` contiguous values goes through the
 *    butterfly stages of strides 1 … C/2 (the whole Walsh–Hadamard transform of each K-part when
 *    `P ≤ tile`); this pass reads the input (times its signs) and writes the work rows;
 * 2. **strided butterflies** (only where `P > tile`): the stages of strides C … P/2, which pair
 *    values of one part `C, 2C, …` apart; a workgroup takes every `C`-th value for `J = tile·C/P`
 *    consecutive offsets, so each of its loads is a run of `J` contiguous values;
 * 3. **factor** (only where `K > 1`): value `j` of every part mixed by the stored ±1 factor; a
 *    workgroup takes `J' = min(P, 2^⌊log₂(tile/K)⌋)` consecutive offsets of all K parts.
 *
 * The last pass scales by `1/√n` and writes the result. Every pass reads and writes only the
 * positions of its own tile, so all of them work in place; workgroups never share a value within a
 * pass, so there are no atomics and no storage barriers. A pass's workgroups along `x` cover one
 * block of `n` values, `y` the step's rows, `z` the blocks of a row (1 but for in-place work rows
 * holding several blocks, as a head-wise step's).
 *
 * Bindings (signature letters of `Kernels.layout`: u uniform, s the pass's `Step` uniform with a
 * dynamic offset, r read-only storage, w read-write storage): 0 params `{workOff, workPos, workRow,
 * outOff, outPos, outRow, accumulate}` (u), 1 `Step {T, pos}` (s), 2 the work rows (w; row `t`,
 * block `b` at `workOff + pos·workPos + t·workRow + b·n`), 3 the factor (K × K f32, r); the first
 * pass with `input: "source"` adds 4 the signs (n f32, r) and 5 the input rows (r; row `t` at
 * `t·n`), the last pass with `output: "target"` adds 4 a factor per value (n f32, r; QuIP#'s `sv`)
 * and 5 the output (w; value `o` of row `t` written to, or with `accumulate` added to,
 * `outOff + pos·outPos + t·outRow + o`).
 *
 * @module
 */
import { hadamardPlan } from "../cpu/hadamard.ts";
import { HADAMARD_MAX_N, radixButterflies, swizzleFn } from "./hadamard_wgsl.ts";

/** Threads per workgroup of every pass. */
export const WIDE_HADAMARD_WORKGROUP = 256;

/** Workgroups a dispatch takes in one dimension (WebGPU's guaranteed limit). */
const MAX_GROUPS = 65535;

/** Thrown for a row the passes cannot take (shorter than a tile, or a tile too small). */
export class WideHadamardError extends RangeError {
  override name = "WideHadamardError";
}

/** Options of {@linkcode wideHadamardPasses}. */
export interface WideHadamardOptions {
  /** The first pass reads input rows times signs (`"source"`) or the work rows in place. */
  input: "source" | "work";
  /** The last pass writes the work rows in place or places its values in the output. */
  output: "work" | "target";
  /** Values a workgroup holds: a power of two, default {@linkcode HADAMARD_MAX_N} (16 KiB). */
  tile?: number;
}

/** One dispatch of the transform. */
export interface WideHadamardPass {
  /** `butterflies`, `strided butterflies` or `factor`. */
  name: string;
  /** The cache key of `code` ({@linkcode wideHadamardKey} and the pass's index). */
  key: string;
  /** The bind group's signature (see the module notes). */
  sig: string;
  code: string;
  /** Workgroups along `x`, per row and block. */
  groups: number;
}

/** The cache key of the transform's passes (each pass adds its index). */
export function wideHadamardKey(
  n: number,
  transpose: boolean,
  options: WideHadamardOptions,
): string {
  return `hadamard-wide:${n}:${transpose ? "t" : "n"}:${options.input}:${options.output}:` +
    `${options.tile ?? HADAMARD_MAX_N}`;
}

/** The largest power of two not above `v` (v ≥ 1). */
const floorPow2 = (v: number) => 2 ** Math.floor(Math.log2(v));

/**
 * The passes transforming rows of `n` values by `M` (or `Mᵀ` with `transpose`), in the order to
 * dispatch them; a `HadamardSizeError` when `n` has no transform, a {@linkcode WideHadamardError}
 * when `n` fits one tile (the one-workgroup kernel takes it) or the tile cannot hold what a pass
 * needs.
 */
export function wideHadamardPasses(
  n: number,
  transpose: boolean,
  options: WideHadamardOptions,
): WideHadamardPass[] {
  const { k, pow2 } = hadamardPlan(n);
  const tile = options.tile ?? HADAMARD_MAX_N;
  if (!Number.isInteger(Math.log2(tile)) || tile < 2) {
    throw new WideHadamardError(`A tile of ${tile} values is not a power of two of at least 2`);
  }
  if (n <= tile) {
    throw new WideHadamardError(
      `A Hadamard row of ${n} values fits one workgroup's tile of ${tile}; the one-workgroup kernel takes it`,
    );
  }
  if (k > tile || pow2 > tile * tile) {
    throw new WideHadamardError(
      `A Hadamard row of ${n} = ${k} · ${pow2} needs a factor of at most ${tile} and a power of ` +
        `two of at most ${tile * tile}, within a tile of ${tile} values`,
    );
  }
  const chunk = Math.min(pow2, tile);
  const kinds: ("butterflies" | "strided butterflies" | "factor")[] = ["butterflies"];
  if (pow2 > tile) kinds.push("strided butterflies");
  if (k > 1) kinds.push("factor");
  const key = wideHadamardKey(n, transpose, options);
  return kinds.map((name, i) => {
    const first = i === 0;
    const last = i === kinds.length - 1;
    const io = { first, last, options, n };
    let body: string;
    let groups: number;
    let held: number;
    if (name === "butterflies") {
      held = chunk;
      groups = n / chunk;
      body = chunkBody(chunk, io);
    } else if (name === "strided butterflies") {
      const across = chunk * tile / pow2;
      held = tile;
      groups = n / tile;
      body = stridedBody(pow2, chunk, across, tile, io);
    } else {
      const across = Math.min(pow2, floorPow2(tile / k));
      held = k * across;
      groups = pow2 / across;
      body = factorBody(k, pow2, across, transpose, io);
    }
    if (groups > MAX_GROUPS) {
      throw new WideHadamardError(
        `A Hadamard row of ${n} values needs ${groups} workgroups in a pass (at most ${MAX_GROUPS})`,
      );
    }
    const sig = "uswr" + (first && options.input === "source" ? "rr" : "") +
      (last && options.output === "target" ? "rw" : "");
    return { name, key: `${key}:${i}`, sig, code: shader(n, held, io, body), groups };
  });
}

/** Where a pass sits among the transform's passes, and what the transform reads and writes. */
interface PassIo {
  first: boolean;
  last: boolean;
  options: WideHadamardOptions;
  n: number;
}

/** The bindings and entry point around a pass's `body` (see the module notes). */
function shader(n: number, held: number, io: PassIo, body: string): string {
  const source = io.first && io.options.input === "source";
  const target = io.last && io.options.output === "target";
  const extra = source
    ? `@group(0) @binding(4) var<storage, read> signs: array<f32>;
@group(0) @binding(5) var<storage, read> x: array<f32>;
`
    : target
    ? `@group(0) @binding(4) var<storage, read> post: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
`
    : "";
  return `const N = ${n}u;
struct Params { workOff: u32, workPos: u32, workRow: u32, outOff: u32, outPos: u32, outRow: u32, accumulate: u32, pad: u32 }
@group(0) @binding(0) var<uniform> params: Params;
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(3) var<storage, read> h: array<f32>;
${extra}var<workgroup> v: array<f32, ${held}>;
${swizzleFn(held)}

@compute @workgroup_size(${WIDE_HADAMARD_WORKGROUP})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let t = wg.y;
  if (t >= st.T) { return; }
  let base = params.workOff + st.pos * params.workPos + t * params.workRow + wg.z * N;
${body}}
`;
}

/**
 * The statement writing `value` (a WGSL expression) to row position `at` (an expression of `i`):
 * to the work rows, or, in the last pass, scaled by `1/√n` to where the transform's output goes.
 */
function write(at: string, value: string, io: PassIo): string {
  if (!io.last) return `work[base + ${at}] = ${value};`;
  const scaled = `${value} * ${1 / Math.sqrt(io.n)}`;
  if (io.options.output === "work") return `work[base + ${at}] = ${scaled};`;
  return `let o = ${at};
    let dst = params.outOff + st.pos * params.outPos + t * params.outRow + o;
    let value = ${scaled} * post[o];
    if (params.accumulate != 0u) { y[dst] += value; } else { y[dst] = value; }`;
}

/** The loop storing `v[i]` to row position `at` (an expression of `i`). */
function store(held: number, at: string, io: PassIo): string {
  return `  for (var i = lid; i < ${held}u; i += ${WIDE_HADAMARD_WORKGROUP}u) {
    ${write(at, "v[sw(i)]", io)}
  }
`;
}

/** The loop loading row position `at` (a WGSL expression of `i`) into `v[i]`. */
function load(held: number, at: string, io: PassIo): string {
  const value = io.first && io.options.input === "source"
    ? `x[t * N + ${at}] * signs[${at}]`
    : `work[base + ${at}]`;
  return `  for (var i = lid; i < ${held}u; i += ${WIDE_HADAMARD_WORKGROUP}u) { v[sw(i)] = ${value}; }
  workgroupBarrier();
`;
}

/** Pass 1: workgroup `x` transforms the contiguous chunk `x` of `chunk` values. */
function chunkBody(chunk: number, io: PassIo): string {
  const at = `wg.x * ${chunk}u + i`;
  return load(chunk, at, io) + radixButterflies(chunk, 1, chunk, WIDE_HADAMARD_WORKGROUP) +
    store(chunk, at, io);
}

/**
 * Pass 2: workgroup `x` takes part `x / (P / tile)` and offsets `j0 … j0 + across` within its
 * chunks (`j0 = (x % (P / tile)) · across`); `v[m · across + jj]` is the part's value
 * `m · chunk + j0 + jj`, so the part's stages of strides `chunk …` are `v`'s of `across …`.
 */
function stridedBody(
  pow2: number,
  chunk: number,
  across: number,
  tile: number,
  io: PassIo,
): string {
  const perPart = pow2 / tile;
  const at = `(wg.x / ${perPart}u) * ${pow2}u + (i / ${across}u) * ${chunk}u + ` +
    `(wg.x % ${perPart}u) * ${across}u + i % ${across}u`;
  return load(tile, at, io) + radixButterflies(tile, across, tile, WIDE_HADAMARD_WORKGROUP) +
    store(tile, at, io);
}

/**
 * Pass 3: workgroup `x` takes offsets `j0 = x · across …` of all K parts (`v[c · across + jj]` is
 * value `j0 + jj` of part `c`), mixes them by the factor into its own values, and writes them.
 */
function factorBody(
  k: number,
  pow2: number,
  across: number,
  transpose: boolean,
  io: PassIo,
): string {
  const held = k * across;
  const at = `(i / ${across}u) * ${pow2}u + wg.x * ${across}u + i % ${across}u`;
  const factor = transpose ? `h[c * ${k}u + r]` : `h[r * ${k}u + c]`;
  return `${load(held, at, io)}  for (var i = lid; i < ${held}u; i += ${WIDE_HADAMARD_WORKGROUP}u) {
    let r = i / ${across}u;
    let jj = i % ${across}u;
    var acc = 0.0;
    for (var c = 0u; c < ${k}u; c++) { acc += ${factor} * v[sw(c * ${across}u + jj)]; }
    ${write(at, "acc", io)}
  }
`;
}
