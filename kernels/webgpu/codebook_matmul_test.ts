/**
 * The codebook formats' WebGPU matmul (`codebook_matmul.ts`) against the CPU reference beyond the
 * conformance suite's cases: both codebook placements and another step per thread (the
 * `codebookShared` and `codebookUnroll` knobs), 4, 16 and 32 lanes a row of E8P and AQLM (the
 * `codebookLanes` knob), prefill in tiles of 8 token rows with a partial last tile, rows of more
 * codewords than threads per row, VPTQ split over columns; and the packer keeping codes as stored
 * (no f32 fallback) unless a part exceeds a storage binding.
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { cpuOps } from "../cpu/backend.ts";
import { packMatrix } from "./pack_matrix.ts";
import { pseudoRandom, relativeError } from "../../core/test_values.ts";
import type { Matrix } from "../../core/model.ts";
import { e8pMatrix } from "../formats/e8p_format.ts";
import { buildAqlmMatrix } from "../formats/aqlm.ts";
import { buildVptq, parseVptqName, toHalves } from "../formats/vptq.ts";
import { CodebookLanesError, epilogueKey, rowsPerWorkgroup } from "./codebook_epilogue_wgsl.ts";
import { aqlmKey, aqlmShader } from "./aqlm_wgsl.ts";
import { e8pKey, e8pShader } from "./e8p_wgsl.ts";
import { vptqKey } from "./vptq_wgsl.ts";

const unavailable = await createWebGpuBackend().unavailable();

const codes = (n: number, size: number, seed: number) =>
  Int32Array.from(pseudoRandom(n, seed), (v) => Math.floor((v + 0.5) * size) % size);

/** A VPTQ matrix `name` of `rows × cols` with 3 outlier columns, a permutation and a norm. */
function vptqMatrix(name: string, rows: number, cols: number): Matrix {
  const config = parseVptqName(name);
  const o = 3;
  const n = Math.ceil(rows / config.vectorLen) * (cols - o);
  return buildVptq({
    rows,
    cols,
    config,
    centroids: pseudoRandom(config.centroids * config.vectorLen, 15),
    indices: codes(n, config.centroids, 16),
    resCentroids: pseudoRandom(config.resCentroids * config.vectorLen, 17),
    resIndices: codes(n, config.resCentroids, 18),
    outlierCols: o,
    outliers: pseudoRandom(rows * o, 19),
    perm: Array.from({ length: cols }, (_, j) => (j * 7) % cols),
    normScale: pseudoRandom(cols, 20).map((v) => 1 + v),
    normBias: pseudoRandom(cols, 21),
  });
}

/**
 * The matrices: 96 × 344 E8P (43 codewords a row; Hadamard factors 12 and 172), 88 × 352 E8P
 * (factor 44, TinyLlama's MLP width's), 28 × 172 E8P (a last codeword of 4 values, rows not a
 * multiple of a workgroup's), 28 × 896 E8P with E81B residuals (56 code words a row: guarded
 * rounds only when decoding, unguarded steps and a guarded round for prefill), 37 × 600 AQLM and
 * VPTQ.
 */
function matrices(): [string, Matrix][] {
  const e8p = (bits: 2 | 3 | 4, [rows, cols] = [96, 344]): Matrix => {
    const n = rows * Math.ceil(cols / 8);
    return e8pMatrix(
      rows,
      cols,
      Uint16Array.from(codes(n, 65536, bits)),
      Uint8Array.from(codes(Math.ceil(cols / 8), 256, 9)),
      toHalves(pseudoRandom(rows, 10).map((v) => 0.05 * v)),
      bits === 2 ? undefined : {
        bits,
        codes: Uint16Array.from(codes(n, bits === 3 ? 256 : 65536, 11)),
      },
    );
  };
  const aqlm = (M: number, B: number, g: number): Matrix =>
    buildAqlmMatrix({
      scheme: { codebooks: M, bits: B, groupSize: g },
      rows: 37,
      cols: 600,
      codes: codes(37 * Math.ceil(600 / g) * M, 2 ** B, 12),
      codebooks: pseudoRandom(M * 2 ** B * g, 13),
      scales: pseudoRandom(37, 14).map((v) => 1 + v),
    });
  const vptq = (name: string) => vptqMatrix(name, 37, 600);
  return [
    ["e8p12", e8p(2)],
    ["e8p12-rvq3", e8p(3)],
    ["e8p12-rvq4", e8p(4)],
    ["e8p12 88 × 352", e8p(2, [88, 352])],
    ["e8p12 28 × 172", e8p(2, [28, 172])],
    ["e8p12-rvq3 28 × 896", e8p(3, [28, 896])],
    ["aqlm 2x8 g8", aqlm(2, 8, 8)],
    ["aqlm 1x16 g8", aqlm(1, 16, 8)],
    ["aqlm 1x5 g5", aqlm(1, 5, 5)],
    ["vptq v4 k256 r16", vptq("vptq-v4-k256-16")],
    ["vptq v8 k4096 r256", vptq("vptq-v8-k4096-256")],
  ];
}

for (const shared of [false, true]) {
  Deno.test({
    name: `webgpu: codebook matmuls equal the CPU's, ${
      shared
        ? "codebooks in workgroup memory, 3 per thread and step"
        : "codebooks through the cache, default steps"
    }, T = 1, 2, 11`,
    ignore: unavailable !== undefined,
    async fn() {
      const tuning = shared
        ? { codebookShared: true, codebookUnroll: 3 }
        : { codebookShared: false };
      const ops = createWebGpuBackend({ gemv: tuning }).ops!;
      for (const [name, w] of matrices()) {
        for (const T of [1, 2, 11]) {
          const x = pseudoRandom(T * w.cols, 30 + T);
          const err = relativeError(await ops.matmul(x, w), await cpuOps.matmul(x, w));
          assert.ok(err <= 1e-5, `${name} T=${T}: relative error ${err}`);
        }
      }
    },
  });
}

Deno.test({
  name: "webgpu: AQLM rows of many code words equal the CPU's (steps, guarded units, tail)",
  ignore: unavailable !== undefined,
  async fn() {
    // 21 × 2100 with g = 8: 263 groups, 131 whole code words a row (2 groups each) over 8 lanes:
    // unguarded steps (2 of 8 words a lane decoding, 8 of 2 for prefill), a guarded round for
    // the 3 words left, and a last group of 4 values; 21 rows leave 11 of a workgroup's 32
    // without a row.
    const [rows, cols] = [21, 2100];
    // 1x16's codebook never fits workgroup memory: through the cache only.
    const cases = [[2, 8, [false, true]], [1, 16, [false]]] as const;
    for (const [M, B, placements] of cases) {
      const w = buildAqlmMatrix({
        scheme: { codebooks: M, bits: B, groupSize: 8 },
        rows,
        cols,
        codes: codes(rows * Math.ceil(cols / 8) * M, 2 ** B, 15),
        codebooks: pseudoRandom(M * 2 ** B * 8, 16),
        scales: pseudoRandom(rows, 17).map((v) => 1 + v),
      });
      for (const codebookShared of placements) {
        const ops = createWebGpuBackend({ gemv: { codebookShared } }).ops!;
        for (const T of [1, 11]) {
          const x = pseudoRandom(T * cols, 50 + T);
          const err = relativeError(await ops.matmul(x, w), await cpuOps.matmul(x, w));
          assert.ok(
            err <= 1e-5,
            `${M}x${B} shared=${codebookShared} T=${T}: relative error ${err}`,
          );
        }
      }
    }
  },
});

Deno.test({
  name: "webgpu: E8P and AQLM with 4, 16 and 32 lanes a row equal the CPU's, T = 1, 11",
  ignore: unavailable !== undefined,
  async fn() {
    // 28, 21 and 37 rows fill no whole number of workgroups (64, 16 or 8 rows). E8P: 28 × 172
    // has 10 whole code words a row, then a whole codeword and one of 4 values; 28 × 2752 has 172
    // code words a row, so unguarded steps for every lane count when prefilling (2 words a lane
    // and step) and for 4 and 16 lanes when decoding (8). AQLM 2x8 (codes packed 2 groups a word;
    // codebooks in workgroup memory) 21 × 2100: 131 words and a last group of 4 values; 1x5 g5
    // (codes read from the bit stream) 37 × 603: a last group of 3. Few cases: each is two
    // shaders per lane count to compile, ~0.5 s each on lavapipe.
    const e8p = (rows: number, cols: number): Matrix =>
      e8pMatrix(
        rows,
        cols,
        Uint16Array.from(codes(rows * Math.ceil(cols / 8), 65536, 2)),
        Uint8Array.from(codes(Math.ceil(cols / 8), 256, 9)),
        toHalves(pseudoRandom(rows, 10).map((v) => 0.05 * v)),
      );
    const aqlm = (M: number, B: number, g: number, rows: number, cols: number): Matrix =>
      buildAqlmMatrix({
        scheme: { codebooks: M, bits: B, groupSize: g },
        rows,
        cols,
        codes: codes(rows * Math.ceil(cols / g) * M, 2 ** B, 12),
        codebooks: pseudoRandom(M * 2 ** B * g, 13),
        scales: pseudoRandom(rows, 14).map((v) => 1 + v),
      });
    const cases: [string, Matrix][] = [
      ["e8p12 28 × 172", e8p(28, 172)],
      ["e8p12 28 × 2752", e8p(28, 2752)],
      ["aqlm 2x8 g8 21 × 2100", aqlm(2, 8, 8, 21, 2100)],
      ["aqlm 1x5 g5 37 × 603", aqlm(1, 5, 5, 37, 603)],
    ];
    for (const lanes of [4, 16, 32]) {
      const ops = createWebGpuBackend({ gemv: { codebookLanes: lanes } }).ops!;
      for (const [name, w] of cases) {
        for (const T of [1, 11]) {
          const x = pseudoRandom(T * w.cols, 70 + T);
          const err = relativeError(await ops.matmul(x, w), await cpuOps.matmul(x, w));
          assert.ok(err <= 1e-5, `${name} lanes=${lanes} T=${T}: relative error ${err}`);
        }
      }
    }
  },
});

Deno.test("codebook lanes a row: powers of two up to 256, in the keys unless the default", () => {
  assert.deepEqual([1, 4, 8, 16, 32, 256].map(rowsPerWorkgroup), [256, 64, 32, 16, 8, 1]);
  for (const bad of [0, 3, 12, 512, 2.5]) {
    assert.throws(() => rowsPerWorkgroup(bad), CodebookLanesError);
  }
  const e = { rvq: 0, rowWords: 16, secondWords: 0, cols: 256, tokens: 1, shared: false } as const;
  assert.equal(e8pKey({ ...e, lanes: 8 }), e8pKey(e));
  assert.notEqual(e8pKey({ ...e, lanes: 16 }), e8pKey(e));
  assert.throws(() => e8pShader({ ...e, lanes: 24 }), CodebookLanesError);
  const a = {
    codebooks: 2,
    bits: 8,
    groupSize: 8,
    stride: 4,
    rowWords: 32,
    cols: 256,
    xStride: 256,
    tokens: 1,
    shared: true,
  };
  assert.equal(aqlmKey({ ...a, lanes: 8 }), aqlmKey(a));
  assert.notEqual(aqlmKey({ ...a, lanes: 4 }), aqlmKey(a));
  assert.throws(() => aqlmShader({ ...a, lanes: 48 }), CodebookLanesError);
});

Deno.test({
  name: "webgpu: VPTQ with more columns than a prep workgroup takes equals the CPU's",
  ignore: unavailable !== undefined,
  async fn() {
    // 2300 columns: three prep workgroups of 1024 (the last partial), so three parts of the
    // norm's bias term for the epilogue to add.
    const w = vptqMatrix("vptq-v4-k256-16", 37, 2300);
    const ops = createWebGpuBackend().ops!;
    for (const T of [1, 11]) {
      const x = pseudoRandom(T * 2300, 60 + T);
      const err = relativeError(await ops.matmul(x, w), await cpuOps.matmul(x, w));
      assert.ok(err <= 1e-5, `T=${T}: relative error ${err}`);
    }
  },
});

Deno.test({
  name: "webgpu: E8P matmuls with Hadamard sides wider than workgroup memory equal the CPU's",
  ignore: unavailable !== undefined,
  async fn() {
    // Sides beyond the 8192 values lavapipe's 32 KiB of workgroup memory holds (16 KiB on
    // others: 4096) run the transform in passes: the output of 11008 = 172 · 64 (Llama-2-7B's
    // MLP) and of 16384 (strided butterflies), the input of 14336 = 28 · 512 (Llama-3-8B's).
    const ops = createWebGpuBackend().ops!;
    const e8p = (bits: 2 | 4, rows: number, cols: number) =>
      e8pMatrix(
        rows,
        cols,
        Uint16Array.from(codes(rows * (cols / 8), 65536, bits)),
        Uint8Array.from(codes(cols / 8, 256, 9)),
        toHalves(pseudoRandom(rows, 10).map((v) => 0.05 * v)),
        bits === 2
          ? undefined
          : { bits, codes: Uint16Array.from(codes(rows * (cols / 8), 65536, 11)) },
      );
    for (const [bits, rows, cols] of [[2, 11008, 64], [2, 16384, 16], [4, 48, 14336]] as const) {
      const w = e8p(bits, rows, cols);
      for (const T of [1, 11]) {
        const x = pseudoRandom(T * cols, 40 + T);
        const err = relativeError(await ops.matmul(x, w), await cpuOps.matmul(x, w));
        assert.ok(err <= 1e-5, `${rows} × ${cols} T=${T}: relative error ${err}`);
      }
    }
  },
});

Deno.test("codebook matrices pack as stored, or as f32 rows when a part exceeds a binding", () => {
  let fellBack = 0;
  for (const [name, w] of matrices()) {
    const packed = packMatrix(w, 2 ** 30);
    assert.equal(packed.fallback, undefined, name);
    assert.ok(packed.codebook, name);
    const largest = Math.max(
      ...Object.values(packed.codebook).map((v) => ArrayBuffer.isView(v) ? v.byteLength : 0),
    );
    const small = packMatrix(w, 4096);
    assert.equal(small.codebook === undefined, largest > 4096, name);
    if (largest > 4096) {
      assert.match(small.fallback ?? "", /exceeds the largest storage binding/, name);
    }
    fellBack += largest > 4096 ? 1 : 0;
  }
  assert.ok(fellBack >= 3, `${fellBack} matrices exceed 4 KiB parts`);
});

Deno.test("codebook shader keys differ by what the WGSL is built for", () => {
  assert.notEqual(epilogueKey({ tokenParts: 2 }), epilogueKey({ tokenParts: 0 }));
  const a = {
    codebooks: 1,
    bits: 8,
    groupSize: 8,
    stride: 4,
    rowWords: 8,
    cols: 256,
    xStride: 256,
  };
  assert.notEqual(
    aqlmKey({ ...a, tokens: 1, shared: false }),
    aqlmKey({ ...a, tokens: 1, shared: true }),
  );
  const e = { rvq: 0, rowWords: 16, secondWords: 0, cols: 256, shared: false } as const;
  assert.notEqual(e8pKey({ ...e, tokens: 1 }), e8pKey({ ...e, tokens: 8 }));
  const v = {
    vectorLen: 4,
    bits: 8,
    resBits: 0,
    resOffset: 0,
    mainFloats: 1024,
    resFloats: 0,
    rows: 64,
    cols: 64,
    outlierCols: 0,
    tokens: 1,
    shared: false,
  };
  assert.notEqual(vptqKey({ ...v, splits: 1 }), vptqKey({ ...v, splits: 2 }));
});
