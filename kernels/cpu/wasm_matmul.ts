/**
 * The CPU matmul on a WebAssembly SIMD kernel (`matmul.wat`): activations and a chunk of weight rows
 * are copied into the module's memory (quantized rows decoded there, one row at a time), and four
 * rows × four lanes of float32 sums are computed per activation row.
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import { decodeRow } from "../formats/matrix.ts";
import { MATMUL_WASM_BASE64 } from "./matmul_wasm.ts";
import { aqlmStaging } from "./aqlm_wasm_decode.ts";
import { VPTQ_NAME } from "../formats/vptq.ts";
import { vptqRows } from "./vptq_wasm_decode.ts";

const bytes = Uint8Array.from(atob(MATMUL_WASM_BASE64), (c) => c.charCodeAt(0));
const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
const memory = instance.exports.memory as WebAssembly.Memory;
const decodeInt = instance.exports.decode_int as (
  codes: number,
  scales: number,
  zeros: number,
  out: number,
  rows: number,
  cols: number,
  colsP: number,
  group: number,
  groups: number,
  fixedZero: number,
  hasZeros: number,
) => void;
const kernel = instance.exports.matmul as (
  x: number,
  w: number,
  out: number,
  T: number,
  rows: number,
  cols: number,
  ldo: number,
) => void;

/** Bytes of weight rows staged per kernel call. */
const CHUNK_BYTES = 1 << 20;

function ensure(bytesNeeded: number): Float32Array {
  const have = memory.buffer.byteLength;
  if (have < bytesNeeded) memory.grow(Math.ceil((bytesNeeded - have) / 65536));
  return new Float32Array(memory.buffer);
}

const up4 = (n: number) => (n + 3) & ~3;

/**
 * Rows of a matrix decoded in the module's memory by a decoder of its own (`aqlm.wat`, `e8p.wat`):
 * what it stages there and how it decodes a chunk of rows.
 */
export interface RowStaging {
  /** Bytes it needs for chunks of `chunk` rows. */
  bytes(chunk: number): number;
  /** Copies what every chunk shares to byte `at` (16-byte aligned). */
  load(at: number, chunk: number): void;
  /** Decodes rows `r0 .. r0 + nr` into f32 rows of `colsP` floats at byte `out`. */
  decode(r0: number, nr: number, out: number, colsP: number): void;
}

/** `out[t][r] = Σ_c x[t][c] · W[r][c]`, as `ops.matmul` documents. */
export function wasmMatmul(out: Float32Array, x: Float32Array, w: Matrix): void {
  run(out, x, w, w.rows, w.cols, aqlmStaging(memory, w));
}

/**
 * `out[t][r] = Σ_c x[t][c] · W[r][c]` for a `rows × cols` matrix whose rows only the staging that
 * `make` gives for the module's memory can decode (QuIP#'s codes, `e8p_wasm_decode.ts`).
 */
export function wasmStagedMatmul(
  out: Float32Array,
  x: Float32Array,
  rows: number,
  cols: number,
  make: (memory: WebAssembly.Memory) => RowStaging,
): void {
  run(out, x, undefined, rows, cols, make(memory));
}

function run(
  out: Float32Array,
  x: Float32Array,
  w: Matrix | undefined,
  rows: number,
  cols: number,
  staged: RowStaging | undefined,
): void {
  const T = x.length / cols;
  const colsP = up4(cols);
  const chunk = Math.max(4, Math.min(up4(rows), Math.floor(CHUNK_BYTES / (colsP * 4)) & ~3));
  const xOff = 0;
  const wOff = T * colsP;
  const oOff = wOff + chunk * colsP;
  // Integer rows are decoded inside the module: their codes, scales and zero points go here.
  const groups = w?.kind === "int" ? Math.ceil(cols / w.groupSize) : 0;
  const sOff = oOff + T * chunk;
  const cByte = (sOff + chunk * groups) * 4;
  const zByte = cByte + chunk * cols;
  // AQLM, QuIP# and VPTQ rows are decoded inside the module too (`aqlm_wasm_decode.ts`,
  // `e8p_wasm_decode.ts`, `vptq_wasm_decode.ts`): a matrix's codebooks and codes are staged here.
  const vptq = !staged && w?.kind === "coded" && VPTQ_NAME.test(w.codec)
    ? vptqRows(memory, w)
    : undefined;
  const sideByte = (zByte + chunk * groups + 15) & ~15;
  const mem = ensure(sideByte + (staged?.bytes(chunk) ?? vptq?.bytes ?? 0));
  staged?.load(sideByte, chunk);
  vptq?.stage(sideByte);
  if (colsP === cols) {
    mem.set(x, xOff);
  } else {
    for (let t = 0; t < T; t++) {
      mem.set(x.subarray(t * cols, (t + 1) * cols), xOff + t * colsP);
      mem.fill(0, xOff + t * colsP + cols, xOff + (t + 1) * colsP);
    }
  }
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const nr = Math.min(chunk, rows - r0);
    const nrP = up4(nr);
    if (staged) {
      staged.decode(r0, nr, wOff * 4, colsP);
    } else if (w?.kind === "dense" && colsP === cols) {
      mem.set(w.data.subarray(r0 * cols, (r0 + nr) * cols), wOff);
    } else if (w?.kind === "int") {
      const bytes = new Uint8Array(memory.buffer);
      bytes.set(w.codes.subarray(r0 * cols, (r0 + nr) * cols), cByte);
      mem.set(w.scales.subarray(r0 * groups, (r0 + nr) * groups), sOff);
      if (w.zeros) bytes.set(w.zeros.subarray(r0 * groups, (r0 + nr) * groups), zByte);
      decodeInt(
        cByte,
        sOff * 4,
        zByte,
        wOff * 4,
        nr,
        cols,
        colsP,
        w.groupSize,
        groups,
        1 << (w.bits - 1),
        w.zeros ? 1 : 0,
      );
    } else if (vptq) {
      vptq.decode(r0, nr, wOff * 4, colsP);
      for (let i = 0; i < nr; i++) mem.fill(0, wOff + i * colsP + cols, wOff + (i + 1) * colsP);
    } else {
      for (let i = 0; i < nr; i++) {
        const at = wOff + i * colsP;
        decodeRow(w!, r0 + i, mem.subarray(at, at + cols));
        mem.fill(0, at + cols, at + colsP);
      }
    }
    mem.fill(0, wOff + nr * colsP, wOff + nrP * colsP);
    kernel(xOff * 4, wOff * 4, oOff * 4, T, nrP, colsP, nrP);
    for (let t = 0; t < T; t++) {
      out.set(mem.subarray(oOff + t * nrP, oOff + t * nrP + nr), t * rows + r0);
    }
  }
}
