/**
 * WGSL for `out[t][r] (+)= tensorScale · Σ_k x[t][k] · W[r][k]` over weights in a
 * {@linkcode Layout}, dequantized inside the kernel:
 *
 * - {@linkcode gemvShader} (decode, a few token rows): `tpr` threads share a row, each taking
 *   whole 32-element chunks (vectorised loads of the interleaved layout) for `R` rows at once, so
 *   every activation chunk is loaded once per `R` rows; partial sums meet in a workgroup
 *   reduction. Integer codes of 2, 4 and 8 bits become floats without conversion instructions:
 *   a code masked in place and OR-ed into the mantissa of 2^23 is `2^23 + q·2^p` exactly, and the
 *   activation is pre-scaled by `2^-p`. Zero points and minima are applied once per group
 *   through the group's activation sum (`s·(Σxq − z·Σx)`).
 *
 * The prefill GEMM (`gemm_wgsl.ts`) reads the same bindings, so one bind group serves either
 * pipeline.
 *
 * @module
 */
import {
  CHUNK,
  constantZero,
  gemvRowsPerThread,
  type Layout,
  vectorWords,
  WORKGROUP,
} from "./pack.ts";
import {
  combineDeclarationsWgsl,
  combinePrologueWgsl,
  type CombineShape,
  GemvCombineError,
} from "./gemv_combine_wgsl.ts";

/** Uniform block shared by the matmul kernels (12 words). */
export const MATMUL_PARAMS = `
struct MP {
  rows: u32, cols: u32, chunks: u32, groups: u32,
  gshift: u32, xOff: u32, xStride: u32, outOff: u32,
  outStride: u32, outPosStride: u32, accumulate: u32, tscale: f32,
}
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: MP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(4) var<storage, read> sc: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
`;

/** Exponent bits, mantissa bits, bias and special values of the OCP minifloats. */
const MINIFLOAT_SPECS = {
  e2m1: [2, 1, 1, "none"],
  e2m3: [2, 3, 1, "none"],
  e3m2: [3, 2, 3, "none"],
  e4m3: [4, 3, 7, "fn"],
  e5m2: [5, 2, 15, "ieee"],
} as const;

/**
 * WGSL decoder `el_<kind>(code) -> f32` of a minifloat, built from the f32 bit pattern: the
 * magnitude shifted into the mantissa with the exponent rebiased (normal numbers), or
 * `mag · 2^(1 − bias − M)` (subnormals); `fn` types have NaN at all-ones, `ieee` ones infinities
 * and NaNs at the top exponent.
 */
function minifloatFn(kind: keyof typeof MINIFLOAT_SPECS): string {
  const [E, M, B, special] = MINIFLOAT_SPECS[kind];
  const magMask = (1 << (E + M)) - 1;
  const top = ((1 << E) - 1) << M;
  const specials = special === "fn"
    ? `  if (m == ${magMask}u) { v = bitcast<f32>(0x7f800000u | m); }\n`
    : special === "ieee"
    ? `  if (m >= ${top}u) { v = bitcast<f32>(0x7f800000u | ((m & ${(1 << M) - 1}u) << ${
      23 - M
    }u)); }\n`
    : "";
  return `fn el_${kind}(c: u32) -> f32 {
  let m = c & ${magMask}u;
  var v = select(bitcast<f32>((m << ${23 - M}u) + (${127 - B}u << 23u)), f32(m) * ${
    2 ** (1 - B - M)
  }, m < ${1 << M}u);
${specials}  return select(v, -v, (c & ${1 << (E + M)}u) != 0u);
}
`;
}

const E8M0_FN = `fn e8m0(e: u32) -> f32 {
  if (e == 255u) { return bitcast<f32>(0x7fc00000u | e); }
  if (e == 0u) { return bitcast<f32>(0x00400000u); }
  return bitcast<f32>(e << 23u);
}
`;

const HALF_FNS = `fn el_f16(c: u32) -> f32 {
  return unpack2x16float(c).x;
}
fn el_bf16(c: u32) -> f32 {
  return bitcast<f32>(c << 16u);
}
`;

/** Helper functions a layout's kernels need. */
export function decoders(layout: Layout): string {
  if (layout.element === "f16" || layout.element === "bf16") return HALF_FNS;
  const kinds = new Set<string>();
  if (layout.element !== "uint" && layout.element !== "f32") kinds.add(layout.element);
  if (layout.scale === "e4m3") kinds.add("e4m3");
  return [...kinds].map((k) => minifloatFn(k as keyof typeof MINIFLOAT_SPECS)).join("") +
    (layout.scale === "e8m0" ? E8M0_FN : "");
}

/** Name of the WGSL function turning a layout's code into its element value. */
export function elementFn(layout: Layout): string {
  return layout.element === "uint" ? "f32" : `el_${layout.element}`;
}

/** WGSL expression of the scale of group entry `idx` (and its zero/min as `.y`). */
export function scaleExpr(layout: Layout, idx: string): string {
  switch (layout.scale) {
    case "f16":
      return `unpack2x16float(sc[${idx} >> 1u])[${idx} & 1u]`;
    case "bf16":
      return `bitcast<f32>(((sc[${idx} >> 1u] >> (16u * (${idx} & 1u))) & 0xffffu) << 16u)`;
    case "f32":
      return `bitcast<f32>(sc[${idx}])`;
    case "f16zero":
    case "f16min":
      return `unpack2x16float(sc[${idx}])`;
    case "e8m0":
      return `e8m0((sc[${idx} >> 2u] >> (8u * (${idx} & 3u))) & 0xffu)`;
    case "e4m3":
      return `el_e4m3((sc[${idx} >> 2u] >> (8u * (${idx} & 3u))) & 0xffu)`;
    case "none":
      return "1.0";
  }
}

/** Code `e` of a chunk whose words are named `w0…`, as a WGSL u32 expression. */
export function codeExpr(bits: number, e: number): string {
  const bit = e * bits;
  const w = bit >> 5;
  const sh = bit & 31;
  const mask = `0x${((1 << bits) - 1).toString(16)}u`;
  if (sh + bits <= 32) return sh === 0 ? `(w${w} & ${mask})` : `((w${w} >> ${sh}u) & ${mask})`;
  return `(((w${w} >> ${sh}u) | (w${w + 1} << ${32 - sh}u)) & ${mask})`;
}

/** Whether the mantissa trick applies: codes that never straddle a 16-bit half. */
function magic(layout: Layout): boolean {
  return layout.element === "uint" && (layout.bits === 2 || layout.bits === 4 ||
    layout.bits === 8);
}

/**
 * WGSL vec4s `2^-p` by which the magic path scales a chunk's activations `4j … 4j + 3`, for
 * codes sitting `p` bits up in their 16-bit half.
 */
function prescaleVectors(bits: number): string[] {
  const perHalf = 16 / bits;
  return Array.from({ length: 8 }, (_, j) => {
    const ps = [0, 1, 2, 3].map((i) => `${2 ** -(bits * ((4 * j + i) % (32 / bits) % perHalf))}`);
    return `vec4<f32>(${ps.join(", ")})`;
  });
}

/** Elements per scale group inside a chunk (a chunk holds `32 / sub` groups). */
function subWidth(layout: Layout): number {
  return Math.min(CHUNK, 2 ** layout.gshift);
}

function vecType(V: number): string {
  return V === 4 ? "vec4<u32>" : V === 2 ? "vec2<u32>" : "u32";
}

/** The dot product of this thread's chunk of row `r` with its activations, as WGSL. */
function chunkDot(layout: Layout, r: number, SUB: number, E: number): string[] {
  const W = layout.bits;
  const V = vectorWords(W);
  const lines: string[] = [];
  const v = (i: number) => `v${r}_${i}`;
  if (layout.element === "f32") {
    const terms = Array.from(
      { length: 8 },
      (_, j) => `dot(x${j}, bitcast<vec4<f32>>(${v(j)}))`,
    );
    return [`    acc${r} += select(0.0, ${terms.join(" + ")}, ok);`];
  }
  for (let w = 0; w < W; w++) {
    const comp = V === 1 ? v(w) : `${v(Math.floor(w / V))}.${"xyzw"[w % V]}`;
    lines.push(`      let w${w} = ${comp};`);
    if (magic(layout)) lines.push(`      let h${w} = w${w} >> 16u;`);
  }
  const parts: string[] = [];
  for (let s = 0; s < SUB; s++) {
    const terms: string[] = [];
    for (let j = s * (E / 4); j < (s + 1) * (E / 4); j++) {
      if (magic(layout)) {
        const perWord = 32 / layout.bits;
        const perHalf = 16 / layout.bits;
        const src: string[] = [];
        const masks: string[] = [];
        for (let i = 0; i < 4; i++) {
          const e = 4 * j + i;
          const pos = e % perWord;
          src.push(`${pos >= perHalf ? "h" : "w"}${Math.floor(e / perWord)}`);
          const mask = ((1 << layout.bits) - 1) << (layout.bits * (pos % perHalf));
          masks.push(`0x${mask.toString(16)}u`);
        }
        terms.push(
          `dot(y${j}, bitcast<vec4<f32>>((vec4<u32>(${src.join(", ")}) & vec4<u32>(${
            masks.join(", ")
          })) | vec4<u32>(0x4b000000u)) - vec4<f32>(8388608.0))`,
        );
      } else {
        const f = elementFn(layout);
        const vals = [0, 1, 2, 3].map((i) => `${f}(${codeExpr(layout.bits, 4 * j + i)})`);
        terms.push(`dot(x${j}, vec4<f32>(${vals.join(", ")}))`);
      }
    }
    lines.push(`      let d${s} = ${terms.join(" + ")};`);
    const idx = `(row${r} * p.groups + gi${s})`;
    const dz = constantZero(layout) ? `(d${s} - ${layout.zero}.0 * xsum${s})` : `d${s}`;
    switch (layout.scale) {
      case "f16zero":
        lines.push(`      let sz${s} = ${scaleExpr(layout, idx)};`);
        parts.push(`sz${s}.x * (d${s} - sz${s}.y * xsum${s})`);
        break;
      case "f16min":
        lines.push(`      let sz${s} = ${scaleExpr(layout, idx)};`);
        parts.push(`sz${s}.x * d${s} + sz${s}.y * xsum${s}`);
        break;
      case "none":
        parts.push(dz);
        break;
      default:
        parts.push(`${scaleExpr(layout, idx)} * ${dz}`);
    }
  }
  return [`    {`, ...lines, `      acc${r} += select(0.0, ${parts.join(" + ")}, ok);`, `    }`];
}

/**
 * WGSL staging a GEMV step's activations (`TPR` chunks) in workgroup memory — coalesced loads,
 * padded so that each thread's reads of its own chunk hit distinct banks — then reading this
 * thread's chunk from there as `x0 … x7`.
 */
/**
 * What a float GEMV's activations are: the input row (`plain`), an RMSNorm of it (`norm`: times
 * the norm's weights here, by `1/rms` at the end) or SwiGLU of a stacked `[gate | up]` row
 * (`swiglu`: the row is twice `cols` long), or split decode attention's partial results, combined
 * as they load (`combine`, one token only: `gemv_combine_wgsl.ts`).
 */
export type GemvInput = "plain" | "norm" | "swiglu" | "combine";

/** WGSL of the vec4 of activations at column `c` (a multiple of 4) from the aligned row. */
function alignedX(input: GemvInput, c: string): string {
  const x = `x[(xBase + ${c}) >> 2u]`;
  return input === "combine"
    ? `cx4(${c})`
    : input === "norm"
    ? `${x} * gw[(${c}) >> 2u]`
    : input === "swiglu"
    ? `sw4(${x}, x[(xBase + p.cols + ${c}) >> 2u])`
    : x;
}

/** WGSL of the activation at column `c`, bounds-checked (0 past the row). */
function scalarX(input: GemvInput, c: string): string {
  const x = `xa(xBase + ${c}, lim)`;
  return input === "combine"
    ? `cx(${c})`
    : input === "norm"
    ? `${x} * gn(${c})`
    : input === "swiglu"
    ? `sw(${x}, xa(xBase + p.cols + ${c}, lim + p.cols))`
    : x;
}

function stagedActivations(TPR: number, prescaled: boolean, input: GemvInput): string[] {
  const XS = TPR + 1;
  const lines: string[] = [];
  lines.push(`    for (var q = lid; q < ${8 * TPR}u; q += ${WORKGROUP}u) {`);
  lines.push(`      let e0 = (s0 + q / 8u) * ${CHUNK}u + (q % 8u) * 4u;`);
  lines.push(`      var xv: vec4<f32>;`);
  lines.push(`      if (aligned && e0 + 4u <= p.cols) {`);
  lines.push(`        xv = ${alignedX(input, "e0")};`);
  lines.push(`      } else {`);
  const each = [0, 1, 2, 3].map((i) => scalarX(input, i ? `e0 + ${i}u` : "e0"));
  lines.push(`        xv = vec4<f32>(${each.join(", ")});`);
  lines.push(`      }`);
  if (prescaled) {
    lines.push(`      xs[(q % 8u) * ${XS}u + q / 8u] = xv * PS[q % 8u];`);
    lines.push(`      xp[(q % 8u) * ${XS}u + q / 8u] = dot(xv, vec4<f32>(1.0));`);
  } else {
    lines.push(`      xs[(q % 8u) * ${XS}u + q / 8u] = xv;`);
  }
  lines.push(`    }`);
  lines.push(`    workgroupBarrier();`);
  for (let j = 0; j < 8; j++) {
    lines.push(`    let ${prescaled ? "y" : "x"}${j} = xs[${j * XS}u + lane];`);
  }
  return lines;
}

/**
 * WGSL loading this thread's chunk of activations as `x0 … x7` straight from the storage buffer
 * (the chunk's 128 bytes, from the cache after the first row group asks): no workgroup memory
 * and no barriers (`gemvDirect`).
 */
function directActivations(input: GemvInput): string[] {
  const lines: string[] = [];
  const xs = Array.from({ length: 8 }, (_, j) => `x${j}`);
  lines.push(`    let c0 = (cl + s0) * ${CHUNK}u;`);
  lines.push(`    var ${xs.join(": vec4<f32>;\n    var ")}: vec4<f32>;`);
  lines.push(`    if (aligned && (cl + s0 + 1u) * ${CHUNK}u <= p.cols) {`);
  for (let j = 0; j < 8; j++) lines.push(`      x${j} = ${alignedX(input, `c0 + ${4 * j}u`)};`);
  lines.push(`    } else {`);
  for (let j = 0; j < 8; j++) {
    const e = (i: number) => scalarX(input, `c0 + ${4 * j + i}u`);
    lines.push(`      x${j} = vec4<f32>(${[0, 1, 2, 3].map(e).join(", ")});`);
  }
  lines.push(`    }`);
  return lines;
}

/**
 * WGSL of the fused RMSNorm's prologue: the workgroup sums the squares of its token row (in
 * `red`, before the rows' sums need it) and scales the output factor `f` by `1/sqrt(mean + eps)`;
 * the activation loads multiply by the norm's weights (`gw`, with `eps` in the vec4 past them).
 */
function normPrologue(): string {
  return `  var ss = 0.0;
  for (var i = lid; i < p.cols; i += ${WORKGROUP}u) {
    let v = xa(xBase + i, lim);
    ss += v * v;
  }
  red[lid] = ss;
  workgroupBarrier();
  for (var s = ${WORKGROUP / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(red[0] / f32(p.cols) + gw[(p.cols + 3u) / 4u].x);
  workgroupBarrier();
  let f = p.tscale * inv;`;
}

/**
 * The GEMV kernel for a layout. Dispatch `(ceil(rows / (R·256/tpr)), T)` workgroups; token `t` is
 * the workgroup's `y`. Each step covers `tpr` chunks of every row: a thread first issues the
 * weight loads of its chunk for its `R` rows, the workgroup stages the step's activations in
 * workgroup memory ({@linkcode stagedActivations}; or each thread loads its own,
 * {@linkcode directActivations}), and the thread then dots its rows with them. With `swiglu`, the
 * input is a stacked `[gate | up]` row (stride `2·cols`) and the kernel applies SwiGLU as it
 * loads it. With `norm`, the input is the RMSNorm's input and binding 6 its weights and `eps` (`Kernels.matmul`'s `norm`): the
 * kernel normalizes the row itself ({@linkcode normPrologue}), so a decode step needs no RMSNorm
 * dispatch; the sum is `inv · Σ W·(weight ⊙ x)`, the CPU's `Σ W·(weight · (inv · x))` up to float32
 * rounding. With `combine` (and its shape), binding 2 holds split decode attention's partial
 * results, which the kernel combines as it loads them (`gemv_combine_wgsl.ts`; `T` = 1 only).
 */
export function gemvShader(
  layout: Layout,
  input: GemvInput = "plain",
  combine?: CombineShape,
): string {
  const norm = input === "norm";
  if ((input === "combine") !== (combine !== undefined)) {
    throw new GemvCombineError(
      `A GEMV input "${input}" needs a combine shape exactly when combined`,
    );
  }
  const R = gemvRowsPerThread(layout);
  const TPR = layout.tpr;
  const RPW = WORKGROUP / TPR;
  const W = layout.bits;
  const V = vectorWords(W);
  const NV = W / V;
  const E = subWidth(layout);
  const SUB = CHUNK / E;
  const lines: string[] = [];
  lines.push(`    let c = s0 + lane;`);
  lines.push(`    let ok = c < p.chunks;`);
  lines.push(`    let cl = min(c, p.chunks - 1u) - s0;`);
  lines.push(`    let width = min(${TPR}u, p.chunks - s0);`);
  for (let r = 0; r < R; r++) {
    lines.push(`    let b${r} = (row${r} * p.chunks + s0) * ${NV}u + cl;`);
    for (let v = 0; v < NV; v++) lines.push(`    let v${r}_${v} = wq[b${r} + ${v}u * width];`);
  }
  // Activations pre-scaled by 2^-p for codes sitting p bits up in their 16-bit half.
  const prescale = magic(layout) ? prescaleVectors(layout.bits) : undefined;
  const prescaled = prescale !== undefined && !layout.gemvDirect && layout.gemvPrescale === true;
  if (layout.gemvDirect) lines.push(...directActivations(input));
  else lines.push(...stagedActivations(TPR, prescaled, input));
  if (prescale && !prescaled) {
    for (let j = 0; j < 8; j++) lines.push(`    let y${j} = x${j} * ${prescale[j]};`);
  }
  for (let s = 0; s < SUB; s++) {
    const js = Array.from({ length: E / 4 }, (_, i) => s * (E / 4) + i);
    if (prescaled) {
      const sums = js.map((j) => `xp[${j * (TPR + 1)}u + lane]`);
      lines.push(`    let xsum${s} = ${sums.join(" + ")};`);
    } else if (layout.element === "uint") {
      lines.push(`    let xsum${s} = dot(${js.map((j) => `x${j}`).join(" + ")}, vec4<f32>(1.0));`);
    }
    lines.push(`    let gi${s} = ((cl + s0) * ${CHUNK}u + ${s * E}u) >> p.gshift;`);
  }
  for (let r = 0; r < R; r++) lines.push(...chunkDot(layout, r, SUB, E));
  // The next step's staging must not overwrite activations a slower thread still reads.
  if (!layout.gemvDirect) lines.push(`    workgroupBarrier();`);
  const staging = layout.gemvDirect
    ? ""
    : `var<workgroup> xs: array<vec4<f32>, ${8 * (TPR + 1)}>;\n` + (prescaled
      ? `var<workgroup> xp: array<f32, ${8 * (TPR + 1)}>;
const PS = array<vec4<f32>, 8>(${prescale.join(", ")});\n`
      : "");
  return `${MATMUL_PARAMS}
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> wq: array<${vecType(V)}>;
${staging}var<workgroup> red: array<f32, ${R * WORKGROUP}>;
${decoders(layout)}
fn xa(i: u32, lim: u32) -> f32 {
  let j = min(i, lim - 1u);
  return select(0.0, x[j >> 2u][j & 3u], i < lim);
}
${
    norm
      ? `@group(0) @binding(6) var<storage, read> gw: array<vec4<f32>>;
fn gn(i: u32) -> f32 {
  let j = min(i, p.cols - 1u);
  return select(0.0, gw[j >> 2u][j & 3u], i < p.cols);
}
`
      : combine
      ? combineDeclarationsWgsl(combine)
      : input === "swiglu"
      ? `// SWIGLU_WGSL's arithmetic, so the values equal the SwiGLU dispatch's.
fn sw(g: f32, u: f32) -> f32 { return g / (1.0 + exp(-g)) * u; }
fn sw4(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> { return g / (vec4<f32>(1.0) + exp(-g)) * u; }
`
      : ""
  }
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let t = wg.y;
  let lane = lid % ${TPR}u;
  let rowBase = (wg.x * ${RPW}u + lid / ${TPR}u) * ${R}u;
  let xBase = p.xOff + t * p.xStride;
  let lim = xBase + p.cols;
  let aligned = ((xBase${input === "swiglu" ? " | p.cols" : ""}) & 3u) == 0u;
${norm ? normPrologue() : "  let f = p.tscale;"}
${combine ? combinePrologueWgsl(combine, WORKGROUP) : ""}
${gemvRowsWgsl(R)}
  for (var s0 = 0u; s0 < p.chunks; s0 += ${TPR}u) {
${lines.join("\n")}
  }
${gemvReduceWgsl(R, WORKGROUP, TPR)}
}
`;
}

/** WGSL declaring a GEMV thread's `R` rows (`row<r>`, clamped) and accumulators (`acc<r>`). */
export function gemvRowsWgsl(R: number): string {
  return Array.from(
    { length: R },
    (_, r) => `  let row${r} = min(rowBase + ${r}u, p.rows - 1u);\n  var acc${r} = 0.0;`,
  ).join("\n");
}

/**
 * WGSL ending a GEMV: the `acc<r>` of the `tpr` threads sharing rows meet in a tree reduction in
 * `red` (workgroup memory of `R · group` floats), and lane 0 writes each row's sum times `f` (a
 * WGSL f32 the kernel defined before its loop, so that any load behind it is not waited for at
 * the end), added to the output where `p.accumulate` asks for it (the only read of the output).
 */
export function gemvReduceWgsl(R: number, group: number, tpr: number): string {
  const each = (line: (r: number) => string) => Array.from({ length: R }, (_, r) => line(r));
  return `${each((r) => `  red[${r}u * ${group}u + lid] = acc${r};`).join("\n")}
  workgroupBarrier();
  for (var s = ${tpr / 2}u; s > 0u; s >>= 1u) {
    if (lane < s) {
${each((r) => `      red[${r}u * ${group}u + lid] += red[${r}u * ${group}u + lid + s];`).join("\n")}
    }
    workgroupBarrier();
  }
  if (lane == 0u) {
    let ob = p.outOff + st.pos * p.outPosStride + t * p.outStride;
${
    each((r) =>
      `    if (rowBase + ${r}u < p.rows) {
      let o = ob + rowBase + ${r}u;
      var y = red[${r}u * ${group}u + lid] * f;
      if (p.accumulate != 0u) { y = out[o] + y; }
      out[o] = y;
    }`
    ).join("\n")
  }
  }`;
}

/** Workgroup memory the GEMV kernel of a layout uses, in bytes. */
export function gemvWorkgroupBytes(layout: Layout): number {
  const prescaled = magic(layout) && layout.gemvPrescale === true;
  const staging = layout.gemvDirect ? 0 : 8 * (layout.tpr + 1) * (prescaled ? 20 : 16);
  return staging + gemvRowsPerThread(layout) * WORKGROUP * 4;
}
