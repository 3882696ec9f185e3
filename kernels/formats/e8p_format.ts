/**
 * The `e8p` format module: QuIP#'s stored weights (codecs `e8p12`, 2 bits per weight, and its
 * residual variants `e8p12-rvq3` and `e8p12-rvq4`). A `rows × cols` matrix `W` is
 * stored as the E8P12 codes (`e8p_codebook.ts`) of its incoherence-processed form
 * `Ŵ ≈ M_rowsᵀ · S_V · W · S_U · M_cols` (`M` the Hadamard transform of `kernels/cpu/hadamard.ts`,
 * `S` diagonal sign matrices), so that
 *
 * `W = diag(sv) · M_rows · Ŵ · M_colsᵀ · diag(su)`:
 *
 * - `data`: per row, one little-endian 16-bit E8P12 code per 8 columns of `Ŵ`, then for the
 *   residual variants one second-stage code per 8 columns (8-bit E81B for `rvq3`, 16-bit E8P12
 *   for `rvq4`; a vector is `c₁ + c₂ / ρ`, `e8p_codebook.ts`); a row of `cols` not a multiple of 8
 *   ends with a padded vector whose last `8 − cols % 8` values are dropped (stories260K's
 *   172-wide MLP; quip-sharp needs multiples of 8);
 * - side tensor `su` (`Uint8Array`, `⌈cols / 8⌉` bytes): the input-side random signs, one bit
 *   per column (bit `c % 8` of byte `c >> 3`, set for −1);
 * - side tensor `sv` (`Uint16Array`, `rows` f16 values): the output-side random sign times the
 *   row's scale (quip-sharp fuses its `Wscale` and the matrix scale into `SV` the same way).
 *
 * Bits per weight count the codes, the `su` bits and the `sv` halves. The codebook itself (256
 * patterns of 32 bits) is a constant of the format, like an FP4 value table, and is not stored
 * with a matrix. The activations need the same transforms at run time: {@linkcode e8pMatmul}
 * computes `W·x` as `sv ⊙ M_rows(Ŵ · M_colsᵀ(su ⊙ x))`, decoding the codes inside the product, in
 * float64 (the reference of the CPU matmul's WebAssembly path, `kernels/cpu/e8p_wasm_decode.ts`).
 * `decodeRow`, the numerical reference other code asks for one row, needs every row of `Ŵ`
 * (`M_rows` mixes them): it decodes the whole matrix once and keeps it while the matrix lives.
 * On WebGPU the codes, signs and scales are uploaded as they are ({@linkcode e8pGpuPlan}) and
 * `kernels/webgpu/e8p_wgsl.ts` runs the same three steps.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";
import { hadamardPlan, hadamardTransform } from "../cpu/hadamard.ts";
import { E8P_ABS, E8P_RVQ, e8pDecode, type E8pRvq, secondDecode } from "./e8p_codebook.ts";
import { asCoded, type QuantizedWeight, type WeightFormat } from "./format.ts";
import { f16ToF32, f32ToF16 } from "./gguf/numeric.ts";
import type { E8pGpuPlan } from "./gpu_layout.ts";

/** The codec name of E8P12 matrices. */
export const E8P12 = "e8p12";

/** The codec names by bits per weight (before signs and scales). */
export const E8P_CODECS: Readonly<Record<2 | 3 | 4, string>> = {
  2: E8P12,
  3: "e8p12-rvq3",
  4: "e8p12-rvq4",
};

/** The residual variant of codec `codec` (undefined for plain E8P12 and unknown names). */
function rvqOf(codec: string): E8pRvq | undefined {
  return codec === E8P_CODECS[3] ? E8P_RVQ[3] : codec === E8P_CODECS[4] ? E8P_RVQ[4] : undefined;
}

const isE8p = (codec: string) => Object.values(E8P_CODECS).includes(codec);

/** Bytes of one row's codes. */
function rowBytesOf(codec: string, cols: number): number {
  const rvq = rvqOf(codec);
  return e8pVectors(cols) * (2 + (rvq ? rvq.secondBits / 8 : 0));
}

/** Thrown for a matrix whose stored parts do not fit its shape. */
export class E8pLayoutError extends Error {
  override name = "E8pLayoutError";
}

/** Codes per row: one per 8 columns, the last padded. */
export function e8pVectors(cols: number): number {
  return Math.ceil(cols / 8);
}

/** The matrix's parts, checked against its shape. */
function parts(m: QuantizedWeight): {
  c: CodedMatrix;
  codes: Uint16Array;
  rvq: E8pRvq | undefined;
  second: Uint16Array;
  su: Uint8Array;
  sv: Uint16Array;
} {
  const c = asCoded("e8p", m);
  const vectors = e8pVectors(c.cols);
  const su = c.sides?.su;
  const sv = c.sides?.sv;
  const rowBytes = rowBytesOf(c.codec, c.cols);
  if (
    !isE8p(c.codec) || c.rowBytes !== rowBytes || c.data.length !== c.rows * c.rowBytes ||
    !(su instanceof Uint8Array) || su.length !== Math.ceil(c.cols / 8) ||
    !(sv instanceof Uint16Array) || sv.length !== c.rows
  ) {
    throw new E8pLayoutError(
      `An "${c.codec}" matrix of ${c.rows} × ${c.cols} needs ${rowBytes} bytes a row, ` +
        `su of ${Math.ceil(c.cols / 8)} bytes and sv of ${c.rows} halves`,
    );
  }
  const rvq = rvqOf(c.codec);
  const codes = new Uint16Array(c.rows * vectors);
  const second = new Uint16Array(rvq ? c.rows * vectors : 0);
  for (let r = 0; r < c.rows; r++) {
    const at = r * c.rowBytes;
    for (let j = 0; j < vectors; j++) {
      codes[r * vectors + j] = c.data[at + 2 * j]! | (c.data[at + 2 * j + 1]! << 8);
      if (rvq?.secondBits === 8) second[r * vectors + j] = c.data[at + 2 * vectors + j]!;
      else if (rvq) {
        const b = at + 2 * vectors + 2 * j;
        second[r * vectors + j] = c.data[b]! | (c.data[b + 1]! << 8);
      }
    }
  }
  return { c, codes, rvq, second, su, sv };
}

/** Whether column `col`'s input sign is −1. */
const negative = (su: Uint8Array, col: number) => (su[col >> 3]! >> (col & 7)) & 1;

/**
 * Builds an E8P matrix from its E8P12 codes (`rows × e8pVectors(cols)`), signs and scales, with
 * the second-stage codes of a residual variant (`bits` 3 or 4).
 */
export function e8pMatrix(
  rows: number,
  cols: number,
  codes: Uint16Array,
  su: Uint8Array,
  sv: Uint16Array,
  residual?: { bits: 3 | 4; codes: Uint16Array },
): CodedMatrix {
  const codec = E8P_CODECS[residual?.bits ?? 2];
  const vectors = e8pVectors(cols);
  const rowBytes = rowBytesOf(codec, cols);
  const data = new Uint8Array(rows * rowBytes);
  const second = residual && E8P_RVQ[residual.bits].secondBits;
  for (let r = 0; r < rows; r++) {
    const at = r * rowBytes;
    for (let j = 0; j < vectors; j++) {
      const code = codes[r * vectors + j]!;
      [data[at + 2 * j], data[at + 2 * j + 1]] = [code & 0xff, code >> 8];
      const next = residual?.codes[r * vectors + j] ?? 0;
      if (second === 8) data[at + 2 * vectors + j] = next;
      else if (second === 16) {
        [data[at + 2 * vectors + 2 * j], data[at + 2 * vectors + 2 * j + 1]] = [
          next & 0xff,
          next >> 8,
        ];
      }
    }
  }
  const m: CodedMatrix = {
    kind: "coded",
    codec,
    rows,
    cols,
    rowBytes,
    data,
    tensorScale: 1,
    sides: { su, sv },
  };
  parts(m);
  return m;
}

/**
 * An E8P matrix (`bits` 2: E8P12; 3 and 4: its residual variants) with arbitrary contents, for
 * timing where QuIP#'s search is too slow: every 16-bit E8P12 code (and 8- or 16-bit second code)
 * uniform (each is a codeword), random input signs, and row scales of random sign and a weight's
 * magnitude (the codewords' RMS is about 1, so a row's RMS is its scale: about 1/√cols).
 */
export function e8pTimingMatrix(
  bits: 2 | 3 | 4,
  rows: number,
  cols: number,
  random: () => number,
): CodedMatrix {
  const count = rows * e8pVectors(cols);
  const codes = (width: number) =>
    Uint16Array.from({ length: count }, () => Math.floor(random() * 2 ** width));
  const su = Uint8Array.from({ length: Math.ceil(cols / 8) }, () => Math.floor(random() * 256));
  const sv = Uint16Array.from(
    { length: rows },
    () => f32ToF16((random() < 0.5 ? -1 : 1) * (0.5 + random()) / Math.sqrt(cols)),
  );
  const residual = bits === 2 ? undefined : { bits, codes: codes(E8P_RVQ[bits].secondBits) };
  return e8pMatrix(rows, cols, codes(16), su, sv, residual);
}

const decodedCache = new WeakMap<CodedMatrix, Float32Array>();

/** The whole matrix `W` (row-major float32), decoded once per matrix. */
export function e8pDecodeMatrix(m: QuantizedWeight): Float32Array {
  const { c, codes, rvq, second, su, sv } = parts(m);
  const cached = decodedCache.get(c);
  if (cached !== undefined) return cached;
  const { rows, cols } = c;
  const vectors = e8pVectors(cols);
  const v = new Float64Array(8 * vectors);
  const residual = new Float64Array(8);
  // Rows of Ŵ · M_colsᵀ · diag(su), stored transposed so that M_rows runs along contiguous rows.
  const t = new Float64Array(cols * rows);
  const row = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < vectors; j++) {
      e8pDecode(codes[r * vectors + j]!, v, 8 * j);
      if (rvq === undefined) continue;
      secondDecode(rvq, second[r * vectors + j]!, residual);
      for (let i = 0; i < 8; i++) v[8 * j + i]! += residual[i]! / rvq.residScale;
    }
    row.set(v.subarray(0, cols));
    hadamardTransform(row, cols);
    for (let col = 0; col < cols; col++) {
      t[col * rows + r] = negative(su, col) ? -row[col]! : row[col]!;
    }
  }
  hadamardTransform(t, rows);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const scale = f16ToF32(sv[r]!);
    for (let col = 0; col < cols; col++) out[r * cols + col] = scale * t[col * rows + r]!;
  }
  decodedCache.set(c, out);
  return out;
}

/**
 * `y = W · x` for `tokens` rows of `x` (`tokens × cols`) into `out` (`tokens × rows`): the input
 * transform, the codes decoded one 8-vector at a time against the transformed input, then the
 * output transform and scales.
 */
export function e8pMatmul(
  m: QuantizedWeight,
  x: Float32Array,
  tokens: number,
  out: Float32Array,
): void {
  const { c, codes, rvq, second, su, sv } = parts(m);
  const { rows, cols } = c;
  const vectors = e8pVectors(cols);
  const u = new Float64Array(8 * vectors);
  const residual = new Float64Array(8);
  const z = new Float64Array(rows);
  for (let t = 0; t < tokens; t++) {
    u.fill(0);
    for (let col = 0; col < cols; col++) {
      const value = x[t * cols + col]!;
      u[col] = negative(su, col) ? -value : value;
    }
    hadamardTransform(u.subarray(0, cols), cols, true);
    for (let r = 0; r < rows; r++) {
      // A codeword is (± pattern) ± 1/4: Σ cᵢuᵢ = Σ ±aᵢuᵢ ± Σ uᵢ / 4 (padding holds zeros).
      let acc = 0;
      for (let j = 0; j < vectors; j++) {
        const code = codes[r * vectors + j]!;
        const k = 8 * (code >> 8);
        let s = code & 255;
        let p = s ^ (s >> 4);
        p ^= p >> 2;
        p = (p ^ (p >> 1)) & 1;
        s ^= p;
        let dot = 0;
        let sum = 0;
        for (let i = 0; i < 8; i++) {
          const ui = u[8 * j + i]!;
          sum += ui;
          const term = SIGNED[k + i]! * ui;
          dot += (s >> SLOT[i]!) & 1 ? -term : term;
        }
        acc += dot + (p ? -0.25 : 0.25) * sum;
        if (rvq === undefined) continue;
        secondDecode(rvq, second[r * vectors + j]!, residual);
        let extra = 0;
        for (let i = 0; i < 8; i++) extra += residual[i]! * u[8 * j + i]!;
        acc += extra / rvq.residScale;
      }
      z[r] = acc;
    }
    hadamardTransform(z, rows);
    for (let r = 0; r < rows; r++) out[t * rows + r] = f16ToF32(sv[r]!) * z[r]!;
  }
}

/**
 * The WebGPU plan of an E8P matrix (see `E8pGpuPlan`), or why there is none: a side without a
 * Hadamard transform.
 */
export function e8pGpuPlan(m: QuantizedWeight): E8pGpuPlan | string {
  const { c, codes, rvq, second, su, sv } = parts(m);
  for (const n of [c.rows, c.cols]) {
    try {
      hadamardPlan(n);
    } catch (e) {
      return (e as Error).message;
    }
  }
  const vectors = e8pVectors(c.cols);
  const rowWords = Math.ceil(vectors / 2);
  const per = rvq?.secondBits === 8 ? 4 : 2;
  const secondWords = rvq ? Math.ceil(vectors / per) : 0;
  const words = new Uint32Array(c.rows * rowWords);
  const secondOut = new Uint32Array(Math.max(1, c.rows * secondWords));
  const width = 32 / per;
  for (let r = 0; r < c.rows; r++) {
    for (let j = 0; j < vectors; j++) {
      words[r * rowWords + (j >> 1)]! |= codes[r * vectors + j]! << (16 * (j & 1));
      if (rvq) {
        const at = r * secondWords + Math.floor(j / per);
        secondOut[at] = (secondOut[at]! | (second[r * vectors + j]! << (width * (j % per)))) >>> 0;
      }
    }
  }
  return {
    kind: "e8p",
    rvq: rvq === undefined ? 0 : rvq.secondBits === 8 ? 3 : 4,
    rowWords,
    codes: words,
    secondWords,
    second: secondOut,
    su: Float32Array.from({ length: c.cols }, (_, col) => negative(su, col) ? -1 : 1),
    sv: Float32Array.from(sv, f16ToF32),
  };
}

/** Which bit of the sign byte negates coordinate `i` (see `e8p_codebook.ts`). */
const SLOT = [0, 4, 1, 5, 2, 6, 3, 7] as const;

/** The patterns with the last coordinate negated where their sum is odd (`256 × 8`). */
const SIGNED: Float64Array = (() => {
  const out = Float64Array.from(E8P_ABS);
  for (let k = 0; k < 256; k++) {
    let sum = 0;
    for (let i = 0; i < 8; i++) sum += out[8 * k + i]!;
    if (sum % 2) out[8 * k + 7] = -out[8 * k + 7]!;
  }
  return out;
})();

/** QuIP#'s E8P12 lattice codes with randomized Hadamard transforms on both sides. */
export const E8P_FORMAT: WeightFormat = {
  name: "e8p",
  description: "QuIP# E8P12 (and residual 3-/4-bit variants): E8 lattice codes per 8 weights " +
    "after random Hadamard transforms",
  // Made by the quip_sharp method; rows cannot be encoded or decoded on their own.
  codecs: [],
  elements: [],
  bounds: [],
  owns: isE8p,
  decodeRow(m, r, out) {
    out.set(e8pDecodeMatrix(m).subarray(r * m.cols, (r + 1) * m.cols));
  },
  bits(m) {
    const c = asCoded("e8p", m);
    return 8 * c.rows * c.rowBytes + c.cols + 16 * c.rows;
  },
  gpu: e8pGpuPlan,
  grid: "none",
};
