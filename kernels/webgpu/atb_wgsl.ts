/**
 * WGSL for the one GEMM that GPTQ's calibration needs, `O[i][j] += α · Σ_t A[t][i] · B[t][j]`
 * (`AᵀB` accumulated into `O`), over a rectangle of `O`:
 *
 * - the Hessian `H += XᵀX` of captured activations (`A = B = X`, tokens × K): with `upper`,
 *   workgroups whose tile lies wholly below the diagonal return at once, so only about half the
 *   products are made and the reader mirrors the upper triangle;
 * - GPTQ's lazy batch update `Wᵀ[j][r] −= Σ_i H⁻¹[i][j] · Errᵀ[i][r]` (`A` = the block's rows of
 *   `H⁻¹`, `B` = the block's errors transposed, `O` = the weights stored column by column);
 * - the blocked Cholesky's trailing updates and triangular inverse (`cholesky_wgsl.ts`);
 * - with `A` and `B` stored the other way ({@linkcode AtbLayout} `cols`), `ABᵀ`: the linear
 *   layers `x·Wᵀ` of the calibration forward.
 *
 * `O` may be a band of rows of a larger matrix (`row0` is the band's first row): a matrix over
 * the largest storage binding is accumulated band by band (each band its own dispatch, so a
 * workgroup never straddles two). Each workgroup owns a 64 × 128 tile of `O` (`i` × `j`) and each
 * thread 4 × 8 outputs of it in registers, fed through workgroup memory 16 values of `t` at a
 * time: the register-blocked SGEMM of the prefill GEMM's default tile (`gemm_wgsl.ts`), which
 * replaced a 64 × 64 tile with 4 × 4 outputs a thread, scalar workgroup reads and accumulators in
 * a run-time indexed array (about 1.5 TFLOP/s on an H100 in GPTQ's calibration). The sum over `t`
 * runs in float32, in order, in one accumulator per output, as PyTorch's reference GPTQ does on a
 * GPU; the sums are those of the old kernel bit for bit (checked on lavapipe over odd shapes,
 * bands and rectangles).
 *
 * @module
 */

/** Output rows (values of `i`) per workgroup. */
export const ATB_TILE = 64;

/** Output columns (values of `j`) per workgroup. */
export const ATB_TILE_COLS = 128;

/** Thrown for arguments the kernel cannot take. */
export class AtbArgumentError extends Error {
  override name = "AtbArgumentError";
}

/** One accumulation `O[i][j] += α · Σ_t A[t][i]·B[t][j]` over `i ∈ [i0, i1)`, `j ∈ [j0, j1)`. */
export interface AtbParams {
  /** Rows of `t` (tokens, or the block's columns). */
  depth: number;
  /** Row strides (elements) of `A`, `B` and `O`. */
  lda: number;
  ldb: number;
  ldo: number;
  /** The rectangle of `O` written, in absolute rows `i` and columns `j`. */
  i0: number;
  i1: number;
  j0: number;
  j1: number;
  /** The absolute row of `O`'s first stored row (its band's start). */
  row0: number;
  alpha: number;
}

/** The uniform block {@linkcode atbShader} reads (10 words, `alpha` as f32). */
export function atbUniform(p: AtbParams): Uint32Array<ArrayBuffer> {
  for (const [k, v] of Object.entries(p)) {
    if (k !== "alpha" && !(Number.isInteger(v) && v >= 0 && v < 2 ** 32)) {
      throw new AtbArgumentError(`AᵀB parameter ${k} must be a u32, got ${v}`);
    }
  }
  if (p.i0 < p.row0) {
    throw new AtbArgumentError(`AᵀB rows start at ${p.i0}, before the band's ${p.row0}`);
  }
  const u = Uint32Array.from([p.depth, p.lda, p.ldb, p.ldo, p.i0, p.i1, p.j0, p.j1, p.row0, 0]);
  new Float32Array(u.buffer)[9] = p.alpha;
  return u;
}

/** Workgroups of a dispatch of {@linkcode atbShader} over `p`'s rectangle. */
export function atbGroups(p: AtbParams): [number, number, number] {
  return [
    Math.max(1, Math.ceil((p.j1 - p.j0) / ATB_TILE_COLS)),
    Math.max(1, Math.ceil((p.i1 - p.i0) / ATB_TILE)),
    1,
  ];
}

/**
 * Which tiles of `O` a dispatch computes: `all`, or only those reaching the `upper` (`j ≥ i`) or
 * `lower` (`i ≥ j`) triangle, for sums whose readers look at one triangle only.
 */
export type AtbTriangle = "all" | "upper" | "lower";

/**
 * How `A` and `B` are stored: `rows`, `t` indexing their rows (`A[t][i]`, `AᵀB`); `cols`, `t`
 * indexing their columns (`A[i][t]`, `ABᵀ`: a linear layer `x·Wᵀ` with `A = x`, `B = W`).
 */
export type AtbLayout = "rows" | "cols";

/** Values of `t` staged in workgroup memory per step. */
const STEP = 16;

/**
 * WGSL storing this thread's share of one step's `A` (`n` = {@linkcode ATB_TILE} values of
 * `i`) or `B` (`n` = {@linkcode ATB_TILE_COLS} values of `j`) tile into workgroup array `tile`
 * (`STEP` rows of `n / 4 + 1` vec4s, padded by one so the transposed `cols` stores spread over
 * the banks), zeros past `t`'s depth or the rectangle's edge. Unrolled: 256 threads store
 * `STEP · n / 256` values each, with compile-time offsets from the thread's own row or column.
 */
function stageTile(
  layout: AtbLayout,
  name: "a" | "b",
  n: number,
  lo: string,
  hi: string,
  ld: string,
): string[] {
  const tile = `t${name}`;
  const stride = n / 4 + 1;
  const lines: string[] = [];
  for (let k = 0; k < (STEP * n) / 256; k++) {
    // rows: consecutive threads along i/j (c), t = l / n + k · 256 / n; cols: along t.
    const [tt, c] = layout === "rows"
      ? [`(l / ${n}u + ${(k * 256) / n}u)`, `(l % ${n}u)`]
      : [`(l % ${STEP}u)`, `(l / ${STEP}u + ${(k * 256) / STEP}u)`];
    const at = layout === "rows"
      ? `min(t, p.depth - 1u) * ${ld} + min(e, ${hi} - 1u)`
      : `min(e, ${hi} - 1u) * ${ld} + min(t, p.depth - 1u)`;
    lines.push(
      `{`,
      `  let t = t0 + ${tt};`,
      `  let e = ${lo} + ${c};`,
      `  ${tile}[${tt} * ${stride}u + ${c} / 4u][${c} % 4u] = ` +
        `select(0.0, ${name}[${at}], t < p.depth && e < ${hi});`,
      `}`,
    );
  }
  return lines;
}

/**
 * The kernel. Bindings (signature `urrw`): the {@linkcode atbUniform} words, `A`, `B`, `O`.
 * Dispatch {@linkcode atbGroups}.
 *
 * A workgroup of 16×16 threads owns a {@linkcode ATB_TILE} × {@linkcode ATB_TILE_COLS} tile of
 * `O` (64 values of `i` by 128 of `j`, as the prefill GEMM's default tile); each thread 4 × 8
 * outputs, `i = 4·ty + r` and `j = 4·tx + 64·c + e`, held as eight named vec4 accumulators.
 * Each step stages 16 values of `t` of both tiles in workgroup memory (coalesced scalar loads:
 * the bindings are `array<f32>` because callers bind buffers whose sizes are not multiples of
 * 16 bytes), then per `t` a thread reads one vec4 of `A` and two of `B` (neighbouring threads
 * neighbouring vec4s) for 32 products. Everything per thread is unrolled over compile-time
 * constants: no private array indexed at run time (NVIDIA would place it in local memory).
 * Each output's sum is one float32 accumulator over `t` in order (`acc + a·b`, not `fma`), from
 * zero, with zeros added past the depth to the step's end: bit for bit the sums of the earlier
 * 64 × 64 kernel.
 *
 * With `triangle` `upper`, workgroups whose tile lies wholly below the diagonal (`j < i`) return
 * at once; with `lower`, those wholly above it (`i < j`: the blocked Cholesky's trailing update and
 * `H⁻¹ = XᵀX`, whose readers look at the lower triangle only, `cholesky_wgsl.ts`).
 */
export function atbShader(triangle: AtbTriangle, layout: AtbLayout = "rows"): string {
  const TI = ATB_TILE;
  const TJ = ATB_TILE_COLS;
  const SA = TI / 4 + 1;
  const SB = TJ / 4 + 1;
  const stage = [
    ...stageTile(layout, "a", TI, "i0", "p.i1", "p.lda"),
    ...stageTile(layout, "b", TJ, "j0", "p.j1", "p.ldb"),
  ];
  const accs: string[] = [];
  const body: string[] = [];
  const stores: string[] = [];
  for (let r = 0; r < TI / 64; r++) body.push(`let a${r} = ta[kk * ${SA}u + ty + ${16 * r}u];`);
  for (let c = 0; c < TJ / 64; c++) body.push(`let b${c} = tb[kk * ${SB}u + tx + ${16 * c}u];`);
  for (let r = 0; r < TI / 16; r++) {
    for (let c = 0; c < TJ / 64; c++) {
      const acc = `acc${r}_${c}`;
      accs.push(`var ${acc} = vec4<f32>(0.0);`);
      body.push(`${acc} = ${acc} + a${r >> 2}.${"xyzw"[r & 3]} * b${c};`);
      stores.push(`put(i0 + ty * 4u + ${r}u, j0 + tx * 4u + ${64 * c}u, ${acc});`);
    }
  }
  const indent = (lines: string[], n: number) => lines.map((l) => " ".repeat(n) + l).join("\n");
  // The early return depends on uniform values only, so the barriers below stay uniform.
  const skip = [
    triangle === "upper" ? `if (j0 + ${TJ}u <= i0) { return; }` : "",
    triangle === "lower" ? `if (i0 + ${TI}u <= j0) { return; }` : "",
  ].filter((line) => line !== "").join("\n  ");
  return `struct P { depth: u32, lda: u32, ldb: u32, ldo: u32, i0: u32, i1: u32, j0: u32,
  j1: u32, row0: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
var<workgroup> ta: array<vec4<f32>, ${STEP * SA}>;
var<workgroup> tb: array<vec4<f32>, ${STEP * SB}>;

/** Adds α·v to O[i][j … j + 3], those inside the rectangle. */
fn put(i: u32, j: u32, v: vec4<f32>) {
  if (i >= p.i1) { return; }
  for (var e = 0u; e < 4u; e++) {
    if (j + e < p.j1) {
      let at = (i - p.row0) * p.ldo + j + e;
      o[at] += p.alpha * v[e];
    }
  }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
  let i0 = p.i0 + wg.y * ${TI}u;
  let j0 = p.j0 + wg.x * ${TJ}u;
  ${skip}
  let tx = lid.x;
  let ty = lid.y;
  let l = ty * 16u + tx;
${indent(accs, 2)}
  for (var t0 = 0u; t0 < p.depth; t0 += ${STEP}u) {
${indent(stage, 4)}
    workgroupBarrier();
    for (var kk = 0u; kk < ${STEP}u; kk++) {
${indent(body, 6)}
    }
    workgroupBarrier();
  }
${indent(stores, 2)}
}
`;
}
