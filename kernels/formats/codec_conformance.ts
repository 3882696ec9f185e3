/**
 * One table of properties every row codec must have (in the manner of Hono's router tests),
 * {@linkcode CODEC_PROPERTIES}: zero, constant, Gaussian and outlier rows, of a length that fills
 * whole blocks (256) and one that does not (172, as stories260K's FFN down projection), decode
 * within the error bound the codec's format module declares ({@linkcode boundOf}; the modules'
 * comments derive them). `codec_conformance_test.ts` runs it against every registered codec;
 * bit-exactness against llama.cpp, OCP and vLLM references is tested beside each codec and in
 * harness/methods/rtn_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { RowCodec } from "../../core/coded.ts";
import type { ErrorBound, WeightFormat } from "./format.ts";
import { RowLengthError } from "./row_codecs.ts";

/** Thrown when a format module declares no error bound for one of its codecs. */
export class MissingBoundError extends Error {
  override name = "MissingBoundError";
}

/** The first of `format`'s bounds whose pattern matches codec `codec`. */
export function boundOf(format: WeightFormat, codec: string): ErrorBound {
  const found = format.bounds.find(({ pattern }) => pattern.test(codec));
  if (found === undefined) {
    throw new MissingBoundError(
      `No error bound for codec "${codec}": add one to the bounds of format "${format.name}"`,
    );
  }
  return found.bound;
}

// A fixed-seed LCG and Box–Muller: inputs are the same on every run.
function gaussians(n: number, seed: number): Float32Array {
  let s = seed;
  const uniform = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s + 0.5) / 2147483648;
  };
  return Float32Array.from(
    { length: n },
    () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()),
  );
}

/** Input matrices: `rows` rows of `cols` values. */
const INPUTS: Record<string, (rows: number, cols: number) => Float32Array> = {
  zero: (rows, cols) => new Float32Array(rows * cols),
  constant: (rows, cols) => new Float32Array(rows * cols).fill(0.375),
  gaussian: (rows, cols) => gaussians(rows * cols, 7).map((v) => v * 0.02),
  // One weight in 37 is 60× larger, as the outlier channels of LLM weights.
  outliers: (rows, cols) =>
    gaussians(rows * cols, 11).map((v, i) => v * (i % 37 === 5 ? 1.2 : 0.02)),
};

const ROWS = 6;
const COLS = [256, 172];

interface Encoded {
  data: Float32Array;
  cols: number;
  tensorScale: number;
  bytes: Uint8Array[];
  decoded: Float32Array[];
}

function encodeAll(codec: RowCodec, data: Float32Array, cols: number): Encoded {
  const tensorScale = codec.tensorScale(data);
  const bytes: Uint8Array[] = [];
  const decoded: Float32Array[] = [];
  for (let r = 0; r < data.length / cols; r++) {
    const out = new Uint8Array(codec.rowBytes(cols));
    codec.encodeRow(data.subarray(r * cols, (r + 1) * cols), out, tensorScale);
    const back = new Float32Array(cols);
    codec.decodeRow(out, back, tensorScale);
    bytes.push(out);
    decoded.push(back);
  }
  return { data, cols, tensorScale, bytes, decoded };
}

function absMax(values: Float32Array): number {
  return values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

function checkBound(codec: RowCodec, bound: ErrorBound, e: Encoded, input: string): void {
  const tensorAmax = absMax(e.data);
  for (const [r, back] of e.decoded.entries()) {
    const row = e.data.subarray(r * e.cols, (r + 1) * e.cols);
    const rowAmax = absMax(row);
    // A scaled minifloat's group is in its name (`fp8_e4m3-g32-bf16`); its blockSize is 1.
    const block = bound.scope === "group"
      ? Number(/-g(\d+)-/.exec(codec.name)![1])
      : codec.blockSize;
    for (let c = 0; c < e.cols; c++) {
      const start = c - (c % block);
      const amax = bound.scope === "element"
        ? Math.abs(row[c]!)
        : bound.scope === "block" || bound.scope === "group"
        ? absMax(row.subarray(start, start + block))
        : bound.scope === "row"
        ? rowAmax
        : tensorAmax;
      const error = Math.abs(back[c]! - row[c]!);
      const limit = bound.rel * amax + (bound.abs ?? 0);
      if (!(error <= limit * (1 + 1e-6))) {
        assert.fail(
          `${codec.name}, ${input} ${e.cols} columns, row ${r} column ${c}: ${row[c]} decoded ` +
            `as ${back[c]}, error ${error} > ${limit} (${bound.rel} × ${bound.scope} amax ${amax})`,
        );
      }
    }
  }
}

/**
 * The properties every codec must have, each run over every input and row length; `bound` is the
 * codec's error bound ({@linkcode boundOf}).
 */
export const CODEC_PROPERTIES: Readonly<
  Record<string, (codec: RowCodec, bound: ErrorBound) => void>
> = {
  "zero rows decode to exact zeros": (codec) => {
    for (const cols of COLS) {
      for (const back of encodeAll(codec, INPUTS.zero!(ROWS, cols), cols).decoded) {
        assert.ok(back.every((v) => v === 0), `${codec.name}: ${back.slice(0, 8)}`);
      }
    }
  },
  "constant rows of whole blocks decode to one value, within the bound": (codec, bound) => {
    const e = encodeAll(codec, INPUTS.constant!(ROWS, 256), 256);
    for (const back of e.decoded) assert.ok(back.every((v) => v === back[0]), `${back}`);
    checkBound(codec, bound, e, "constant");
    checkBound(codec, bound, encodeAll(codec, INPUTS.constant!(ROWS, 172), 172), "constant");
  },
  "Gaussian and outlier rows decode within the format's error bound": (codec, bound) => {
    for (const input of ["gaussian", "outliers"]) {
      for (const cols of COLS) {
        checkBound(codec, bound, encodeAll(codec, INPUTS[input]!(ROWS, cols), cols), input);
      }
    }
  },
  "re-encoding decoded rows gives the same values (encoders that search scales excepted)": (
    codec,
    bound,
  ) => {
    if (bound.searches) return;
    for (const cols of COLS) {
      const first = encodeAll(codec, INPUTS.outliers!(ROWS, cols), cols);
      const again = encodeAll(codec, concat(first.decoded), cols);
      assert.deepEqual(again.decoded, first.decoded);
    }
  },
  "rowBytes and bitsPerWeight match the bytes produced; other lengths are refused": (codec) => {
    for (const cols of [...COLS, 1, 31, 4096]) {
      const rowBytes = codec.rowBytes(cols);
      const bits = codec.bitsPerWeight(cols) * cols;
      assert.ok(Math.abs(bits - 8 * rowBytes) < 1e-9 * rowBytes, `${codec.name} ${cols}: ${bits}`);
      const values = gaussians(cols, cols);
      const scale = codec.tensorScale(values);
      for (const wrong of [rowBytes - 1, rowBytes + 1]) {
        assert.throws(
          () => codec.encodeRow(values, new Uint8Array(wrong), scale),
          RowLengthError,
        );
        assert.throws(
          () => codec.decodeRow(new Uint8Array(wrong), new Float32Array(cols), scale),
          RowLengthError,
        );
      }
      // Blocks are whole: the padded length's bytes are the row's bytes.
      const block = codec.blockSize;
      if (block > 1) assert.equal(rowBytes, codec.rowBytes(Math.ceil(cols / block) * block));
    }
  },
  "encoding is deterministic and writes every byte of the row": (codec) => {
    for (const cols of COLS) {
      const values = INPUTS.outliers!(1, cols);
      const scale = codec.tensorScale(values);
      const a = new Uint8Array(codec.rowBytes(cols));
      const b = new Uint8Array(codec.rowBytes(cols)).fill(0xff);
      codec.encodeRow(values, a, scale);
      codec.encodeRow(values.slice(), b, scale);
      assert.deepEqual(b, a);
    }
  },
};

function concat(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let o = 0;
  for (const r of rows) {
    out.set(r, o);
    o += r.length;
  }
  return out;
}
