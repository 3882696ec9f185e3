/**
 * WGSL shared by the codebook formats' kernels (`e8p_wgsl.ts`, `aqlm_wgsl.ts`, `vptq_wgsl.ts`):
 * their uniform block and output store, the lanes' unrolled loops over a row and their sum
 * ({@linkcode laneSteps}, {@linkcode laneReduce}; {@linkcode rowsPerWorkgroup} checks the lanes a
 * row), and the epilogue that finishes VPTQ's product
 * computed in column splits: `out[t][r] (+)= Σ_z partial[z][t][r] + Σ_b tokenAdd[t][b]`, over
 * `splits` partial sums, with the norm's bias term in `tokenParts` parts as `tokenAdd` (where the
 * matrix has a norm: one part per workgroup of `vptqPrepShader`).
 *
 * Bindings: 0 params ({@linkcode CODEBOOK_PARAMS}), 1 `Step` (dynamic offset), 2 partial sums,
 * 3 token terms (f32), 4 out. Dispatch `linearGroups(T · rows)`.
 *
 * @module
 */

/** Uniform block and `Step` of the codebook kernels, with the strided, accumulating store. */
export const CODEBOOK_PARAMS = `
struct CP {
  rows: u32, cols: u32, xStride: u32, outOff: u32,
  outStride: u32, outPosStride: u32, accumulate: u32, splits: u32,
}
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: CP;
@group(0) @binding(1) var<uniform> st: Step;
`;

/** `fn store(t, r, v)`: writes or adds `v` at token row `t`, output `r` (to `out`). */
export const CODEBOOK_STORE = `
fn store(t: u32, r: u32, v: f32) {
  let i = p.outOff + st.pos * p.outPosStride + t * p.outStride + r;
  if (p.accumulate != 0u) { out[i] += v; } else { out[i] = v; }
}
`;

/** The epilogue's options: the parts of the term each token row gets added (0: none). */
export interface EpilogueOptions {
  tokenParts: number;
}

/** The cache key of {@linkcode epilogueShader}. */
export function epilogueKey(o: EpilogueOptions): string {
  return `codebook-epilogue:add${o.tokenParts}`;
}

/** The epilogue shader (see the module notes). */
export function epilogueShader(o: EpilogueOptions): string {
  return `// ${epilogueKey(o)}
${CODEBOOK_PARAMS}
@group(0) @binding(2) var<storage, read> partial: array<f32>;
@group(0) @binding(3) var<storage, read> tokenAdd: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
${CODEBOOK_STORE}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= st.T * p.rows) { return; }
  let t = i / p.rows;
  let r = i % p.rows;
  var v = 0.0;
  for (var z = 0u; z < p.splits; z++) { v += partial[(z * st.T + t) * p.rows + r]; }
${
    o.tokenParts > 0
      ? `  for (var b = 0u; b < ${o.tokenParts}u; b++) { v += tokenAdd[t * ${o.tokenParts}u + b]; }\n`
      : ""
  }  store(t, r, v);
}
`;
}

/** Thrown for a number of lanes a row that does not divide a workgroup of 256 threads. */
export class CodebookLanesError extends RangeError {
  override name = "CodebookLanesError";
}

/**
 * Rows a workgroup of 256 threads takes when `lanes` lanes share a row: `lanes` must be a power of
 * two up to 256, so that the rows tile the workgroup and a row's lanes are neighbours in `red`.
 */
export function rowsPerWorkgroup(lanes: number): number {
  if (!(Number.isInteger(lanes) && lanes >= 1 && lanes <= 256 && (lanes & (lanes - 1)) === 0)) {
    throw new CodebookLanesError(
      `Lanes a row must be a power of two from 1 to 256, not ${JSON.stringify(lanes)}`,
    );
  }
  return 256 / lanes;
}

/** What {@linkcode laneSteps} generates the loops of. */
export interface LaneSteps {
  /** Lanes sharing a row (`lane` in scope), units of the row, units a lane takes per step. */
  lanes: number;
  units: number;
  unroll: number;
  /** Statements loading unit `un` (a WGSL expression) into names suffixed `q`. */
  load(q: number, un: string): string;
  /** Statements using the loads of `q` for unit `un`. */
  use(q: number, un: string): string;
}

/**
 * WGSL for a row's `units` shared by `lanes` lanes, unit `lane + i·lanes` to lane `lane`, with
 * everything unrolled over compile-time constants: whole steps of `unroll` units a lane (all
 * loads of a step first, so they are in flight together) without bounds checks, then the units
 * left one at a time, guarded (one more copy of the unit's code, not `unroll` more).
 */
export function laneSteps(o: LaneSteps): string {
  const L = o.lanes;
  const U = Math.max(1, o.unroll);
  const steps = Math.floor(o.units / (U * L));
  const rounds = Math.ceil(o.units / L);
  const step = (n: number, first: string) => {
    const s: string[] = [];
    for (let q = 0; q < n; q++) {
      s.push(`    let un${q} = ${first} + ${q * L}u;`, o.load(q, `un${q}`));
    }
    for (let q = 0; q < n; q++) s.push(o.use(q, `un${q}`));
    return s.join("\n");
  };
  const out: string[] = [];
  if (steps > 0) {
    out.push(`  for (var i = 0u; i < ${steps}u; i++) {`, step(U, `lane + i * ${U * L}u`), "  }");
  }
  if (rounds > steps * U) {
    out.push(
      `  for (var i = ${steps * U}u; i < ${rounds}u; i++) {`,
      `    if (lane + i * ${L}u < ${o.units}u) {`,
      step(1, `lane + i * ${L}u`),
      "    }",
      "  }",
    );
  }
  return out.join("\n");
}

/**
 * WGSL summing each token row's accumulator `acc{t}` over the `lanes` lanes of a row through the
 * workgroup array `red` (256 f32), one barrier per token row: lane 0 of a row (thread `lid`, a
 * multiple of `lanes`) adds its row's partial sums `red[lid .. lid + lanes)` in lane order and
 * runs `store(t)` with the sum as `v` and `tok` the token row, where `valid` (a WGSL condition)
 * holds; token rows start at `wg.y · tokens`.
 */
export function laneReduce(tokens: number, lanes: number, valid: string, store: string): string {
  return Array.from({ length: tokens }, (_, t) =>
    `  red[lid] = acc${t};
  workgroupBarrier();
  if (lane == 0u && ${valid} && wg.y * ${tokens}u + ${t}u < st.T) {
    let tok = wg.y * ${tokens}u + ${t}u;
    var v = 0.0;
    for (var l = 0u; l < ${lanes}u; l++) { v += red[lid + l]; }
    ${store}
  }
${t < tokens - 1 ? "  workgroupBarrier();\n" : ""}`).join("");
}
