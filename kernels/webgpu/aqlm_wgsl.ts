/**
 * WGSL for AQLM's matmul (`kernels/formats/aqlm.ts`): `out[t][r] (+)= s_r · Σ_j Σ_m Σ_i
 * C[m][code(r, j, m)][i] · x[t][j·g + i]`, decoding the codes inside the product.
 *
 * Laid out as `e8p_wgsl.ts` is, with everything unrolled over compile-time constants (no private
 * arrays, which NVIDIA keeps in off-chip local memory): `lanes` lanes share a row, `256 / lanes`
 * rows a workgroup of 256 ({@linkcode AQLM_LANES} = 8 by default; the layout knob `codebookLanes`
 * sets 4, 16, 32 or another power of two for the perf sweep, and the default stays 8 until a sweep
 * on the GPU says otherwise). Where a group's `M` codes fill a whole fraction of a u32
 * (`32 % (M·B) = 0`: 1x16, 2x8, 1x8, 2x4, …) a lane reads a *unit*, one code word, and neighbouring
 * lanes neighbouring words (a warp's input loads then touch few 128-byte lines, as in
 * `e8p_wgsl.ts`); other widths take one group a unit, its codes read from the row's bit stream. A
 * group's codewords (f16 pairs) are summed into `vec4<f32>` registers (scalars where `g % 4 ≠ 0`)
 * and dotted with `TT` token rows of activations, read as `vec4<f32>` where `g`, `cols` and the
 * input stride are multiples of 4 (1 token row when decoding; more for prefill, so each decoded
 * group serves several tokens). Each lane takes `unroll` units a step, their loads issued together;
 * whole steps run without bounds checks, then a guarded loop, then the groups past the last whole
 * unit one a lane (the last of them partial where `cols % g ≠ 0`, reading zeros for the missing
 * activations). The codebooks are read through the cache, or with `shared` from workgroup memory
 * (only where they fit: not 1x16's 65,536 codewords). The lanes of a row meet through a 256-float
 * buffer, one barrier per token row.
 *
 * Bindings: 0 params (`CODEBOOK_PARAMS`), 1 `Step`, 2 x, 3 codes (`rowWords` a row), 4 codebook
 * words, 5 out, 6 row scales (f32). Dispatch `(⌈rows / (256 / lanes)⌉, ⌈T / TT⌉, 1)`
 * (`rowsPerWorkgroup`, `codebook_epilogue_wgsl.ts`).
 *
 * @module
 */
import {
  CODEBOOK_PARAMS,
  CODEBOOK_STORE,
  laneReduce,
  laneSteps,
  rowsPerWorkgroup,
} from "./codebook_epilogue_wgsl.ts";

/** Lanes sharing a row by default (the option `lanes` of {@linkcode AqlmShaderOptions}). */
export const AQLM_LANES = 8;

/** What the AQLM shader is built for. */
export interface AqlmShaderOptions {
  codebooks: number;
  bits: number;
  groupSize: number;
  /** Words per codeword and per row of codes. */
  stride: number;
  rowWords: number;
  cols: number;
  /** Floats between token rows of the input. */
  xStride: number;
  /** Token rows per thread. */
  tokens: number;
  /** Codebooks in workgroup memory (else read through the cache). */
  shared: boolean;
  /** Units (see the module notes) a lane takes per step (default {@linkcode aqlmUnroll}). */
  unroll?: number;
  /** Lanes sharing a row, a power of two up to 256 (default {@linkcode AQLM_LANES}). */
  lanes?: number;
}

/**
 * Units per lane and step by default: where a unit is a code word, 8 when decoding (one token row;
 * 8 words in flight) and 2 for prefill (whose 8 token rows a unit already give the lane work and
 * take registers); else about 16 bytes of codes, at most 8 groups.
 */
export function aqlmUnroll(o: Pick<AqlmShaderOptions, "codebooks" | "bits" | "tokens">): number {
  if (32 % (o.codebooks * o.bits) === 0) return o.tokens > 1 ? 2 : 8;
  return Math.max(1, Math.min(8, Math.floor(128 / (o.codebooks * o.bits))));
}

/** Thrown for options the shader cannot take. */
export class AqlmShaderError extends RangeError {
  override name = "AqlmShaderError";
}

/** Words of all codebooks. */
export function aqlmCodebookWords(o: Pick<AqlmShaderOptions, "codebooks" | "bits" | "stride">) {
  return o.codebooks * 2 ** o.bits * o.stride;
}

/** The cache key of {@linkcode aqlmShader}. */
export function aqlmKey(o: AqlmShaderOptions): string {
  return `aqlm:${o.codebooks}x${o.bits}:g${o.groupSize}:s${o.stride}:w${o.rowWords}:c${o.cols}:` +
    `x${o.xStride}:t${o.tokens}:u${o.unroll ?? aqlmUnroll(o)}:${o.shared ? "shared" : "cache"}` +
    // Default lanes keep the key (and the shader's first line) as it was before the knob.
    ((o.lanes ?? AQLM_LANES) === AQLM_LANES ? "" : `:l${o.lanes}`);
}

/** The AQLM matmul shader (see the module notes). */
export function aqlmShader(o: AqlmShaderOptions): string {
  const { codebooks: M, bits: B, groupSize: G, stride, cols, tokens: TT, rowWords } = o;
  if (!(B >= 1 && B <= 16 && G >= 1 && stride === Math.ceil(G / 2) && TT >= 1)) {
    throw new AqlmShaderError(`No AQLM shader for ${JSON.stringify(o)}`);
  }
  const L = o.lanes ?? AQLM_LANES;
  const rowsPerGroup = rowsPerWorkgroup(L);
  const groups = Math.ceil(cols / G);
  const fullGroups = Math.floor(cols / G);
  const U = o.unroll ?? aqlmUnroll(o);
  const words = aqlmCodebookWords(o);
  // Units of whole code words where codes never straddle a word.
  const packed = 32 % (M * B) === 0;
  const perWord = packed ? 32 / (M * B) : 1;
  const perUnit = packed ? perWord : 1;
  const units = Math.floor(fullGroups / perUnit);
  const tailStart = units * perUnit;
  const vecCb = stride % 4 === 0;
  const cb = o.shared ? "wcb" : "cb";
  // Whole vec4s of a row (a partial last group then ends on one).
  const vecIn = G % 4 === 0 && cols % 4 === 0 && o.xStride % 4 === 0;
  const tokens = Array.from({ length: TT }, (_, t) => t);
  const mask = `${2 ** B - 1}u`;

  /** Statements adding group `j` (a WGSL expression) whose codes are `codes[m]`. */
  const group = (codes: string[], j: string, partial: number) => {
    const s = ["    {"];
    // The group's codeword words, as f16 pairs unpacked: half h of codebook m.
    for (let m = 0; m < M; m++) {
      s.push(`      let at${m} = ${m * 2 ** B}u + ${codes[m]};`);
      if (vecCb) {
        for (let q = 0; q < stride / 4; q++) {
          s.push(`      let e${m}_${q} = ${cb}[at${m} * ${stride / 4}u + ${q}u];`);
          for (let h = 0; h < 4; h++) {
            s.push(`      let h${m}_${4 * q + h} = unpack2x16float(e${m}_${q}[${h}]);`);
          }
        }
      } else {
        for (let h = 0; h < stride; h++) {
          s.push(`      let h${m}_${h} = unpack2x16float(${cb}[at${m} * ${stride}u + ${h}u]);`);
        }
      }
    }
    const weight = (i: number) =>
      Array.from({ length: M }, (_, m) => `h${m}_${i >> 1}.${i & 1 ? "y" : "x"}`).join(" + ");
    if (G % 4 === 0) {
      for (let q = 0; q < G / 4; q++) {
        s.push(`      let w${q} = vec4<f32>(${[0, 1, 2, 3].map((i) => weight(4 * q + i))});`);
      }
    } else {
      for (let i = 0; i < G; i++) s.push(`      let w${i} = ${weight(i)};`);
    }
    for (const t of tokens) {
      const terms: string[] = [];
      if (G % 4 === 0) {
        for (let q = 0; q < G / 4; q++) {
          if (4 * q >= partial) break;
          const x = vecIn
            ? `x4[xb${t} + (${j}) * ${G / 4}u + ${q}u]`
            : `vec4<f32>(${
              [0, 1, 2, 3].map((i) =>
                4 * q + i < partial ? `x[xb${t} + (${j}) * ${G}u + ${4 * q + i}u]` : "0.0"
              )
            })`;
          terms.push(`dot(w${q}, ${x})`);
        }
      } else {
        for (let i = 0; i < Math.min(G, partial); i++) {
          terms.push(`w${i} * x[xb${t} + (${j}) * ${G}u + ${i}u]`);
        }
      }
      s.push(`      acc${t} += ${terms.join(" + ")};`);
    }
    s.push("    }");
    return s.join("\n");
  };
  /** The codes of group `k` of a unit whose words are in `c{q}`. */
  const unitCodes = (q: number, k: number) => {
    const word = `c${q}`;
    const at = (k % perWord) * M * B;
    return Array.from({ length: M }, (_, m) => `((${word} >> ${at + m * B}u) & ${mask})`);
  };
  const streamCodes = (j: string) =>
    Array.from({ length: M }, (_, m) => `code(base, (${j}) * ${M}u + ${m}u)`);
  const body = [
    laneSteps({
      lanes: L,
      units,
      unroll: U,
      load: (q, un) =>
        packed
          ? `    let c${q} = codes[base + ${un}];`
          : streamCodes(un).map((c, m) => `    let k${q}_${m} = ${c};`).join("\n"),
      use: (q, un) => {
        if (!packed) {
          return group(Array.from({ length: M }, (_, m) => `k${q}_${m}`), un, G);
        }
        return Array.from(
          { length: perUnit },
          (_, k) => group(unitCodes(q, k), `${un} * ${perUnit}u + ${k}u`, G),
        ).join("\n");
      },
    }),
  ];
  for (let q = 0; tailStart + q * L < groups; q++) {
    // The groups past the last whole unit, one a lane; the last may be partial.
    const j = `${tailStart + q * L}u + lane`;
    body.push(
      `  if (${j} < ${fullGroups}u) {`,
      `    let j = ${j};`,
      group(streamCodes("j"), "j", G),
      "  }",
    );
    if (
      fullGroups < groups && fullGroups >= tailStart + q * L && fullGroups < tailStart + (q + 1) * L
    ) {
      body.push(
        `  if (${j} == ${fullGroups}u) {`,
        `    let j = ${fullGroups}u;`,
        group(streamCodes("j"), "j", cols % G),
        "  }",
      );
    }
  }
  // Codes of a width dividing 32 never straddle two words.
  const straddle = 32 % B !== 0
    ? `  if (sh + ${B}u > 32u) { v |= codes[w + 1u] << (32u - sh); }\n`
    : "";
  const tokenRow = (t: number) => (TT === 1 ? "wg.y" : `min(wg.y * ${TT}u + ${t}u, st.T - 1u)`);
  const cbType = vecCb ? "vec4<u32>" : "u32";
  const cbLength = vecCb ? words / 4 : words;
  return `// ${aqlmKey(o)}
${CODEBOOK_PARAMS}
@group(0) @binding(2) var<storage, read> x${vecIn ? "4" : ""}: array<${
    vecIn ? "vec4<f32>" : "f32"
  }>;
@group(0) @binding(3) var<storage, read> codes: array<u32>;
@group(0) @binding(4) var<storage, read> cb: array<${cbType}>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> scales: array<f32>;
var<workgroup> red: array<f32, 256>;
${o.shared ? `var<workgroup> wcb: array<${cbType}, ${cbLength}>;` : ""}
${CODEBOOK_STORE}
fn code(base: u32, k: u32) -> u32 {
  let bit = k * ${B}u;
  let w = base + (bit >> 5u);
  let sh = bit & 31u;
  var v = codes[w] >> sh;
${straddle}  return v & ${mask};
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let lane = lid % ${L}u;
  // Lanes past the last row read its codes (no bounds checks in the loops) and store nothing.
  let r = wg.x * ${rowsPerGroup}u + lid / ${L}u;
  let row = min(r, p.rows - 1u);
${
    o.shared
      ? `  for (var i = lid; i < ${cbLength}u; i += 256u) { wcb[i] = cb[i]; }\n  workgroupBarrier();\n`
      : ""
  }  let base = row * ${rowWords}u;
${
    tokens.map((t) =>
      `  let xb${t} = ${tokenRow(t)} * ${vecIn ? o.xStride / 4 : o.xStride}u;\n  var acc${t} = 0.0;`
    ).join("\n")
  }
${body.join("\n")}
${laneReduce(TT, L, "r < p.rows", "store(tok, row, v * scales[row]);")}}
`;
}
