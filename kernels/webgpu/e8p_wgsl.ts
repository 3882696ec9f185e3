/**
 * WGSL for the middle step of QuIP#'s matmul (`kernels/formats/e8p_format.ts`): `z[t][r] =
 * Σ_j ĉ(r, j) · u[t][8j .. 8j + 8)`, with `u` the input after its signs and Hadamard transform
 * (`hadamard_wgsl.ts`) and `ĉ` the E8P12 codeword of code `(r, j)` (plus the residual codeword
 * divided by ρ for `e8p12-rvq3`/`-rvq4`), decoded in the kernel from the 256 absolute patterns
 * ({@linkcode e8pTable}: eight `|v|` as f16 and the pattern's parity, in workgroup memory) and the
 * code's sign byte, as `e8p_codebook.ts` defines it; signs are applied by flipping f32 sign bits.
 *
 * Laid out for NVIDIA-like GPUs, where private arrays indexed by a loop variable live in off-chip
 * local memory: the generator unrolls everything over compile-time constants, so a codeword is two
 * `vec4<f32>` registers and each token row one scalar accumulator. `lanes` lanes share a row
 * (`256 / lanes` rows a workgroup of 256; {@linkcode E8P_LANES} = 8 by default, the layout knob
 * `codebookLanes` sets 4, 16, 32 or another power of two for the perf sweep, and the default stays
 * 8 until a sweep on the GPU says otherwise); a lane reads a *unit*, one u32 code word (2
 * codewords), and neighbouring lanes read neighbouring words. One word a lane keeps a lane's 16
 * input floats within half a 128-byte line, so a warp's `vec4<f32>` input load (with 8 lanes: 8
 * lanes of a row, 4 rows reading the same addresses) touches 4 lines, not one a lane as a
 * `vec4<u32>` unit (64 input floats a lane) would. Each lane takes `unroll` units a step, their
 * loads issued together; whole steps run without bounds checks, then a guarded loop for the units
 * left and one guarded codeword past the last whole unit (partial where `cols % 8 ≠ 0`). The input
 * is read as `vec4<f32>` where `cols % 4 = 0`. The 256 patterns sit in workgroup memory (the E81B
 * grid of `rvq3` too with `shared`); the lanes of a row meet through a 256-float buffer, one
 * barrier per token row.
 *
 * Bindings: 0 params (`CODEBOOK_PARAMS`), 1 `Step`, 2 u (rows of `cols`), 3 codes, 4 the table
 * words (then E81B as f32 bits), 5 z (rows of `rows`), 6 residual codes. Dispatch
 * `(⌈rows / (256 / lanes)⌉, ⌈T / TT⌉, 1)` (`rowsPerWorkgroup`, `codebook_epilogue_wgsl.ts`).
 *
 * @module
 */
import { E81B_GRID, E8P_ABS, E8P_RVQ } from "../formats/e8p_codebook.ts";
import {
  CODEBOOK_PARAMS,
  laneReduce,
  laneSteps,
  rowsPerWorkgroup,
} from "./codebook_epilogue_wgsl.ts";

/** Lanes sharing a row by default (the option `lanes` of {@linkcode E8pShaderOptions}). */
export const E8P_LANES = 8;

/** What the E8P shader is built for. */
export interface E8pShaderOptions {
  rvq: 0 | 3 | 4;
  rowWords: number;
  secondWords: number;
  cols: number;
  tokens: number;
  /** The E81B grid of `rvq3` in workgroup memory too (else read through the cache). */
  shared: boolean;
  /** Units (see the module notes) a lane takes per step (default {@linkcode e8pUnroll}). */
  unroll?: number;
  /** Lanes sharing a row, a power of two up to 256 (default {@linkcode E8P_LANES}). */
  lanes?: number;
}

/**
 * Units per lane and step by default: 8 code words in flight when decoding (one token row), 2 for
 * prefill, whose 8 token rows a unit already give the lane work (and take registers).
 */
export function e8pUnroll(tokens: number): number {
  return tokens > 1 ? 2 : 8;
}

/** The cache key of {@linkcode e8pShader}. */
export function e8pKey(o: E8pShaderOptions): string {
  return `e8p:rvq${o.rvq}:w${o.rowWords}:${o.secondWords}:c${o.cols}:t${o.tokens}:` +
    `u${o.unroll ?? e8pUnroll(o.tokens)}:` +
    (o.shared ? "shared" : "cache") +
    // Default lanes keep the key (and the shader's first line) as it was before the knob.
    ((o.lanes ?? E8P_LANES) === E8P_LANES ? "" : `:l${o.lanes}`);
}

/**
 * The decoder's table: for each of the 256 absolute patterns, its eight `|v|` as f16 (four words,
 * coordinate 2i in the low half of word i), the sign bit of coordinate 0's half (free: `|v| ≥ 0`)
 * set where the pattern's `Σ |v|` is not a multiple of 2; then (for `rvq3`) the E81B grid as f32 bits.
 */
export function e8pTable(rvq: 0 | 3 | 4): Uint32Array {
  const out = new Uint32Array(E8P_TABLE_WORDS + (rvq === 3 ? 256 * 8 : 0));
  // |v| ∈ {0, 0.5, … 3.5}: the f16 bits of n/2 for n = 2|v| < 8.
  const half = (n: number) => (n === 0 ? 0 : ((Math.floor(Math.log2(n / 2)) + 15) << 10) +
    Math.round((n / 2 / 2 ** Math.floor(Math.log2(n / 2)) - 1) * 1024));
  for (let k = 0; k < 256; k++) {
    let sum = 0;
    for (let i = 0; i < 8; i++) {
      const v = E8P_ABS[8 * k + i]!;
      sum += v;
      out[4 * k + (i >> 1)]! |= half(2 * v) << (16 * (i & 1));
    }
    if (sum % 2) out[4 * k]! |= 0x8000;
  }
  if (rvq === 3) {
    out.set(new Uint32Array(E81B_GRID.buffer, E81B_GRID.byteOffset, 2048), E8P_TABLE_WORDS);
  }
  return out;
}

/** Words of the pattern table (256 patterns of four words). */
export const E8P_TABLE_WORDS = 1024;

/** Words of the E81B grid the shader copies into workgroup memory (with `shared`, for `rvq3`). */
export function e8pSharedWords(o: Pick<E8pShaderOptions, "rvq" | "shared">): number {
  return o.rvq === 3 && o.shared ? 2048 : 0;
}

/** The E8P shader (see the module notes). */
export function e8pShader(o: E8pShaderOptions): string {
  const { cols, tokens: TT, rowWords } = o;
  const L = o.lanes ?? E8P_LANES;
  const rowsPerGroup = rowsPerWorkgroup(L);
  const U = Math.max(1, o.unroll ?? e8pUnroll(TT));
  const vecIn = cols % 4 === 0;
  const fullVec = Math.floor(cols / 8);
  const vectors = Math.ceil(cols / 8);
  const units = Math.floor(fullVec / 2);
  const tailStart = units * 2;
  const tailCount = vectors - tailStart;
  const rho = o.rvq ? E8P_RVQ[o.rvq].residScale : 1;
  const onShared = e8pSharedWords(o) > 0;
  const grid = onShared ? "wgrid" : "tb";
  const gridAt = onShared ? 0 : E8P_TABLE_WORDS;
  const sharedWords = e8pSharedWords(o);
  const tokens = Array.from({ length: TT }, (_, t) => t);
  const xRow = vecIn ? cols / 4 : cols;

  /** Statements adding codeword `j` (a WGSL u32 expression) with 16-bit code `code`. */
  const codeword = (id: string, code: string, j: string, partial: number) => {
    const s = [
      `    { let w${id} = e8p(${code});`,
      `      var wa = w${id}.a;`,
      `      var wb = w${id}.b;`,
    ];
    if (o.rvq === 4) {
      s.push(
        `      let r${id} = e8p((second[row * ${o.secondWords}u + ((${j}) >> 1u)] >> (16u * ((${j}) & 1u))) & 0xffffu);`,
        `      wa += r${id}.a / ${rho}; wb += r${id}.b / ${rho};`,
      );
    } else if (o.rvq === 3) {
      s.push(
        `      let g${id} = ${gridAt}u + ((second[row * ${o.secondWords}u + ((${j}) >> 2u)] >> (8u * ((${j}) & 3u))) & 0xffu) * 8u;`,
        `      wa += vec4<f32>(${
          [0, 1, 2, 3].map((i) => `bitcast<f32>(${grid}[g${id} + ${i}u])`)
        }) / ${rho};`,
        `      wb += vec4<f32>(${
          [4, 5, 6, 7].map((i) => `bitcast<f32>(${grid}[g${id} + ${i}u])`)
        }) / ${rho};`,
      );
    }
    for (const t of tokens) {
      s.push(`      acc${t} += ${dotInput(t, j, partial)};`);
    }
    s.push("    }");
    return s.join("\n");
  };
  /** The dot of codeword `j` with token row `t`'s input; `partial` values of it exist (8: all). */
  const dotInput = (t: number, j: string, partial: number) => {
    if (vecIn) {
      const a = `u[ub${t} + 2u * (${j})]`;
      const b = `u[ub${t} + 2u * (${j}) + 1u]`;
      return partial > 4 ? `dot(wa, ${a}) + dot(wb, ${b})` : `dot(wa, ${a})`;
    }
    const at = (i: number) => i < partial ? `u[ub${t} + 8u * (${j}) + ${i}u]` : "0.0";
    return `dot(wa, vec4<f32>(${[0, 1, 2, 3].map(at)})) + dot(wb, vec4<f32>(${
      [4, 5, 6, 7].map(at)
    }))`;
  };
  /** Statements for unit `un` (a WGSL expression) whose words were loaded into `c${id}`. */
  const unit = (id: string, un: string) => {
    const s: string[] = [];
    for (let k = 0; k < 2; k++) {
      const code = k & 1 ? `c${id} >> 16u` : `c${id} & 0xffffu`;
      s.push(codeword(`${id}_${k}`, code, `${un} * 2u + ${k}u`, 8));
    }
    return s.join("\n");
  };
  const body = [
    laneSteps({
      lanes: L,
      units,
      unroll: U,
      load: (q, un) => `    let c${q} = codes[base + ${un}];`,
      use: (q, un) => unit(`${q}`, un),
    }),
  ];
  for (let q = 0; q * L < tailCount; q++) {
    // The codewords past the last whole unit, one a lane; the last may be partial.
    const j = `${tailStart + q * L}u + lane`;
    const code = `(codes[row * ${rowWords}u + (j >> 1u)] >> (16u * (j & 1u))) & 0xffffu`;
    body.push(
      `  if (${j} < ${fullVec}u) {`,
      `    let j = ${j};`,
      codeword("t", code, "j", 8),
      "  }",
    );
    if (cols % 8 !== 0 && fullVec >= tailStart + q * L && fullVec < tailStart + (q + 1) * L) {
      body.push(
        `  if (${j} == ${fullVec}u) {`,
        `    let j = ${fullVec}u;`,
        codeword("p", code, "j", cols % 8),
        "  }",
      );
    }
  }
  const tokenRow = (t: number) => TT === 1 ? "wg.y" : `min(wg.y * ${TT}u + ${t}u, st.T - 1u)`;
  const reduce = laneReduce(TT, L, "r < p.rows", "z[tok * p.rows + row] = v;");
  return `// ${e8pKey(o)}
${CODEBOOK_PARAMS}
@group(0) @binding(2) var<storage, read> u: array<${vecIn ? "vec4<f32>" : "f32"}>;
@group(0) @binding(3) var<storage, read> codes: array<u32>;
@group(0) @binding(4) var<storage, read> tb: array<u32>;
@group(0) @binding(5) var<storage, read_write> z: array<f32>;
@group(0) @binding(6) var<storage, read> second: array<u32>;
var<workgroup> red: array<f32, 256>;
var<workgroup> wtb: array<vec4<u32>, 256>;
${onShared ? `var<workgroup> wgrid: array<u32, ${sharedWords}>;` : ""}

struct W8 { a: vec4<f32>, b: vec4<f32> }

// Codeword \`code\`: coordinate i is the pattern's |v| (f16) with the sign of the sign byte's bit
// (0, 4, 1, 5, 2, 6, 3, 7)[i], plus the shift ±1/4 (\`e8p_codebook.ts\`); signs are flipped in the
// f32 bits (bit j shifted to bit 31), which gives the same values as multiplying by ±1.
fn e8p(code: u32) -> W8 {
  let e = wtb[code >> 8u];
  var s = code & 255u;
  let par = countOneBits(s) & 1u;
  s ^= par;
  s ^= ((e.x >> 15u) & 1u) << 7u;
  let sh = select(0.25, -0.25, par == 1u);
  let ma = vec4<f32>(unpack2x16float(e.x & 0xffff7fffu), unpack2x16float(e.y));
  let mb = vec4<f32>(unpack2x16float(e.z), unpack2x16float(e.w));
  let sa = (vec4<u32>(s) << vec4<u32>(31u, 27u, 30u, 26u)) & vec4<u32>(0x80000000u);
  let sb = (vec4<u32>(s) << vec4<u32>(29u, 25u, 28u, 24u)) & vec4<u32>(0x80000000u);
  return W8(
    bitcast<vec4<f32>>(bitcast<vec4<u32>>(ma) ^ sa) + sh,
    bitcast<vec4<f32>>(bitcast<vec4<u32>>(mb) ^ sb) + sh,
  );
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let lane = lid % ${L}u;
  // Lanes past the last row read its codes (no bounds checks in the loops) and store nothing.
  let r = wg.x * ${rowsPerGroup}u + lid / ${L}u;
  let row = min(r, p.rows - 1u);
  wtb[lid] = vec4<u32>(tb[4u * lid], tb[4u * lid + 1u], tb[4u * lid + 2u], tb[4u * lid + 3u]);
${
    onShared
      ? `  for (var i = lid; i < ${sharedWords}u; i += 256u) { wgrid[i] = tb[${E8P_TABLE_WORDS}u + i]; }\n`
      : ""
  }
  workgroupBarrier();
  let base = row * ${rowWords}u;
${tokens.map((t) => `  let ub${t} = ${tokenRow(t)} * ${xRow}u;\n  var acc${t} = 0.0;`).join("\n")}
${body.join("\n")}
${reduce}}
`;
}
