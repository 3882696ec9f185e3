/**
 * The conformance suite every {@linkcode Backend} passes, in the manner of Hono's shared router
 * tests: {@linkcode describeBackendConformance} registers the same `Deno.test`s for any backend,
 * comparing it with the CPU reference kernels (`kernels/cpu/ops.ts`, float64 accumulation).
 *
 * Tolerances (`‖a − b‖∞ ≤ tol · ‖ref‖∞` over the whole output):
 *
 * | check                                                     | tol  |
 * | --------------------------------------------------------- | ---- |
 * | matmul, every weight format, GEMV (T = 1) and GEMM (T > 4) | 1e-5 |
 * | matmul, codebook formats (QuIP# E8P, AQLM, VPTQ) and QuIP, T = 1 and 6 | 1e-5 |
 * | RMSNorm, RoPE, SwiGLU                                      | 1e-6 |
 * | attention (GQA, KV cache, chunked softmax)                 | 1e-5 |
 * | stories260K logits, f32 and RTN int4-g32 / int8 weights    | 1e-3 |
 * | matmul with run-time integer activations, every int layout | 1e-5 |
 * | stories260K with run-time integer activations (W8A8 …)     | 5e-2 |
 * | stories260K with a quantized KV cache (KIVI int4, int2, FP8) | 1e-3 |
 * | a synthetic model with biases, q/k norms, RoPE scaling, mixed formats | 1e-4 |
 * | the same with QuaRot's run-time Hadamards, MLP 5632 wide  | 1e-4 |
 * | the same with a quantized KV cache (KIVI int4, projections step by step) | 1e-3 |
 * | prefill then one-token decode steps vs one batched forward | 1e-4 |
 * | a suite's perplexities on this backend vs `cpu` (relative) | 1e-4 (W8A8: 1e-3) |
 * | the same for QuIP# (2–4 bits), AQLM, VPTQ and QuIP, none decoded to f32 | 1e-4 |
 *
 * A float32 backend lands near 1e-6 on all of them; the looser model-level bounds leave room for
 * backends that compute in lower precision. Op tests need {@linkcode Backend.ops}; a backend
 * without them runs the model-level checks only.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Backend, BackendOps } from "../kernels/backend.ts";
import { cpuOps } from "../kernels/cpu/backend.ts";
import { cpuBackend } from "../kernels/cpu/backend.ts";
import {
  dense,
  type LlamaModel,
  type Matrix,
  type OnlineHadamards,
  type Tokenizer,
} from "../core/model.ts";
import { quantizeInt } from "../kernels/formats/int.ts";
import type { ScaleDtype } from "../core/model.ts";
import { pseudoRandom, relativeError } from "../core/test_values.ts";
import { e8pMatrix } from "../kernels/formats/e8p_format.ts";
import { buildAqlmMatrix } from "../kernels/formats/aqlm.ts";
import { buildVptq, parseVptqName, toHalves } from "../kernels/formats/vptq.ts";
import { quipMatrix } from "../kernels/formats/quip_format.ts";

import { rowCodecs } from "../kernels/formats/codecs.ts";
import { encodeMatrix } from "../kernels/formats/row_codecs.ts";
import { hasShared, sharedPath } from "../core/shared.ts";
import { loadLlama2c } from "./models/llama2c.ts";
import { rtn } from "./methods/rtn.ts";
import type { FormatSpec } from "../core/suite_types.ts";
import { parseSuite } from "./suite/load.ts";
import { runSuite } from "./runner/run.ts";
import {
  registerOnly,
  SLOW_ADAPTER_SUBSET,
  slowAdapterReason,
} from "../kernels/webgpu/test_gate.ts";

/** Which parts of the suite to register. */
export interface ConformanceOptions {
  /** Op × format tests (default true; needs `backend.ops`). */
  ops?: boolean;
  /** Whole-model tests (default true). */
  models?: boolean;
  /** The suite run against `cpu` (default true; the backend must be in the registry). */
  suite?: boolean;
  /** Context for the model tests (default: the model's; small values test KV-cache limits). */
  maxSeqLen?: number;
}

function assertClose(actual: Float32Array, ref: Float32Array, tol: number, what: string): void {
  const err = relativeError(actual, ref);
  assert.ok(err <= tol, `${what}: relative error ${err} exceeds ${tol}`);
}

/** Integer layouts covered: bits, group (0 per channel, -1 per tensor), symmetric, scale type. */
const INT_CASES: [number, number, boolean, ScaleDtype][] = [
  [8, 0, true, "f16"],
  [8, 32, false, "f16"],
  [8, 0, true, "f32"],
  [4, 32, true, "f16"],
  [4, 128, false, "f16"],
  [4, 16, true, "f16"],
  [4, 64, true, "bf16"],
  [4, -1, true, "f16"],
  [6, 32, true, "f16"],
  [6, 0, false, "f16"],
  [3, 64, true, "f16"],
  [3, 0, false, "f16"],
  [2, 32, true, "f16"],
  [2, 16, false, "f16"],
];

/** Every weight format the matmul tests cover, as `[name, make(rows, cols, data)]`. */
function weightFormats(): [string, (r: number, c: number, w: Float32Array) => Matrix][] {
  return [
    ["f32", (r, c, w) => dense(r, c, w)],
    ...INT_CASES.map(([bits, group, symmetric, scaleDtype]) =>
      [
        `int${bits}${group > 0 ? `-g${group}` : group < 0 ? "-pt" : ""}${symmetric ? "" : "-asym"}${
          scaleDtype === "f16" ? "" : `-${scaleDtype}`
        }`,
        (r: number, c: number, w: Float32Array) =>
          quantizeInt(w, r, c, { bits, group, symmetric, scaleDtype }),
      ] as [string, (r: number, c: number, w: Float32Array) => Matrix]
    ),
    ...rowCodecs.names().map((name) =>
      [
        name,
        (r: number, c: number, w: Float32Array) => encodeMatrix(rowCodecs.get(name), r, c, w),
      ] as [string, (r: number, c: number, w: Float32Array) => Matrix]
    ),
  ];
}

/** Codes in `[0, size)` from seed `seed`. */
function randomCodes(n: number, size: number, seed: number): Int32Array {
  return Int32Array.from(pseudoRandom(n, seed), (v) => Math.floor((v + 0.5) * size) % size);
}

/**
 * The codebook formats the matmul tests cover, as `[name, rows, cols, matrix]`: random codes and
 * side tensors (their rows cannot be encoded alone). 48 × 172 for QuIP#: both sides have Hadamard
 * transforms (12 · 4, 172) and the last 8-vector is padded; AQLM and VPTQ at 37 × 172 with short
 * last groups, codes that straddle words (`aqlm-2x6-g3`, `vptq-v3-k64-0`) and VPTQ's outlier
 * columns, permutation and norm. QuIP at 37 × 172: rotations of unequal factors (37 prime; 86 · 2),
 * blocked (one factor per column and row) and Kronecker, 2 and 3 bits.
 */
function codebookFormats(): [string, number, number, Matrix][] {
  const e8p = (bits: 2 | 3 | 4): [string, number, number, Matrix] => {
    const [rows, cols] = [48, 172];
    const n = rows * Math.ceil(cols / 8);
    const codes = Uint16Array.from(randomCodes(n, 65536, 20 + bits));
    const su = Uint8Array.from(randomCodes(Math.ceil(cols / 8), 256, 30));
    const sv = toHalves(pseudoRandom(rows, 31).map((v) => 0.05 * v));
    const residual = bits === 2 ? undefined : {
      bits,
      codes: Uint16Array.from(randomCodes(n, bits === 3 ? 256 : 65536, 32)),
    };
    return [`e8p${bits}`, rows, cols, e8pMatrix(rows, cols, codes, su, sv, residual)];
  };
  const aqlm = (M: number, B: number, g: number): [string, number, number, Matrix] => {
    const [rows, cols] = [37, 172];
    const groups = Math.ceil(cols / g);
    return [
      `aqlm-${M}x${B}-g${g}`,
      rows,
      cols,
      buildAqlmMatrix({
        scheme: { codebooks: M, bits: B, groupSize: g },
        rows,
        cols,
        codes: randomCodes(rows * groups * M, 2 ** B, 40 + B),
        codebooks: pseudoRandom(M * 2 ** B * g, 41),
        scales: pseudoRandom(rows, 42).map((v) => 1 + v),
      }),
    ];
  };
  const vptq = (name: string, extras: boolean): [string, number, number, Matrix] => {
    const [rows, cols] = [37, 172];
    const config = parseVptqName(name);
    const v = config.vectorLen;
    const o = extras ? 5 : 0;
    const n = Math.ceil(rows / v) * (cols - o);
    const r = config.resCentroids;
    const perm = Array.from({ length: cols }, (_, j) => (j * 97) % cols);
    return [
      `${name}${extras ? " (outliers, perm, norm)" : ""}`,
      rows,
      cols,
      buildVptq({
        rows,
        cols,
        config,
        centroids: pseudoRandom(config.centroids * v, 50),
        indices: randomCodes(n, config.centroids, 51),
        ...(r > 0
          ? { resCentroids: pseudoRandom(r * v, 52), resIndices: randomCodes(n, r, 53) }
          : {}),
        ...(extras
          ? {
            outlierCols: o,
            outliers: pseudoRandom(rows * o, 54),
            perm,
            normScale: pseudoRandom(cols, 55).map((x) => 1 + x),
            normBias: pseudoRandom(cols, 56).map((x) => 0.1 * x),
          }
          : {}),
      }),
    ];
  };
  const quip = (bits: 2 | 3, mode: 0 | 1): [string, number, number, Matrix] => {
    const [rows, cols] = [37, 172];
    const codes = Uint8Array.from(randomCodes(rows * cols, 2 ** bits, 60 + bits));
    return [
      `quip-int${bits} (${mode === 0 ? "blocked" : "Kronecker"})`,
      rows,
      cols,
      quipMatrix(rows, cols, bits, codes, {
        scale: 0.05,
        colScale: pseudoRandom(cols, 61).map((v) => 1 + v),
        seedU: 62,
        seedV: 63,
        mode,
      }),
    ];
  };
  return [
    e8p(2),
    e8p(3),
    e8p(4),
    quip(2, 0),
    quip(3, 1),
    aqlm(1, 16, 8),
    aqlm(2, 8, 8),
    aqlm(1, 8, 4),
    aqlm(3, 4, 4),
    aqlm(1, 4, 2),
    aqlm(2, 6, 3),
    vptq("vptq-v2-k16-0", false),
    vptq("vptq-v3-k64-0", false),
    vptq("vptq-v4-k256-16", true),
  ];
}

/** Weight layouts × run-time activation formats of the activation matmul tests. */
const ACTIVATION_CASES: [string, number, number, boolean, string][] = [
  ["int8", 8, 0, true, "int8"],
  ["int8-asym", 8, 0, false, "int8"],
  ["int4-g32", 4, 32, true, "int8"],
  ["int4-g128-asym", 4, 128, false, "int8"],
  ["int2-g64", 2, 64, true, "int8"],
  ["int3-g32", 3, 32, true, "int8"],
  ["int4-g16", 4, 16, true, "int8"],
  ["f32", 32, 0, true, "int8"],
  ["int8", 8, 0, true, "int4"],
  ["int4-g32", 4, 32, true, "int4"],
  ["int6-g32", 6, 32, true, "int6"],
  ["int4-g32-asym", 4, 32, false, "int6"],
  ["int8", 8, 0, true, "fp8"],
  ["int4-g32", 4, 32, true, "fp8_e5m2"],
];

function registerOps(
  name: string,
  ops: BackendOps,
  ignore: boolean,
  runtimeActivations?: readonly string[],
): void {
  const test = (label: string, fn: () => Promise<void>) =>
    Deno.test({ name: `${name}: ${label}`, ignore, fn });
  for (const [format, make] of weightFormats()) {
    test(`matmul ${format}`, async () => {
      // 172 columns: a short last chunk and group; 37 rows: partial workgroups.
      const w = make(37, 172, pseudoRandom(37 * 172, 1));
      for (const T of [1, 6]) {
        const x = pseudoRandom(T * 172, 2 + T);
        assertClose(await ops.matmul(x, w), await cpuOps.matmul(x, w), 1e-5, `T=${T}`);
      }
    });
  }
  for (const [format, rows, cols, w] of codebookFormats()) {
    test(`matmul ${format}`, async () => {
      for (const T of [1, 6]) {
        const x = pseudoRandom(T * cols, 2 + T);
        assertClose(
          await ops.matmul(x, w),
          await cpuOps.matmul(x, w),
          1e-5,
          `${rows}x${cols} T=${T}`,
        );
      }
    });
  }
  const intActivations = runtimeActivations?.includes("int8") ?? false;
  for (const [format, make] of weightFormats()) {
    Deno.test({
      name: `${name}: matmul ${format} with run-time int8 activations, short rows`,
      ignore: ignore || !intActivations,
      async fn() {
        const w = make(37, 172, pseudoRandom(37 * 172, 1));
        for (const T of [1, 6]) {
          const x = pseudoRandom(T * 172, 2 + T);
          assertClose(
            await ops.matmul(x, w, "int8"),
            await cpuOps.matmul(x, w, "int8"),
            1e-5,
            `T=${T}`,
          );
        }
      },
    });
  }
  for (const [act, max] of [["fp8", 448], ["fp8_e5m2", 57344]] as const) {
    Deno.test({
      name: `${name}: ${act} activations round ties to even and subnormals exactly`,
      ignore: ignore || !runtimeActivations?.includes(act),
      async fn() {
        // The row's maximum makes the scale exactly 1, so x / scale is x; an identity weight
        // matrix passes the rounded values through unchanged.
        const q = act === "fp8" ? 2 ** -9 : 2 ** -16; // smallest subnormal
        const x = Float32Array.from([
          max, // sets the scale
          1.0625,
          1.1875,
          -1.0625,
          -1.1875, // ties between 3-bit (E4M3) mantissas
          1.125,
          1.375,
          -1.375, // ties between 2-bit (E5M2) mantissas
          1.5 * q,
          2.5 * q,
          0.5 * q,
          -1.5 * q,
          3.49 * q, // subnormal ties and near-ties
          -max * (1 - 2 ** -12), // rounds to the largest value
          0.3,
          -7.77,
          100.3,
          1e-3,
          0, // ordinary values
        ]);
        const n = x.length;
        const eye = dense(
          n,
          n,
          Float32Array.from({ length: n * n }, (_, i) => i % (n + 1) ? 0 : 1),
        );
        assert.deepEqual(await ops.matmul(x, eye, act), await cpuOps.matmul(x, eye, act));
      },
    });
  }
  for (const [format, bits, group, symmetric, act] of ACTIVATION_CASES) {
    Deno.test({
      name: `${name}: matmul ${format} with run-time ${act} activations`,
      ignore: ignore || !runtimeActivations?.includes(act),
      async fn() {
        // 9000 columns (many chunks, a short last one), 172 (short last group); T = 1 is the
        // integer-activation GEMV where the layout has one, T = 6 the GEMM on dequantized rows.
        for (const [rows, cols] of [[37, 172], [5, 9000]] as const) {
          const data = pseudoRandom(rows * cols, 5);
          const w = bits === 32
            ? dense(rows, cols, data)
            : quantizeInt(data, rows, cols, { bits, group, symmetric });
          for (const T of [1, 6]) {
            const x = pseudoRandom(T * cols, 6 + T);
            assertClose(
              await ops.matmul(x, w, act),
              await cpuOps.matmul(x, w, act),
              1e-5,
              `${rows}x${cols} T=${T}`,
            );
          }
        }
      },
    });
  }
  test("matmul long rows and many tokens", async () => {
    // 9000 columns: more chunks than threads per row; 171: activation rows not 16-byte
    // aligned; 70 tokens: two GEMM token tiles.
    for (const [rows, cols, T] of [[5, 9000, 1], [3, 171, 3], [70, 96, 70]]) {
      const data = pseudoRandom(rows! * cols!, 3);
      const x = pseudoRandom(T! * cols!, 4);
      for (
        const w of [
          dense(rows!, cols!, data),
          quantizeInt(data, rows!, cols!, {
            bits: 4,
            group: 32,
            symmetric: true,
          }),
        ]
      ) {
        assertClose(await ops.matmul(x, w), await cpuOps.matmul(x, w), 1e-5, `${rows}x${cols}`);
      }
    }
  });
  test("rmsnorm", async () => {
    for (const dim of [64, 300]) {
      const x = pseudoRandom(3 * dim, 5).map((v) => v * 4);
      const weight = pseudoRandom(dim, 6);
      assertClose(
        await ops.rmsnorm(x, weight, 1e-5),
        await cpuOps.rmsnorm(x, weight, 1e-5),
        1e-6,
        `${dim}`,
      );
    }
  });
  test("rope", async () => {
    for (const style of ["interleaved", "half"] as const) {
      for (const [heads, headDim, pos] of [[8, 8, 0], [4, 64, 37]]) {
        const x = pseudoRandom(3 * heads! * headDim!, 7);
        assertClose(
          await ops.rope(x, heads!, headDim!, pos!, 10000, style),
          await cpuOps.rope(x, heads!, headDim!, pos!, 10000, style),
          1e-6,
          `${style} ${headDim} at ${pos}`,
        );
      }
    }
  });
  test("swiglu", async () => {
    const gate = pseudoRandom(1000, 8).map((v) => v * 60);
    const up = pseudoRandom(1000, 9);
    assertClose(await ops.swiglu(gate, up), await cpuOps.swiglu(gate, up), 1e-6, "swiglu");
  });
  test("attention", async () => {
    // Grouped heads, a cache longer than one 64-key chunk, prefill rows and decode rows (split
    // over blocks of 64 cached positions: 5 and 3 blocks, the last ones partly filled; a head
    // size that is no multiple of 4 takes the unsplit kernel).
    for (
      const [nHeads, nKv, headDim, pos, T] of [
        [8, 4, 16, 100, 3],
        [4, 1, 128, 300, 1],
        [8, 2, 64, 130, 1],
        [4, 2, 6, 70, 1],
      ]
    ) {
      const len = pos! + T!;
      const q = pseudoRandom(T! * nHeads! * headDim!, 10).map((v) => v * 3);
      const keys = pseudoRandom(len * nKv! * headDim!, 11);
      const values = pseudoRandom(len * nKv! * headDim!, 12);
      assertClose(
        await ops.attention(q, keys, values, pos!, nHeads!, nKv!, headDim!),
        await cpuOps.attention(q, keys, values, pos!, nHeads!, nKv!, headDim!),
        1e-5,
        `${nHeads}/${nKv} heads of ${headDim} at ${pos}`,
      );
    }
  });
}

/** A minimal tokenizer for synthetic models (ids only). */
const ID_TOKENIZER: Tokenizer = {
  vocabSize: 96,
  bosId: 1,
  eosId: 2,
  encode: (text) => [...text].map((ch) => ch.charCodeAt(0) % 96),
  decode: (ids) => ids.join(" "),
};

/**
 * A two-layer model exercising every optional part of the forward pass: biases, query/key
 * norms, llama3 RoPE scaling, half-split RoPE, grouped heads, a query width unlike the model
 * width, and a different weight format per projection; with `hadamard`, QuaRot's run-time
 * Hadamard steps at an MLP width of `hiddenDim` (default 80).
 */
export function syntheticModel(
  o: { hiddenDim?: number; hadamard?: OnlineHadamards } = {},
): LlamaModel {
  const dim = 48;
  const hiddenDim = o.hiddenDim ?? 80;
  const nHeads = 4;
  const nKvHeads = 2;
  const headDim = 16;
  const vocabSize = 96;
  let seed = 100;
  const rand = (n: number, scale = 1) => pseudoRandom(n, seed++).map((v) => v * scale);
  const coded = (name: string, rows: number, cols: number) =>
    rowCodecs.has(name)
      ? encodeMatrix(rowCodecs.get(name), rows, cols, rand(rows * cols, 0.4))
      : dense(rows, cols, rand(rows * cols, 0.4));
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const layer = (i: number) => ({
    attnNorm: rand(dim).map((v) => 1 + v),
    wq: dense(qDim, dim, rand(qDim * dim, 0.4)),
    wk: quantizeInt(rand(kvDim * dim, 0.4), kvDim, dim, { bits: 4, group: 16, symmetric: false }),
    wv: coded(i ? "q8_0" : "mxfp4", kvDim, dim),
    wo: coded(i ? "nvfp4" : "q4_0", dim, qDim),
    ffnNorm: rand(dim).map((v) => 1 + v),
    w1: coded("fp8_e4m3-ch-f32", hiddenDim, dim),
    w2: quantizeInt(rand(dim * hiddenDim, 0.4), dim, hiddenDim, {
      bits: 3,
      group: 0,
      symmetric: true,
    }),
    w3: coded(i ? "q2_k" : "q5_1", hiddenDim, dim),
    bq: rand(qDim, 0.1),
    bk: rand(kvDim, 0.1),
    bv: rand(kvDim, 0.1),
    bo: rand(dim, 0.1),
    qNorm: rand(headDim).map((v) => 1 + v),
    kNorm: rand(headDim).map((v) => 1 + v),
    ...(o.hadamard ? { hadamard: o.hadamard } : {}),
  });
  return {
    config: {
      dim,
      hiddenDim,
      nLayers: 2,
      nHeads,
      nKvHeads,
      headDim,
      vocabSize,
      maxSeqLen: 64,
      ropeTheta: 10000,
      normEps: 1e-5,
      ropeStyle: "half",
      ropeScaling: {
        type: "llama3",
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositions: 16,
      },
    },
    weights: {
      tokenEmbedding: rand(vocabSize * dim),
      layers: [layer(0), layer(1)],
      finalNorm: rand(dim).map((v) => 1 + v),
      output: dense(vocabSize, dim, rand(vocabSize * dim, 0.4)),
      tiedEmbeddings: false,
    },
    tokenizer: ID_TOKENIZER,
  };
}

/** Logits of one batched forward, then of a prefill of `split` tokens and single-token steps. */
async function batchedAndStepwise(
  backend: Backend,
  model: LlamaModel,
  tokens: number[],
  split: number,
  maxSeqLen?: number,
): Promise<[Float32Array, Float32Array]> {
  const runner = await backend.load(model, { maxSeqLen });
  try {
    const batched = await runner.forward(tokens, 0);
    runner.reset();
    const stepwise = new Float32Array(batched.length);
    stepwise.set(await runner.forward(tokens.slice(0, split), 0));
    const vocab = model.config.vocabSize;
    for (let t = split; t < tokens.length; t++) {
      stepwise.set(await runner.forward([tokens[t]!], t), t * vocab);
    }
    return [batched, stepwise];
  } finally {
    runner.dispose();
  }
}

async function cpuLogits(model: LlamaModel, tokens: number[]): Promise<Float32Array> {
  const runner = await cpuBackend.load(model);
  return await runner.forward(tokens, 0);
}

const STORIES = ["models", "stories260K", "stories260K.bin"] as const;

/** The shared stories260K model with its tokenizer (callers skip when `hasShared(...STORIES)` fails). */
function loadStories(): ReturnType<typeof loadLlama2c> {
  return loadLlama2c(sharedPath(...STORIES), sharedPath("models", "stories260K", "tok512.bin"));
}

function registerModels(backend: Backend, ignore: boolean, maxSeqLen?: number): void {
  const haveStories = !ignore && hasShared(...STORIES);
  Deno.test({
    name: `${backend.name}: stories260K logits (f32, rtn int4-g32, rtn int8) and decode steps`,
    ignore: !haveStories,
    async fn() {
      const base = await loadStories();
      const tokens = [
        base.tokenizer.bosId,
        ...base.tokenizer.encode("Once upon a time, a little girl named Lily found a shiny key."),
      ];
      const formats: (FormatSpec | undefined)[] = [
        undefined,
        { id: "int4-g32", weights: "int4", group: 32, symmetric: true, options: {} },
        { id: "int8", weights: "int8", group: 0, symmetric: true, options: {} },
      ];
      for (const format of formats) {
        const model = format ? await rtn.quantize(base, format, {}, { seed: 0 }) : base;
        const [batched, stepwise] = await batchedAndStepwise(backend, model, tokens, 5, maxSeqLen);
        const label = format?.id ?? "f32";
        assertClose(batched, await cpuLogits(model, tokens), 1e-3, `${label} logits`);
        assertClose(stepwise, batched, 1e-4, `${label} prefill + decode vs batched`);
      }
    },
  });
  const intActivations = backend.runtimeQuantization?.activations.includes("int8") ?? false;
  Deno.test({
    name: `${backend.name}: stories260K with run-time int8 activations (W8A8, W4A8, W2A8)`,
    ignore: !haveStories || !intActivations,
    async fn() {
      const base = await loadStories();
      const tokens = [base.tokenizer.bosId, ...base.tokenizer.encode("The cat sat on a red mat.")];
      const rtnWith = (
        id: string,
        weights: string,
        group: number,
        symmetric: boolean,
        activations: string,
      ): FormatSpec => ({ id, weights, group, symmetric, options: { activations } });
      const formats = [
        rtnWith("w8a8", "int8", 0, true, "int8"),
        rtnWith("w4a8-g32-asym", "int4", 32, false, "int8"),
        rtnWith("w2a8-g64", "int2", 64, true, "int8"),
        rtnWith("w8a4", "int8", 0, true, "int4"),
      ];
      for (const format of formats) {
        const model = await rtn.quantize(base, format, {}, { seed: 0 });
        assert.equal(model.runtime?.activations, format.options.activations);
        const [batched, stepwise] = await batchedAndStepwise(backend, model, tokens, 3, maxSeqLen);
        // An activation within float rounding of a rounding tie (seen: −6.5000048) may take the
        // other code than on the CPU, which moves logits by up to about 1 % from that token on
        // (through the KV cache); the op tests check the codes themselves on equal inputs.
        assertClose(batched, await cpuLogits(model, tokens), 5e-2, `${format.id} logits`);
        assertClose(stepwise, batched, 5e-2, `${format.id} prefill + decode vs batched`);
      }
    },
  });
  Deno.test({
    name: `${backend.name}: stories260K with a quantized KV cache (KIVI int4, int2, fp8)`,
    ignore: !haveStories || !backend.runtimeQuantization?.kvCache,
    async fn() {
      const base = await loadStories();
      // Longer than the residual windows, so keys and values are quantized as they age; the
      // prefill ends inside a key block and the decode steps cross block boundaries.
      const tokens = [
        base.tokenizer.bosId,
        ...base.tokenizer.encode(
          "Once upon a time, a little girl named Lily found a shiny key in the park. She took it home.",
        ),
      ].slice(0, maxSeqLen ?? 40);
      const settings = [
        { format: "int4", group: 4, residual: 8 },
        { format: "int2", group: 0, residual: 8 },
        { format: "fp8", group: 8, residual: 0 },
      ];
      for (const kvCache of settings) {
        const model: LlamaModel = { ...base, runtime: { kvCache } };
        const [batched, stepwise] = await batchedAndStepwise(backend, model, tokens, 11, maxSeqLen);
        const label = JSON.stringify(kvCache);
        // The codes are the CPU's on equal inputs (kernels/webgpu/kv_quant_wgsl_test.ts), but keys
        // and values differ from the CPU's by float rounding, which moves a value near a rounding
        // boundary to the neighbouring code (seen: 4e-4 at int8 without a residual window).
        assertClose(batched, await cpuLogits(model, tokens), 1e-3, `${label} logits`);
        assertClose(stepwise, batched, 1e-3, `${label} prefill + decode vs batched`);
      }
    },
  });
  Deno.test({
    name: `${backend.name}: synthetic model (biases, q/k norms, RoPE scaling, mixed formats)`,
    ignore,
    async fn() {
      const model = syntheticModel();
      const tokens = [...pseudoRandom(20, 13)].map((v) => Math.floor((v + 0.5) * 96));
      const [batched, stepwise] = await batchedAndStepwise(backend, model, tokens, 7, maxSeqLen);
      assertClose(batched, await cpuLogits(model, tokens), 1e-4, "logits");
      assertClose(stepwise, batched, 1e-4, "prefill + decode vs batched");
    },
  });
  Deno.test({
    name:
      `${backend.name}: synthetic model with QuaRot's run-time Hadamards, MLP 5632 = 44 · 128 wide`,
    ignore,
    async fn() {
      // Queries and keys per head, the attention output per head and across the row, and the
      // down projection's input: 5632 values, more than one workgroup's memory holds.
      const model = syntheticModel({
        hiddenDim: 5632,
        hadamard: { qk: true, attention: true, down: true },
      });
      const tokens = [...pseudoRandom(8, 15)].map((v) => Math.floor((v + 0.5) * 96));
      const [batched, stepwise] = await batchedAndStepwise(backend, model, tokens, 5, maxSeqLen);
      assertClose(batched, await cpuLogits(model, tokens), 1e-4, "logits");
      assertClose(stepwise, batched, 1e-4, "prefill + decode vs batched");
    },
  });
  Deno.test({
    name: `${backend.name}: synthetic model with a quantized KV cache (projections step by step)`,
    ignore: ignore || !backend.runtimeQuantization?.kvCache,
    async fn() {
      // Biases and q/k norms keep q/k/v apart (no stacked projection), so the keys and values
      // reach a quantized cache's float window through the step-by-step path.
      const model: LlamaModel = {
        ...syntheticModel(),
        runtime: { kvCache: { format: "int4", group: 4, residual: 8 } },
      };
      const tokens = [...pseudoRandom(24, 14)].map((v) => Math.floor((v + 0.5) * 96));
      const [batched, stepwise] = await batchedAndStepwise(backend, model, tokens, 9, maxSeqLen);
      assertClose(batched, await cpuLogits(model, tokens), 1e-3, "logits");
      assertClose(stepwise, batched, 1e-3, "prefill + decode vs batched");
    },
  });
}

function registerSuite(backend: Backend, ignore: boolean): void {
  const intActivations = backend.runtimeQuantization?.activations.includes("int8") ?? false;
  const kvCache = backend.runtimeQuantization?.kvCache ?? false;
  const haveData = !ignore && hasShared(...STORIES) &&
    hasShared("data", "text", "tinystories_sample.txt");
  Deno.test({
    name: `${backend.name}: a suite run gives the CPU's perplexities`,
    ignore: !haveData,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "quantbench-conformance-" });
      try {
        const yaml = `name: conformance
models:
  - id: stories260K
    path: ${JSON.stringify(sharedPath(...STORIES))}
    tokenizer: ${JSON.stringify(sharedPath("models", "stories260K", "tok512.bin"))}
datasets:
  tiny: { kind: text, path: ${
          JSON.stringify(sharedPath("data", "text", "tinystories_sample.txt"))
        }, max_chars: 2500 }
methods: [none, rtn]
formats: [f32, { weights: int4, group: 32 }${
          intActivations ? ", { id: w8a8, weights: int8, activations: int8 }" : ""
        }${
          // Residual 32 of context 64: keys and values are quantized as they age.
          kvCache
            ? ", { id: kv4, weights: int4, group: 32, kv_cache: { format: int4, group: 16, residual: 32 } }"
            : ""}]
backends: ${JSON.stringify([...new Set(["cpu", backend.name])])}
tasks:
  - { task: perplexity, dataset: tiny, context: 64 }
exclude:
  - { method: none, format: "!f32" }
  - { method: rtn, format: f32 }
`;
        const suite = await parseSuite(yaml, `${dir}/suite.yaml`);
        const file = await runSuite(suite, {
          runId: "conformance",
          cacheDir: `${dir}/cache`,
          fresh: true,
          quiet: true,
          jobs: 1,
        });
        const ppl = (b: string) =>
          file.rows
            .filter((r) => r.backend === b && r.metric === "ppl")
            .map((r) => ({ key: `${r.method}/${r.format}`, value: r.value, status: r.status }));
        const ref = ppl("cpu");
        const got = ppl(backend.name);
        assert.equal(ref.length, 2 + Number(intActivations) + Number(kvCache), "CPU perplexities");
        assert.deepEqual(got.map((r) => r.key), ref.map((r) => r.key));
        for (const [i, r] of ref.entries()) {
          assert.equal(got[i]!.status, "ok", `${r.key} on ${backend.name}`);
          const a = got[i]!.value as number;
          const b = r.value as number;
          // Run-time activation codes may differ at rounding ties (see the model tests).
          const tol = r.key.endsWith("w8a8") ? 1e-3 : 1e-4;
          assert.ok(Math.abs(a - b) <= tol * b, `${r.key}: ppl ${a} vs cpu ${b}`);
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/**
 * Cells of the codebook suite: one scheme of each format, chosen to be quick to quantize (the op
 * tests cover the others): QuIP#'s E8P12 (2 bits), AQLM with two codebooks, VPTQ with a residual
 * codebook, outlier columns, permutation and norm, and QuIP's 2-bit codes between its rotations.
 */
const CODEBOOK_CELLS = [
  "quip_sharp/int2",
  "rtn/aqlm_2x4_g4",
  "vptq/vptq-v4-k256-16",
  "quip/int2",
];

/**
 * The codebook formats (QuIP#'s E8P, AQLM, VPTQ) and QuIP through a suite on this backend and on `cpu`:
 * equal perplexities, and no row says its weights fell back to f32 (a backend that decodes them
 * on load, as the CPU's reference does not need to, would say so). VPTQ runs with outlier
 * columns, permutation and norm; calibration is tiny (this checks kernels, not quality).
 */
function registerCodebookSuite(backend: Backend, ignore: boolean): void {
  const haveData = !ignore && hasShared(...STORIES) &&
    hasShared("data", "text", "tinystories_sample.txt") &&
    hasShared("data", "text", "tinyshakespeare.txt");
  Deno.test({
    name:
      `${backend.name}: codebook formats (QuIP#, AQLM, VPTQ) and QuIP give the CPU's perplexities`,
    ignore: !haveData || backend.name === "cpu",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "quantbench-codebook-" });
      const calibration = "calibration: { dataset: shakespeare, samples: 4, seq_len: 64 }";
      try {
        const yaml = `name: codebook-conformance
seed: 0
models:
  - id: stories260K
    path: ${JSON.stringify(sharedPath(...STORIES))}
    tokenizer: ${JSON.stringify(sharedPath("models", "stories260K", "tok512.bin"))}
datasets:
  tiny: { kind: text, path: ${
          JSON.stringify(sharedPath("data", "text", "tinystories_sample.txt"))
        }, max_chars: 2500 }
  shakespeare: { kind: text, path: ${
          JSON.stringify(sharedPath("data", "text", "tinyshakespeare.txt"))
        }, max_chars: 20000 }
methods:
  - rtn
  - { method: quip_sharp, ${calibration}, tune_iters: 0 }
  - { method: quip, ${calibration} }
  - { method: vptq, ${calibration}, kiter: 3, npercent: 5, enable_perm: true, enable_norm: true }
formats: [int2, aqlm_2x4_g4, vptq-v4-k256-16]
backends: ${JSON.stringify(["cpu", backend.name])}
tasks:
  - { task: perplexity, dataset: tiny, context: 64 }
exclude:
  - { method: rtn, format: "!aqlm_2x4_g4" }
  - { method: quip_sharp, format: aqlm_2x4_g4 }
  - { method: quip_sharp, format: vptq-v4-k256-16 }
  - { method: vptq, format: "!vptq-v4-k256-16" }
  - { method: quip, format: "!int2" }
`;
        const suite = await parseSuite(yaml, `${dir}/suite.yaml`);
        const file = await runSuite(suite, {
          runId: "codebook-conformance",
          cacheDir: `${dir}/cache`,
          fresh: true,
          quiet: true,
          jobs: 1,
        });
        const ppl = (b: string) =>
          new Map(
            file.rows
              .filter((r) => r.backend === b && r.metric === "ppl")
              .map((r) => [`${r.method}/${r.format}`, r]),
          );
        const [ref, got] = [ppl("cpu"), ppl(backend.name)];
        assert.deepEqual([...got.keys()].sort(), [...CODEBOOK_CELLS].sort());
        for (const cell of CODEBOOK_CELLS) {
          const [a, b] = [got.get(cell)!, ref.get(cell)!];
          assert.equal(a.status, "ok", `${cell} on ${backend.name}`);
          assert.ok(!String(a.detail ?? "").includes("fallback="), `${cell}: ${a.detail}`);
          const [x, y] = [a.value as number, b.value as number];
          assert.ok(Math.abs(x - y) <= 1e-4 * y, `${cell}: ppl ${x} vs cpu ${y}`);
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/**
 * Registers the conformance tests for `backend`; they are ignored (with the reason printed) when
 * the backend is unavailable here.
 */
export async function describeBackendConformance(
  backend: Backend,
  options: ConformanceOptions = {},
): Promise<void> {
  const reason = await backend.unavailable();
  if (reason) console.warn(`skipping ${backend.name} conformance: ${reason}`);
  const ignore = reason !== undefined;
  const register = () => {
    if ((options.ops ?? true) && backend.ops) {
      registerOps(backend.name, backend.ops, ignore, backend.runtimeQuantization?.activations);
    }
    if (options.models ?? true) registerModels(backend, ignore, options.maxSeqLen);
    if (options.suite ?? true) {
      registerSuite(backend, ignore);
      registerCodebookSuite(backend, ignore);
    }
  };
  // A slow software WebGPU adapter runs a representative subset (kernels/webgpu/test_gate.ts).
  const slow = !ignore && backend.name.startsWith("webgpu") ? await slowAdapterReason() : undefined;
  if (slow === undefined) return register();
  console.warn(`${backend.name} conformance: a representative subset only, as ${slow}`);
  registerOnly((name) => SLOW_ADAPTER_SUBSET.some((re) => re.test(name)), register);
}
