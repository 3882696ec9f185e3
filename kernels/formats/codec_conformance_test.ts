/**
 * One table of properties run against every registered row codec (in the manner of Hono's router
 * tests): zero, constant, Gaussian and outlier rows, of a length that fills whole blocks (256) and
 * one that does not (172, as stories260K's FFN down projection). Error bounds follow from each
 * format's grid; bit-exactness against llama.cpp, OCP and vLLM references is tested beside each
 * codec and in harness/methods/rtn_test.ts.
 */
import assert from "node:assert/strict";
import type { RowCodec } from "../../core/coded.ts";
import { ensureRowCodec, rowCodecs } from "./codecs.ts";
import { FP4_E2M1, FP6_E3M2, FP8_E4M3 } from "./minifloat.ts";
import { RowLengthError } from "./row_codecs.ts";
import { scaledMinifloatCodec } from "./scaled_minifloat.ts";

// Grouped scaled minifloats are registered on first use; put a few in the table.
ensureRowCodec(scaledMinifloatCodec({ element: FP8_E4M3, group: 32, scaleDtype: "bf16" }));
ensureRowCodec(scaledMinifloatCodec({ element: FP4_E2M1, group: 64, scaleDtype: "f16" }));
ensureRowCodec(scaledMinifloatCodec({ element: FP6_E3M2, group: 128, scaleDtype: "f16" }));

/**
 * `|decode(encode(x)) − x| ≤ rel · amax + abs`, with amax over the scope that one scale serves:
 * the element itself, the codec's block (a K-quant's 256-value super-block), a scaled
 * minifloat's group, the row, or the whole matrix (per-tensor scales).
 */
interface Bound {
  rel: number;
  abs?: number;
  scope: "element" | "block" | "group" | "row" | "tensor";
}

/** Bounds by codec name; the first matching pattern wins. The comments derive them. */
const BOUNDS: readonly (readonly [RegExp, Bound])[] = [
  // Half an ulp: 2^-11 relative for f16 normals, half the smallest subnormal below; 2^-8 for bf16.
  [/^f16$/, { rel: 2 ** -11, abs: 2 ** -25, scope: "element" }],
  [/^bf16$/, { rel: 2 ** -8, scope: "element" }],
  // Linear grids with an f16 scale: half a step, or a whole one where the code range stops a step
  // short of +amax (q4_0: d = max/-8, codes -8…7), plus the scale's f16 rounding.
  [/^q8_0$/, { rel: 1 / 254 + 2 ** -10, scope: "block" }],
  [/^q4_0$/, { rel: 1 / 8 + 2 ** -9, scope: "block" }],
  [/^q5_0$/, { rel: 1 / 16 + 2 ** -9, scope: "block" }],
  [/^q4_1$/, { rel: 1 / 15 + 2 ** -9, scope: "block" }],
  [/^q5_1$/, { rel: 1 / 31 + 2 ** -9, scope: "block" }],
  [/^q2_0$/, { rel: 1 / 2 + 2 ** -10, scope: "block" }],
  // IQ4_NL: half the widest gap of its levels (24 of 127), the grid stretched by up to 127/120
  // by the scale search.
  [/^iq4_nl$/, { rel: (12 / 127) * (127 / 120), scope: "block" }],
  // K-quants: sub-block scales and minima quantized to 4–8 bits relative to the super-block's;
  // bounds are a step of each grid over the super-block amax.
  [/^q2_k$/, { rel: 0.4, scope: "block" }],
  [/^q3_k$/, { rel: 0.25, scope: "block" }],
  [/^q4_k$/, { rel: 0.1, scope: "block" }],
  [/^q5_k$/, { rel: 0.06, scope: "block" }],
  [/^q6_k$/, { rel: 1 / 32 + 2 ** -8, scope: "block" }],
  // MX (floor of log2 amax): amax lands in [2^emax, 2^(emax+1)); the error is at most the clamp
  // to the element's max or half an ulp of the top binade, over amax.
  [/^(gguf_)?mxfp4$/, { rel: 0.25, scope: "block" }],
  [/^mxfp6_e2m3$/, { rel: 0.0625, scope: "block" }],
  [/^mxfp6_e3m2$/, { rel: 0.125, scope: "block" }],
  [/^mxfp8_e4m3$/, { rel: 0.125, scope: "block" }],
  [/^mxfp8_e5m2$/, { rel: 0.125, scope: "block" }],
  [/^mxint8$/, { rel: 1 / 128, scope: "block" }],
  // NVFP4: half an E2M1 ulp (1 in [4, 6]) when the E4M3 block scale rounded up by 2^-4.
  [/^nvfp4$/, { rel: (1 + 2 ** -4) / 6 + 2 ** -10, scope: "block" }],
  // Scaled minifloats: amax maps to elem_max; half an ulp of the top binade over elem_max, plus
  // the rounding of an f16/bf16 scale.
  ...scaledBounds("fp8_e4m3", 16 / 448),
  ...scaledBounds("fp8_e5m2", 4096 / 57344),
  ...scaledBounds("fp6_e2m3", 0.25 / 7.5),
  ...scaledBounds("fp6_e3m2", 2 / 28),
  ...scaledBounds("fp4_e2m1", 1 / 6),
];

function scaledBounds(element: string, rel: number): [RegExp, Bound][] {
  const r = rel + 2 ** -8;
  return [
    [new RegExp(`^${element}-ch-`), { rel: r, scope: "row" }],
    [new RegExp(`^${element}-g\\d+-`), { rel: r, scope: "group" }],
    [new RegExp(`^${element}-pt$`), { rel: r, scope: "tensor" }],
  ];
}

function boundFor(name: string): Bound {
  const bound = BOUNDS.find(([pattern]) => pattern.test(name))?.[1];
  if (bound === undefined) throw new Error(`No error bound for codec "${name}": add one to BOUNDS`);
  return bound;
}

/** Encoders that search scales (K-quants, IQ4_NL) may move values already on their grid. */
const SEARCHING = /^(q[2-6]_k|iq4_nl)$/;

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

function checkBound(codec: RowCodec, e: Encoded, input: string): void {
  const bound = boundFor(codec.name);
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

/** The properties every codec must have, each run over every input and row length. */
const PROPERTIES: Record<string, (codec: RowCodec) => void> = {
  "zero rows decode to exact zeros": (codec) => {
    for (const cols of COLS) {
      for (const back of encodeAll(codec, INPUTS.zero!(ROWS, cols), cols).decoded) {
        assert.ok(back.every((v) => v === 0), `${codec.name}: ${back.slice(0, 8)}`);
      }
    }
  },
  "constant rows of whole blocks decode to one value, within the bound": (codec) => {
    const e = encodeAll(codec, INPUTS.constant!(ROWS, 256), 256);
    for (const back of e.decoded) assert.ok(back.every((v) => v === back[0]), `${back}`);
    checkBound(codec, e, "constant");
    checkBound(codec, encodeAll(codec, INPUTS.constant!(ROWS, 172), 172), "constant");
  },
  "Gaussian and outlier rows decode within the format's error bound": (codec) => {
    for (const input of ["gaussian", "outliers"]) {
      for (const cols of COLS) {
        checkBound(codec, encodeAll(codec, INPUTS[input]!(ROWS, cols), cols), input);
      }
    }
  },
  "re-encoding decoded rows gives the same values (encoders that search scales excepted)": (
    codec,
  ) => {
    if (SEARCHING.test(codec.name)) return;
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

for (const name of rowCodecs.names()) {
  for (const [property, check] of Object.entries(PROPERTIES)) {
    Deno.test(`${name}: ${property}`, () => check(rowCodecs.get(name)));
  }
}

Deno.test("every registered codec has an error bound", () => {
  for (const name of rowCodecs.names()) boundFor(name);
  assert.ok(rowCodecs.names().length >= 35);
});
