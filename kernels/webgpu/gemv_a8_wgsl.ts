/**
 * WGSL for matmuls whose activations are quantized at run time (SmoothQuant's W8A8, and W4A8 /
 * W2A8 with grouped integer weights):
 *
 * - {@linkcode quantizeActivationsShader}: per token row, SmoothQuant's
 *   `quantize_activation_per_token_absmax` (`scale = max(amax, 1e-5) / qmax`, codes
 *   `round(x / scale)`, ties to even) — the same recipe as `kernels/formats/runtime_quant.ts`.
 *   It writes the dequantized values `code · scale` to a second buffer (what the CPU reference
 *   multiplies, and what the float kernels read), and the codes packed four to a u32 for
 *   {@linkcode gemvA8Shader}, with each 32-element chunk's code sum and the row's scale after
 *   them ({@linkcode quantizedRowWords} words per row). For FP8 activations it writes only the
 *   dequantized values (vLLM's dynamic per-token scale and saturating cast, as on the CPU).
 * - {@linkcode gemvA8Shader}: decode GEMV on integer codes with `dot4I8Packed` (four 8-bit
 *   products and their sum in one instruction where the adapter has integer dot products). A
 *   weight word masked with `0x0f0f0f0f` (4-bit codes; `0x03030303` for 2-bit) holds four codes
 *   as bytes, so the activation codes are packed in the matching order: byte `j` of activation
 *   word `k` of a weight word is the word's element `j·per + k`, `per = 8 / bits`. 8-bit codes,
 *   stored unsigned, are made signed by flipping their top bits (`c ^ 0x80` is `c − 128`), and
 *   so are symmetric 4- and 2-bit codes ({@linkcode signedCodes}). A chunk's sum `d = Σ q·a` is
 *   exact in integers; zero points per group use the chunk's activation code sum, scales apply
 *   per chunk, and the row's activation scale once at the end. Whole iterations run without
 *   bounds checks; only a partial last one has them.
 *
 * @module
 */
import {
  CHUNK,
  constantZero,
  gemvA8Group,
  gemvA8Lanes,
  gemvA8Rows,
  gemvA8Unroll,
  type Layout,
  vectorWords,
  WORKGROUP,
} from "./pack.ts";
import { decoders, gemvReduceWgsl, gemvRowsWgsl, MATMUL_PARAMS, scaleExpr } from "./matmul_wgsl.ts";
import { FP8_E4M3, FP8_E5M2, type Minifloat } from "../formats/minifloat.ts";

/** Whether the integer-activation GEMV takes a layout (others use the float kernels). */
export function a8Supported(layout: Layout): boolean {
  return layout.element === "uint" && [2, 4, 8].includes(layout.bits) && layout.gshift >= 5;
}

/** u32 words of one quantized activation row: codes, chunk sums, the scale; vec4-aligned. */
export function quantizedRowWords(chunks: number): number {
  return Math.ceil((chunks * 9 + 1) / 4) * 4;
}

/** Activation code words per weight word of a layout with `bits`-bit codes. */
export function codesPerWord(bits: number): number {
  return 8 / bits;
}

/** Element formats of run-time activations: integers (`±qmax`) or OCP FP8. */
export type ActivationElement = "int" | "fp8" | "fp8_e5m2";

/** The OCP FP8 formats of run-time activations (`runtime_quant.ts` names). */
const FP8_FORMATS = { fp8: FP8_E4M3, fp8_e5m2: FP8_E5M2 } as const;

/**
 * WGSL `fp8(v)`: `v` rounded to the nearest FP8 value (ties to even), saturating at the largest
 * finite one — vLLM's saturating cast. Normal numbers round by adding half an ulp (plus the kept
 * bit, for ties to even) to the f32 bit pattern before truncating the mantissa; subnormals are
 * multiples of the smallest subnormal, rounded with `round` (ties to even).
 */
export function fp8Fn(format: Minifloat): string {
  const spec = { max: format.max, mantissa: format.mantissaBits, minExp: format.minExponent };
  const drop = 23 - spec.mantissa;
  const quantum = format.minSubnormal;
  return `fn fp8(v: f32) -> f32 {
  let a = min(abs(v), ${spec.max}.0);
  var r: f32;
  if (a < ${2 ** spec.minExp}) {
    r = round(a * ${1 / quantum}.0) * ${quantum};
  } else {
    let b = bitcast<u32>(a);
    r = bitcast<f32>((b + ${(1 << (drop - 1)) - 1}u + ((b >> ${drop}u) & 1u)) & ${
    (0xffffffff << drop) >>> 0
  }u);
  }
  r = min(r, ${spec.max}.0);
  return select(r, -r, v < 0.0);
}
`;
}

/** Packed activation words each quantization workgroup writes (one per thread). */
export const QUANTIZE_WORDS_PER_GROUP = WORKGROUP;

/**
 * Per-token dynamic quantization of `T` rows of `cols` activations, packed for weights of
 * `8 / per`-bit codes. Dispatch `(ceil(chunks · 8 / 256), T)`: every workgroup finds its row's
 * absolute maximum (the row is small and cached, so each reads all of it rather than waiting for
 * another dispatch), then each thread writes one packed word of four codes and their dequantized
 * values, and every 8 threads (one chunk) their code sum. Bindings: params `{cols, chunks,
 * xStride, xqStride, qmax}`, the step uniform, the activations, the packed output and the
 * dequantized rows (same row stride as the input).
 */
export function quantizeActivationsShader(per: number, element: ActivationElement = "int"): string {
  const fp8 = element === "int" ? undefined : FP8_FORMATS[element];
  const scaleLine = fp8
    ? `let scale = max(red[0] / ${fp8.max}.0, ${1 / (fp8.max * 512)});`
    : "let scale = max(red[0], 1e-5) / p.qmax;";
  const quantize = fp8
    ? `xd[xb + i] = fp8(x[xb + i] / scale) * scale;`
    : `q = clamp(round(x[xb + i] / scale), -p.qmax, p.qmax);
        xd[xb + i] = q * scale;`;
  return `${fp8 ? fp8Fn(fp8) : ""}
struct QP { cols: u32, chunks: u32, xStride: u32, xqStride: u32, qmax: f32 }
struct Step { T: u32, pos: u32, a: u32, b: u32 }
@group(0) @binding(0) var<uniform> p: QP;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> xq: array<u32>;
@group(0) @binding(4) var<storage, read_write> xd: array<f32>;
var<workgroup> red: array<f32, ${WORKGROUP}>;
var<workgroup> sums: array<i32, ${WORKGROUP}>;

fn xat(i: u32, base: u32) -> f32 {
  return select(0.0, x[base + min(i, p.cols - 1u)], i < p.cols);
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let t = wg.y;
  let xb = t * p.xStride;
  var m = 0.0;
  // Four independent loads per step keep the row's reads in flight together.
  for (var i = lid; i < p.cols; i += ${4 * WORKGROUP}u) {
    let a = abs(xat(i, xb));
    let b = abs(xat(i + ${WORKGROUP}u, xb));
    let c = abs(xat(i + ${2 * WORKGROUP}u, xb));
    let d = abs(xat(i + ${3 * WORKGROUP}u, xb));
    m = max(m, max(max(a, b), max(c, d)));
  }
  red[lid] = m;
  workgroupBarrier();
  for (var s = ${WORKGROUP / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  ${scaleLine}
  let j = wg.x * ${WORKGROUP}u + lid;
  let ob = t * p.xqStride;
  var sum = 0i;
  if (j < p.chunks * 8u) {
    let c = j / 8u;
    let wi = j % 8u;
    // Byte b of word wi holds the chunk's element (wi / per)·4·per + b·per + wi % per.
    let e0 = c * ${CHUNK}u + (wi / ${per}u) * ${4 * per}u + wi % ${per}u;
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {
      let i = e0 + b * ${per}u;
      var q = 0.0;
      if (i < p.cols) {
        ${quantize}
      }
      sum += i32(q);
      word |= (bitcast<u32>(i32(q)) & 0xffu) << (8u * b);
    }
    xq[ob + j] = word;
  }
  sums[lid] = sum;
  workgroupBarrier();
  if (j % 8u == 0u && j < p.chunks * 8u) {
    var total = 0i;
    for (var k = 0u; k < 8u; k++) { total += sums[lid + k]; }
    xq[ob + p.chunks * 8u + j / 8u] = bitcast<u32>(total);
  }
  if (j == 0u) { xq[ob + p.chunks * 9u] = bitcast<u32>(scale); }
}
`;
}

/**
 * Whether the kernel multiplies signed codes `q − zero` directly: a layout whose constant zero
 * point is `2^(bits−1)` (symmetric integers) has it as the top bit of each code, so flipping that
 * bit makes each code its two's complement `q − zero`, and shifting it to the top of its byte
 * makes a signed byte `2^(8−bits)·(q − zero)` for `dot4I8Packed` — no activation sums needed.
 * Others (zero points per group, offsets) subtract `zero · Σa` per chunk.
 */
export function signedCodes(layout: Layout): boolean {
  return constantZero(layout) && layout.zero === 1 << (layout.bits - 1) && !layout.gemvXsum;
}

/** The factor signed codes carry (`2^(8−bits)`), undone once per row; 1 otherwise. */
function codeFactor(layout: Layout): number {
  return signedCodes(layout) ? 2 ** (8 - layout.bits) : 1;
}

/** Whether chunk sums of the activation codes enter the kernel's arithmetic. */
function usesXsum(layout: Layout): boolean {
  return !signedCodes(layout) && (layout.bits === 8 || layout.scale === "f16zero" ||
    layout.scale === "f16min" || constantZero(layout));
}

/** WGSL for the `k`-th code field of a weight word as four bytes for `dot4I8Packed`. */
function codeBytes(layout: Layout, word: string, k: number): string {
  const bits = layout.bits;
  if (bits === 8) return `(${word} ^ 0x80808080u)`;
  if (signedCodes(layout)) {
    // Flip each code's top bit, then move field k to the top of its byte.
    const flipped = `(${word} ^ ${bits === 4 ? "0x88888888u" : "0xaaaaaaaau"})`;
    const shift = 8 - bits - k * bits;
    const top = bits === 4 ? "0xf0f0f0f0u" : "0xc0c0c0c0u";
    return shift === 0 ? `(${flipped} & ${top})` : `((${flipped} << ${shift}u) & ${top})`;
  }
  const mask = bits === 4 ? "0x0f0f0f0fu" : "0x03030303u";
  return k === 0 ? `(${word} & ${mask})` : `((${word} >> ${k * bits}u) & ${mask})`;
}

/** WGSL statements adding row `r`'s chunk `u` to `acc<r>` (weights in `v<r>_<u>_<i>`). */
function chunkTerms(layout: Layout, r: number, u: number, checked: boolean): string[] {
  const bits = layout.bits;
  const per = codesPerWord(bits);
  const V = vectorWords(bits);
  const terms: string[] = [];
  for (let w = 0; w < bits; w++) {
    const v = `v${r}_${u}_${Math.floor(w / V)}`;
    const word = V === 1 ? v : `${v}.${"xyzw"[w % V]}`;
    for (let k = 0; k < per; k++) {
      const a = w * per + k; // activation word of the chunk
      const act = `xa${u}_${Math.floor(a / 4)}.${"xyzw"[a % 4]}`;
      terms.push(`dot4I8Packed(${codeBytes(layout, word, k)}, ${act})`);
    }
  }
  const xsum = `xsum${u}`;
  const d = `d${r}_${u}`;
  const unsigned8 = bits === 8 && !signedCodes(layout);
  const lines = [
    `      let ${d} = f32(${terms.join(" + ")})${unsigned8 ? ` + 128.0 * ${xsum}` : ""};`,
  ];
  const idx = `row${r} * p.groups + gi${u}`;
  const dz = constantZero(layout) && !signedCodes(layout)
    ? `(${d} - ${layout.zero}.0 * ${xsum})`
    : d;
  let term: string;
  switch (layout.scale) {
    case "f16zero":
      lines.push(`      let sz${r}_${u} = ${scaleExpr(layout, idx)};`);
      term = `sz${r}_${u}.x * (${d} - sz${r}_${u}.y * ${xsum})`;
      break;
    case "f16min":
      lines.push(`      let sz${r}_${u} = ${scaleExpr(layout, idx)};`);
      term = `sz${r}_${u}.x * ${d} + sz${r}_${u}.y * ${xsum}`;
      break;
    case "none":
      term = dz;
      break;
    default:
      term = `${scaleExpr(layout, `(${idx})`)} * ${dz}`;
  }
  lines.push(`      acc${r} += ${checked ? `select(0.0, ${term}, ok${u})` : term};`);
  return lines;
}

/**
 * The integer-activation GEMV of a layout (see the module notes). Bindings as the float GEMV's,
 * with binding 2 the packed activation rows of {@linkcode quantizeActivationsShader} (`xStride`
 * in the params is their stride in u32 words). Dispatch `(ceil(rows / gemvA8RowsPerGroup), T)`. Each
 * thread takes `U` chunks per iteration (`U·tpr` apart), issuing all their weight loads first.
 */
export function gemvA8Shader(layout: Layout): string {
  if (!a8Supported(layout)) throw new RangeError(`No integer-activation GEMV for this layout`);
  const R = gemvA8Rows(layout);
  const U = gemvA8Unroll(layout);
  const TPR = gemvA8Lanes(layout);
  const WG = gemvA8Group(layout);
  const RPW = WG / TPR;
  const IL = layout.tpr;
  const V = vectorWords(layout.bits);
  const NV = layout.bits / V;
  const vt = V === 4 ? "vec4<u32>" : "vec2<u32>";
  const factor = codeFactor(layout) === 1 ? "" : ` * ${1 / codeFactor(layout)}`;
  /** One iteration's statements; `checked` for the last one when it is partial. */
  const iteration = (checked: boolean): string[] => {
    const body: string[] = [];
    for (let u = 0; u < U; u++) {
      const c = `c${u}`;
      if (checked) {
        body.push(`      let ok${u} = s0 + ${u * TPR}u + lane < p.chunks;`);
        body.push(`      let ${c} = min(s0 + ${u * TPR}u + lane, p.chunks - 1u);`);
      } else {
        body.push(`      let ${c} = s0 + ${u * TPR}u + lane;`);
      }
      // With one vector per chunk the interleave is the identity: chunk c is vector c of its row.
      if (NV === 1) {
        for (let r = 0; r < R; r++) {
          body.push(`      let v${r}_${u}_0 = wq[row${r} * p.chunks + ${c}];`);
        }
        continue;
      }
      // The interleave's step of this chunk and the chunks in that step.
      body.push(`      let step${u} = ${c} - ${c} % ${IL}u;`);
      body.push(`      let width${u} = min(${IL}u, p.chunks - step${u});`);
      for (let r = 0; r < R; r++) {
        body.push(
          `      let b${r}_${u} = (row${r} * p.chunks + step${u}) * ${NV}u + ${c} % ${IL}u;`,
        );
        for (let v = 0; v < NV; v++) {
          body.push(`      let v${r}_${u}_${v} = wq[b${r}_${u} + ${v}u * width${u}];`);
        }
      }
    }
    for (let u = 0; u < U; u++) {
      body.push(`      let xa${u}_0 = xq[(xb >> 2u) + c${u} * 2u];`);
      body.push(`      let xa${u}_1 = xq[(xb >> 2u) + c${u} * 2u + 1u];`);
      if (usesXsum(layout)) {
        body.push(`      let xsum${u} = f32(bitcast<i32>(xword(xb + p.chunks * 8u + c${u})));`);
      }
      body.push(`      let gi${u} = (c${u} * ${CHUNK}u) >> p.gshift;`);
    }
    for (let u = 0; u < U; u++) {
      for (let r = 0; r < R; r++) body.push(...chunkTerms(layout, r, u, checked));
    }
    return body;
  };
  // Whole iterations need no bounds checks; a partial last one has them.
  const loop = `  let full = p.chunks - p.chunks % ${U * TPR}u;
  for (var s0 = 0u; s0 < full; s0 += ${U * TPR}u) {
${iteration(false).join("\n")}
  }
  if (full < p.chunks) {
    let s0 = full;
${iteration(true).join("\n")}
  }`;
  return `${MATMUL_PARAMS}
@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> wq: array<${vt}>;
var<workgroup> red: array<f32, ${R * WG}>;
${decoders(layout)}
fn xword(i: u32) -> u32 {
  return xq[i >> 2u][i & 3u];
}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let t = wg.y;
  let lane = lid % ${TPR}u;
  let rowBase = (wg.x * ${RPW}u + lid / ${TPR}u) * ${R}u;
  let xb = t * p.xStride;
${gemvRowsWgsl(R)}
  // The row's activation scale, loaded before the loop so the end does not wait for it.
  let f = bitcast<f32>(xword(xb + p.chunks * 9u)) * p.tscale${factor};
${loop}
${gemvReduceWgsl(R, WG, TPR)}
}
`;
}
