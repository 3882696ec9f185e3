/**
 * AQLM matrices in the CPU matmul (`wasm_matmul.ts`): the codebooks (as f32) are staged once per
 * matmul in the matmul module's memory, each chunk of rows brings its packed codes and scales, and
 * `aqlm.wat` decodes the rows there, four lanes at a time, where the matmul kernel reads them.
 *
 * @module
 */
import type { Matrix } from "../../core/model.ts";
import type { CodedMatrix } from "../../core/coded.ts";
import { aqlmSides, parseAqlmCodec } from "../formats/aqlm.ts";
import { AQLM_WASM_BASE64 } from "./aqlm_wasm.ts";

type Decode = (
  data: number,
  rowBytes: number,
  books: number,
  scales: number,
  out: number,
  rows: number,
  cols: number,
  colsP: number,
  M: number,
  B: number,
  g: number,
) => void;

const instances = new WeakMap<WebAssembly.Memory, Decode>();

function decoderIn(memory: WebAssembly.Memory): Decode {
  let decode = instances.get(memory);
  if (decode === undefined) {
    const bytes = Uint8Array.from(atob(AQLM_WASM_BASE64), (c) => c.charCodeAt(0));
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
      matmul: { memory },
    });
    decode = instance.exports.decode_aqlm as Decode;
    instances.set(memory, decode);
  }
  return decode;
}

/** How an AQLM matrix is staged and decoded in the matmul module's memory. */
export interface AqlmStaging {
  /** Bytes it needs for chunks of `chunk` rows (codebooks, codes, scales). */
  bytes(chunk: number): number;
  /** Copies the codebooks to byte `at` (16-byte aligned); the chunks' parts follow them. */
  load(at: number, chunk: number): void;
  /** Decodes rows `r0 .. r0 + nr` into f32 rows of `colsP` floats at byte `out`. */
  decode(r0: number, nr: number, out: number, colsP: number): void;
}

const up16 = (n: number) => (n + 15) & ~15;

/** The staging of `w` in `memory`, or undefined when `w` is not an AQLM matrix. */
export function aqlmStaging(
  memory: WebAssembly.Memory,
  w: Matrix,
): AqlmStaging | undefined {
  if (w.kind !== "coded") return undefined;
  const scheme = parseAqlmCodec(w.codec);
  if (scheme === undefined) return undefined;
  const m: CodedMatrix = w;
  const { codebooks, scales } = aqlmSides(m);
  const booksBytes = up16(codebooks.byteLength);
  // Four spare bytes after the codes: the decoder reads codes with 32-bit loads.
  const codesBytes = (chunk: number) => up16(chunk * m.rowBytes + 4);
  let books = 0;
  let codes = 0;
  let scaleAt = 0;
  return {
    bytes: (chunk) => booksBytes + codesBytes(chunk) + up16(chunk * 4),
    load(at, chunk) {
      books = at;
      codes = books + booksBytes;
      scaleAt = codes + codesBytes(chunk);
      new Float32Array(memory.buffer, books, codebooks.length).set(codebooks);
    },
    decode(r0, nr, out, colsP) {
      const bytes = new Uint8Array(memory.buffer);
      bytes.set(m.data.subarray(r0 * m.rowBytes, (r0 + nr) * m.rowBytes), codes);
      new Float32Array(memory.buffer, scaleAt, nr).set(scales.subarray(r0, r0 + nr));
      decoderIn(memory)(
        codes,
        m.rowBytes,
        books,
        scaleAt,
        out,
        nr,
        m.cols,
        colsP,
        scheme.codebooks,
        scheme.bits,
        scheme.groupSize,
      );
    },
  };
}
