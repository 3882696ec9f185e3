/**
 * QuIP#'s `e8p` matrices in the CPU matmul: `e8pWasmMatmul` computes `W·x` as
 * `sv ⊙ M_rows(Ŵ · M_colsᵀ(su ⊙ x))` (`kernels/formats/e8p_format.ts`), the transforms in float64
 * here and the product with the codes' matrix `Ŵ` on the matmul module (`wasm_matmul.ts`), whose
 * rows `e8p.wat` decodes in its memory from the codes, four lanes at a time. The decoding tables
 * (patterns, sign masks, shifts, the E81B codebook) are made from `e8pDecode` and `secondDecode`
 * and staged once per matmul.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";
import { E8P_RVQ, e8pDecode, secondDecode } from "../formats/e8p_codebook.ts";
import { E8P_CODECS, E8P_FORMAT, e8pVectors } from "../formats/e8p_format.ts";
import { sideTensor } from "../formats/matrix.ts";
import { f16ToF32 } from "../formats/gguf/numeric.ts";
import { hadamardTransform } from "./hadamard.ts";
import { E8P_WASM_BASE64 } from "./e8p_wasm.ts";
import { type RowStaging, wasmStagedMatmul } from "./wasm_matmul.ts";

type Decode = (
  data: number,
  rowBytes: number,
  tables: number,
  out: number,
  rows: number,
  cols: number,
  colsP: number,
  vectors: number,
  second: number,
  inv: number,
) => void;

const instances = new WeakMap<WebAssembly.Memory, Decode>();

function decoderIn(memory: WebAssembly.Memory): Decode {
  let decode = instances.get(memory);
  if (decode === undefined) {
    const bytes = Uint8Array.from(atob(E8P_WASM_BASE64), (c) => c.charCodeAt(0));
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
      matmul: { memory },
    });
    decode = instance.exports.decode_e8p as Decode;
    instances.set(memory, decode);
  }
  return decode;
}

/** Bytes of the tables and scratch (`e8p.wat` says their layout). */
const TABLE_BYTES = 25632;

/**
 * The tables `e8p.wat` reads, from the codebook's own decoder: pattern `k` is code `k << 8`
 * less its shift; a sign byte's shift and lane signs are read off code `K << 8 | s` for a
 * pattern `K` without zeros (every |value| ≥ 1/2, so the ±1/4 shift is unambiguous).
 */
const TABLES: Uint8Array = (() => {
  const bytes = new Uint8Array(TABLE_BYTES);
  const f = new Float32Array(bytes.buffer);
  const u = new Uint32Array(bytes.buffer);
  const v = new Float64Array(8);
  for (let k = 0; k < 256; k++) {
    e8pDecode(k << 8, v);
    for (let i = 0; i < 8; i++) f[8 * k + i] = v[i]! - 0.25;
  }
  let K = 0;
  while (Array.from({ length: 8 }, (_, i) => f[8 * K + i]!).some((a) => Math.abs(a) < 0.5)) K++;
  for (let s = 0; s < 256; s++) {
    e8pDecode((K << 8) | s, v);
    const a0 = f[8 * K]!;
    const shift = Math.abs(v[0]! - 0.25) === Math.abs(a0) ? 0.25 : -0.25;
    f[4096 + s] = shift;
    for (let i = 0; i < 8; i++) {
      u[2048 + 8 * s + i] = v[i]! - shift === f[8 * K + i]! ? 0 : 0x80000000;
    }
  }
  for (let c = 0; c < 256; c++) {
    secondDecode(E8P_RVQ[3], c, v);
    for (let i = 0; i < 8; i++) f[4352 + 8 * c + i] = v[i]!;
  }
  return bytes;
})();

/** Which second stage a codec has: 0 none, 1 E81B, 2 E8P12. */
const secondOf = (codec: string) => codec === E8P_CODECS[3] ? 1 : codec === E8P_CODECS[4] ? 2 : 0;

/** The rows of `Ŵ` (the codes' matrix) of `m`, decoded in `memory` chunk by chunk. */
function codesStaging(memory: WebAssembly.Memory, m: CodedMatrix): RowStaging {
  const second = secondOf(m.codec);
  const inv = second === 1
    ? 1 / E8P_RVQ[3].residScale
    : second === 2
    ? 1 / E8P_RVQ[4].residScale
    : 0;
  const vectors = e8pVectors(m.cols);
  let tables = 0;
  let codes = 0;
  return {
    bytes: (chunk) => TABLE_BYTES + ((chunk * m.rowBytes + 15) & ~15),
    load(at) {
      tables = at;
      codes = at + TABLE_BYTES;
      new Uint8Array(memory.buffer).set(TABLES, tables);
    },
    decode(r0, nr, out, colsP) {
      new Uint8Array(memory.buffer).set(
        m.data.subarray(r0 * m.rowBytes, (r0 + nr) * m.rowBytes),
        codes,
      );
      decoderIn(memory)(
        codes,
        m.rowBytes,
        tables,
        out,
        nr,
        m.cols,
        colsP,
        vectors,
        second,
        inv,
      );
    },
  };
}

/**
 * `y = W · x` for the `e8p` matrix `m` and `tokens` rows of `x` (`tokens × cols`) into `out`
 * (`tokens × rows`), with `Ŵ`'s product on the WebAssembly kernel (float32 sums, so it agrees
 * with `e8pMatmul`'s float64 result to float32 rounding).
 */
export function e8pWasmMatmul(m: CodedMatrix, x: Float32Array, tokens: number, out: Float32Array) {
  if (!E8P_FORMAT.owns(m.codec)) throw new TypeError(`Not an e8p matrix: "${m.codec}"`);
  const { rows, cols } = m;
  const su = sideTensor(m, "su");
  const sv = sideTensor(m, "sv");
  const u = new Float32Array(tokens * cols);
  const row = new Float64Array(cols);
  for (let t = 0; t < tokens; t++) {
    for (let c = 0; c < cols; c++) {
      const value = x[t * cols + c]!;
      row[c] = (su[c >> 3]! >> (c & 7)) & 1 ? -value : value;
    }
    hadamardTransform(row, cols, true);
    u.set(row, t * cols);
  }
  const z = new Float32Array(tokens * rows);
  wasmStagedMatmul(z, u, rows, cols, (memory) => codesStaging(memory, m));
  const zr = new Float64Array(rows);
  for (let t = 0; t < tokens; t++) {
    zr.set(z.subarray(t * rows, (t + 1) * rows));
    hadamardTransform(zr, rows);
    for (let r = 0; r < rows; r++) out[t * rows + r] = f16ToF32(sv[r]!) * zr[r]!;
  }
}
