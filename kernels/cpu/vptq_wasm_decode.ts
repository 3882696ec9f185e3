/**
 * VPTQ rows decoded by WebAssembly (`vptq_decode.wat`) straight into the CPU matmul's staging
 * area: a matrix's codebooks (as float32), packed index streams, outlier columns, permutation and
 * norm are copied once per matmul call into the matmul module's memory, then each chunk of rows
 * is decoded there for the SIMD kernel, as `kernels/formats/vptq.ts` decodes a row.
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";
import { halves, indexBits, parseVptqName } from "../formats/vptq.ts";
import { VPTQ_WASM_BASE64 } from "./vptq_wasm.ts";

const wasm = new WebAssembly.Module(
  Uint8Array.from(atob(VPTQ_WASM_BASE64), (c) => c.charCodeAt(0)),
);

type Decode = (...args: number[]) => void;

/** One decoder instance per memory it writes into. */
const decoders = new WeakMap<WebAssembly.Memory, Decode>();

function decoderFor(memory: WebAssembly.Memory): Decode {
  let decode = decoders.get(memory);
  if (decode === undefined) {
    const instance = new WebAssembly.Instance(wasm, { env: { memory } });
    decode = instance.exports.decode_vptq as Decode;
    decoders.set(memory, decode);
  }
  return decode;
}

/** A VPTQ matrix laid out for {@linkcode vptqRows}' decoder. */
export interface StagedVptq {
  /** Bytes the staged tensors take (a multiple of 4). */
  bytes: number;
  /** Copies the tensors into the memory at byte `at` (a multiple of 4). */
  stage(at: number): void;
  /** Decodes rows `[r0, r0 + nr)` into float32 rows of `colsP` at byte `out`. */
  decode(r0: number, nr: number, out: number, colsP: number): void;
}

const up4 = (n: number) => (n + 3) & ~3;

/** The staging plan of VPTQ matrix `m` for the matmul module's `memory`. */
export function vptqRows(memory: WebAssembly.Memory, m: CodedMatrix): StagedVptq {
  const config = parseVptqName(m.codec);
  const s = m.sides ?? {};
  const parts: { name: string; data: Uint8Array | Float32Array | Int32Array }[] = [
    { name: "cent", data: halves(s.centroids!) },
    { name: "idx", data: s.indices as Uint8Array },
  ];
  if (config.resCentroids > 0) {
    parts.push({ name: "rcent", data: halves(s.res_centroids!) });
    parts.push({ name: "ridx", data: s.res_indices as Uint8Array });
  }
  if (s.outliers) parts.push({ name: "outl", data: halves(s.outliers) });
  if (s.perm) parts.push({ name: "perm", data: Int32Array.from(s.perm as Uint16Array) });
  if (s.norm_scale) {
    parts.push({ name: "scale", data: halves(s.norm_scale) });
    parts.push({ name: "bias", data: halves(s.norm_bias!) });
  }
  const offsets = new Map<string, number>();
  let bytes = 0;
  for (const { name, data } of parts) {
    offsets.set(name, bytes);
    // Three readable bytes after a packed stream: the decoder reads an index with an i32 load.
    bytes = up4(bytes + data.byteLength + 4);
  }
  const o = s.outliers ? s.outliers.length / m.rows : 0;
  let base = 0;
  const at = (name: string) => offsets.has(name) ? base + offsets.get(name)! : 0;
  return {
    bytes,
    stage(start) {
      base = start;
      const view = new Uint8Array(memory.buffer);
      for (const { name, data } of parts) {
        view.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at(name));
      }
    },
    decode(r0, nr, out, colsP) {
      decoderFor(memory)(
        at("idx"),
        indexBits(config.centroids),
        at("cent"),
        at("ridx"),
        config.resCentroids > 0 ? indexBits(config.resCentroids) : 0,
        at("rcent"),
        config.vectorLen,
        Math.ceil(m.rows / config.vectorLen),
        m.cols,
        o,
        at("outl"),
        at("perm"),
        at("scale"),
        at("bias"),
        r0,
        nr,
        out,
        colsP,
      );
    },
  };
}
