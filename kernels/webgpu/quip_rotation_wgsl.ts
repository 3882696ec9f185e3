/**
 * WGSL for the two sides of QuIP's matmul (`kernels/formats/quip_format.ts`, `quip_matmul.ts`):
 * one of its random orthogonal matrices `P_out · B₁ · B₀ · P_in` (`kernels/formats/
 * quip_rotation.ts`, whose `applyQuipRotation` is the reference) applied to each token row,
 *
 * - `input`: `u = V(x / col_scale)` and the row's sum `Σu`;
 * - `output`: `Uᵀ z'` with `z' = scale · (step · z − Σu)`, placed (or accumulated) in the pass's
 *   output rows as the codebook kernels place theirs.
 *
 * One workgroup per token row. Each side is two stages with one barrier between them, each output
 * value gathered from the stage before it (so no stage writes what another thread still reads):
 * the first reads the row through its permutation (`perm_in`; `Uᵀ`: the inverse of `perm_out`),
 * the second writes values through the other one. The middle row lives in workgroup memory where
 * `4n` bytes fit (`shared`), else in a scratch row of storage per token. The factors are either
 * one per column and per row or one for all (`count0`, `count1`).
 *
 * Bindings: 0 params ({@linkcode QUIP_PARAMS}), 1 `Step` (dynamic offset), 2 the rows (`input`: x
 * with stride `xStride`; `output`: z, rows of `n`), 3 `input`: column scales, `output`: the row
 * sums, 4 factors (f32: the `p0 × p0` ones, then the `p1 × p1` ones), 5 permutations (`perm_in`,
 * `perm_out`, their inverses; `n` u32 each), 6 the middle rows' scratch (when not `shared`),
 * 7 `input`: u (rows of `n`), `output`: out, 8 (`input`) the row sums. Dispatch `(T, 1, 1)`.
 *
 * @module
 */

/** Threads per workgroup. */
export const QUIP_WORKGROUP = 256;

/** Thrown for a rotation the shader cannot take. */
export class QuipRotationShaderError extends RangeError {
  override name = "QuipRotationShaderError";
}

/** What the rotation shader is built for. */
export interface QuipRotationShaderOptions {
  side: "input" | "output";
  n: number;
  p0: number;
  p1: number;
  /** Factors on the `p0` axis: 1 (shared) or `p1` (one per column). */
  count0: number;
  /** Factors on the `p1` axis: 1 (shared) or `p0` (one per row). */
  count1: number;
  /** The middle row in workgroup memory (else in the scratch binding). */
  shared: boolean;
}

/** Uniform block and `Step` of both sides. */
export const QUIP_PARAMS = `
struct QP {
  xStride: u32, outOff: u32, outStride: u32, outPosStride: u32,
  accumulate: u32, scale: f32, step: f32, pad: u32,
}
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: QP;
@group(0) @binding(1) var<uniform> st: Step;
`;

/** Checks that `o` describes a rotation the shader can run. */
export function validateQuipRotation(o: QuipRotationShaderOptions): void {
  const ok = [o.n, o.p0, o.p1].every((v) => Number.isInteger(v) && v >= 1) &&
    o.p0 * o.p1 === o.n && (o.count0 === 1 || o.count0 === o.p1) &&
    (o.count1 === 1 || o.count1 === o.p0);
  if (!ok) {
    throw new QuipRotationShaderError(
      `A rotation of ${o.n} as ${o.p0} × ${o.p1} with ${o.count0} and ${o.count1} factors ` +
        `is not one that QuIP makes`,
    );
  }
}

/** The cache key of {@linkcode quipRotationShader}. */
export function quipRotationKey(o: QuipRotationShaderOptions): string {
  return `quip-rotation:${o.side}:${o.n}=${o.p0}x${o.p1}:f${o.count0}x${o.count1}:` +
    (o.shared ? "shared" : "storage");
}

/** The rotation shader of one side (see the module notes). */
export function quipRotationShader(o: QuipRotationShaderOptions): string {
  validateQuipRotation(o);
  const { n, p0, p1 } = o;
  const off1 = o.count0 * p0 * p0;
  const input = o.side === "input";
  // Factor k of the p0 axis for column b, of the p1 axis for row a.
  const m0 = o.count0 === 1 ? "0u" : `b * ${p0 * p0}u`;
  const m1 = o.count1 === 1 ? `${off1}u` : `${off1}u + a * ${p1 * p1}u`;
  const mid = o.shared ? "mid[j]" : "mids[mb + j]";
  const midAt = (i: string) => o.shared ? `mid[${i}]` : `mids[mb + ${i}]`;
  const barrier = o.shared ? "workgroupBarrier();" : "storageBarrier();";
  // input: the forward stages (B₀ then B₁); output: the transposed ones (B₁ᵀ then B₀ᵀ).
  const first = input
    ? `    let i = j / ${p1}u;
    let b = j % ${p1}u;
    let m = ${m0};
    var s = 0.0;
    for (var k = 0u; k < ${p0}u; k++) {
      let c = perms[k * ${p1}u + b];
      s += factors[m + i * ${p0}u + k] * (x[xb + c] / side[c]);
    }`
    : `    let a = j / ${p1}u;
    let i = j % ${p1}u;
    let m = ${m1};
    var s = 0.0;
    for (var k = 0u; k < ${p1}u; k++) {
      let r = perms[${3 * n}u + a * ${p1}u + k];
      s += factors[m + k * ${p1}u + i] * (p.scale * (p.step * x[xb + r] - sum));
    }`;
  const second = input
    ? `    let j = perms[${n}u + o];
    let a = j / ${p1}u;
    let i = j % ${p1}u;
    let m = ${m1};
    var s = 0.0;
    for (var k = 0u; k < ${p1}u; k++) { s += factors[m + i * ${p1}u + k] * ${
      midAt(`a * ${p1}u + k`)
    }; }
    u[t * ${n}u + o] = s;
    total += s;`
    : `    let j = perms[${2 * n}u + o];
    let i = j / ${p1}u;
    let b = j % ${p1}u;
    let m = ${m0};
    var s = 0.0;
    for (var k = 0u; k < ${p0}u; k++) { s += factors[m + k * ${p0}u + i] * ${
      midAt(`k * ${p1}u + b`)
    }; }
    let at = p.outOff + st.pos * p.outPosStride + t * p.outStride + o;
    if (p.accumulate != 0u) { out[at] += s; } else { out[at] = s; }`;
  const W = QUIP_WORKGROUP;
  return `// ${quipRotationKey(o)}
${QUIP_PARAMS}
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> side: array<f32>;
@group(0) @binding(4) var<storage, read> factors: array<f32>;
@group(0) @binding(5) var<storage, read> perms: array<u32>;
@group(0) @binding(6) var<storage, read_write> mids: array<f32>;
${
    input
      ? `@group(0) @binding(7) var<storage, read_write> u: array<f32>;
@group(0) @binding(8) var<storage, read_write> sums: array<f32>;
var<workgroup> red: array<f32, ${W}>;`
      : "@group(0) @binding(7) var<storage, read_write> out: array<f32>;"
  }
${o.shared ? `var<workgroup> mid: array<f32, ${n}>;` : ""}

@compute @workgroup_size(${W})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let t = wg.x;
  let xb = t * ${input ? "p.xStride" : `${n}u`};
  let mb = t * ${n}u;
${input ? "" : "  let sum = side[t];\n"}  for (var j = lid; j < ${n}u; j += ${W}u) {
${first}
    ${mid} = s;
  }
  ${barrier}
${input ? "  var total = 0.0;\n" : ""}  for (var o = lid; o < ${n}u; o += ${W}u) {
${second}
  }
${
    input
      ? `  red[lid] = total;
  workgroupBarrier();
  for (var s = ${W / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { sums[t] = red[0]; }
`
      : ""
  }}
`;
}
