/**
 * WGSL for the one GEMM that GPTQ's calibration needs, `O[i][j] += α · Σ_t A[t][i] · B[t][j]`
 * (`AᵀB` accumulated into `O`), over a rectangle of `O`:
 *
 * - the Hessian `H += XᵀX` of captured activations (`A = B = X`, tokens × K): with `upper`,
 *   workgroups whose 64×64 tile lies wholly below the diagonal return at once, so only about
 *   half the products are made and the reader mirrors the upper triangle;
 * - GPTQ's lazy batch update `Wᵀ[j][r] −= Σ_i H⁻¹[i][j] · Errᵀ[i][r]` (`A` = the block's rows of
 *   `H⁻¹`, `B` = the block's errors transposed, `O` = the weights stored column by column);
 * - with `A` and `B` stored the other way ({@linkcode AtbLayout} `cols`), `ABᵀ`: the linear
 *   layers `x·Wᵀ` of the calibration forward.
 *
 * `O` may be a band of rows of a larger matrix (`row0` is the band's first row): a matrix over
 * the largest storage binding is accumulated band by band. Each thread owns a 4×4 tile of `O`
 * and each workgroup a 64×64 one, fed through workgroup memory 16 values of `t` at a time. The
 * sum over `t` runs in float32, in order, as PyTorch's reference GPTQ does on a GPU.
 *
 * @module
 */

/** Output rows and columns per workgroup. */
export const ATB_TILE = 64;

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
    Math.max(1, Math.ceil((p.j1 - p.j0) / ATB_TILE)),
    Math.max(1, Math.ceil((p.i1 - p.i0) / ATB_TILE)),
    1,
  ];
}

/**
 * How `A` and `B` are stored: `rows`, `t` indexing their rows (`A[t][i]`, `AᵀB`); `cols`, `t`
 * indexing their columns (`A[i][t]`, `ABᵀ`: a linear layer `x·Wᵀ` with `A = x`, `B = W`).
 */
export type AtbLayout = "rows" | "cols";

/**
 * The kernel. Bindings (signature `urrw`): the {@linkcode atbUniform} words, `A`, `B`, `O`.
 * Dispatch {@linkcode atbGroups}.
 */
export function atbShader(upper: boolean, layout: AtbLayout = "rows"): string {
  const T = ATB_TILE;
  // Consecutive threads load consecutive addresses: along i/j for `rows`, along t for `cols`.
  const load = layout === "rows"
    ? `let t = t0 + idx / ${T}u;
      let c = idx % ${T}u;
      let ia = i0 + c;
      let jb = j0 + c;
      let st = idx;
      ta[st] = select(0.0, a[min(t, p.depth - 1u) * p.lda + min(ia, p.i1 - 1u)],
        t < p.depth && ia < p.i1);
      tb[st] = select(0.0, b[min(t, p.depth - 1u) * p.ldb + min(jb, p.j1 - 1u)],
        t < p.depth && jb < p.j1);`
    : `let t = t0 + idx % 16u;
      let c = idx / 16u;
      let ia = i0 + c;
      let jb = j0 + c;
      let st = (idx % 16u) * ${T}u + c;
      ta[st] = select(0.0, a[min(ia, p.i1 - 1u) * p.lda + min(t, p.depth - 1u)],
        t < p.depth && ia < p.i1);
      tb[st] = select(0.0, b[min(jb, p.j1 - 1u) * p.ldb + min(t, p.depth - 1u)],
        t < p.depth && jb < p.j1);`;
  // The early return depends on uniform values only, so the barriers below stay uniform.
  const skip = upper ? `if (j0 + ${T}u <= i0) { return; }` : "";
  return `struct P { depth: u32, lda: u32, ldb: u32, ldo: u32, i0: u32, i1: u32, j0: u32,
  j1: u32, row0: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
var<workgroup> ta: array<f32, ${16 * T}>;
var<workgroup> tb: array<f32, ${16 * T}>;

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
  let i0 = p.i0 + wg.y * ${T}u;
  let j0 = p.j0 + wg.x * ${T}u;
  ${skip}
  let l = lid.y * 16u + lid.x;
  var acc: array<f32, 16>;
  for (var t0 = 0u; t0 < p.depth; t0 += 16u) {
    for (var k = 0u; k < 4u; k++) {
      let idx = l + k * 256u;
      ${load}
    }
    workgroupBarrier();
    for (var t = 0u; t < 16u; t++) {
      for (var r = 0u; r < 4u; r++) {
        let av = ta[t * ${T}u + lid.y + 16u * r];
        for (var c = 0u; c < 4u; c++) {
          acc[r * 4u + c] += av * tb[t * ${T}u + lid.x + 16u * c];
        }
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < 4u; r++) {
    let i = i0 + lid.y + 16u * r;
    for (var c = 0u; c < 4u; c++) {
      let j = j0 + lid.x + 16u * c;
      if (i < p.i1 && j < p.j1) {
        let at = (i - p.row0) * p.ldo + j;
        o[at] += p.alpha * acc[r * 4u + c];
      }
    }
  }
}
`;
}
