/**
 * The prefill GEMM against the CPU reference for every tiling the perf sweep times, on partial
 * tiles (tokens, rows and input features not multiples of the tile) and on row parts; and the
 * tiling rules.
 */
import assert from "node:assert/strict";
import { cpuOps } from "../cpu/backend.ts";
import { dense, type Matrix } from "../../core/model.ts";
import { pseudoRandom, relativeError } from "../../core/test_values.ts";
import { quantizeInt } from "../formats/int.ts";
import { adapterUnavailable, getGpu } from "./device.ts";
import { encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";
import { packMatrix } from "./pack_matrix.ts";
import {
  chooseGemmTiling,
  DEFAULT_GEMM_TILING,
  gemmThreads,
  type GemmTiling,
  GemmTilingError,
  gemmTilingKey,
  gemmWorkgroupBytes,
  parseGemmTiling,
  splitWays,
  validateGemmTiling,
  WIDE_GEMM_TILING,
} from "./gemm_wgsl.ts";
import { GEMM_TILINGS } from "./perf.ts";
import { slowAdapterReason } from "./test_gate.ts";

const unavailable = await adapterUnavailable();
const slow = unavailable === undefined ? await slowAdapterReason() : undefined;
const limits = unavailable === undefined ? (await getGpu()).device.limits : undefined;
/** Whether the adapter runs a tiling (its threads and workgroup memory within the limits). */
const fits = (t: GemmTiling) =>
  limits !== undefined && gemmThreads(t) <= limits.maxComputeInvocationsPerWorkgroup &&
  gemmWorkgroupBytes(t) <= limits.maxComputeWorkgroupStorageSize;

/**
 * `x · Wᵀ` through the GEMM with `tiling`, weights split into parts of at most `maxBinding`; added
 * to `base` when given (the kernel's accumulate mode).
 */
async function gemm(
  x: Float32Array,
  w: Matrix,
  tiling: GemmTiling,
  maxBinding = Infinity,
  base?: Float32Array,
): Promise<Float32Array> {
  const k = new Kernels(await getGpu());
  try {
    const T = x.length / w.cols;
    const packed = packMatrix(w, Math.min(maxBinding, k.gpu.maxBinding));
    const step = k.buffer(STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    k.device.queue.writeBuffer(step, 0, new Uint32Array([T, 0, 0, 0]));
    const out = k.storage(base ?? T * w.rows * 4);
    const ds = await k.matmul(step, packed, k.upload(packed), k.storage(x), out, {
      tiling,
      accumulate: base !== undefined,
    });
    const read = k.buffer(T * w.rows * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const enc = k.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    encodeDispatches(pass, ds, T, 0);
    pass.end();
    enc.copyBufferToBuffer(out, 0, read, 0, T * w.rows * 4);
    k.device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    return new Float32Array(read.getMappedRange().slice(0));
  } finally {
    k.destroy();
  }
}

const FORMATS: [string, (r: number, c: number, d: Float32Array) => Matrix][] = [
  ["f32", (r, c, d) => dense(r, c, d)],
  ["int4-g32", (r, c, d) => quantizeInt(d, r, c, { bits: 4, group: 32, symmetric: true })],
  ["int3-g64-asym", (r, c, d) => quantizeInt(d, r, c, { bits: 3, group: 64, symmetric: false })],
];

for (const [i, tiling] of GEMM_TILINGS.entries()) {
  Deno.test({
    name: `webgpu: GEMM tiling ${gemmTilingKey(tiling)} on partial tiles`,
    ignore: !fits(tiling) || (slow !== undefined && i > 0),
    async fn() {
      // 131 rows and 172 columns: partial row tiles, a short last chunk and group; T = 5 and 70:
      // one partial token tile, and two (one for 128-token tiles). int4 runs are whole words
      // (decoded from registers), int3 runs are not (decoded element by element).
      for (const [name, make] of FORMATS) {
        const w = make(131, 172, pseudoRandom(131 * 172, 11));
        for (const T of [5, 70]) {
          const x = pseudoRandom(T * 172, T);
          const err = relativeError(await gemm(x, w, tiling), await cpuOps.matmul(x, w));
          assert.ok(err < 1e-5, `${name} T=${T}: relative error ${err}`);
        }
      }
    },
  });
}

Deno.test({
  name: "webgpu: GEMM on activation rows that are not 16-byte aligned",
  ignore: unavailable !== undefined,
  async fn() {
    // 171 columns: rows start at any word, so activations are read element by element.
    const w = quantizeInt(pseudoRandom(40 * 171, 9), 40, 171, {
      bits: 4,
      group: 32,
      symmetric: true,
    });
    const x = pseudoRandom(37 * 171, 10);
    for (const tiling of [DEFAULT_GEMM_TILING, { ...DEFAULT_GEMM_TILING, prefetch: true }]) {
      const err = relativeError(await gemm(x, w, tiling), await cpuOps.matmul(x, w));
      assert.ok(err < 1e-5, `${gemmTilingKey(tiling)}: relative error ${err}`);
    }
  },
});

Deno.test({
  name: "webgpu: GEMM over row parts writes each part's rows",
  ignore: unavailable !== undefined,
  async fn() {
    // 8 KiB bindings hold 16 f32 rows of 128: 100 rows make 7 parts.
    const w = dense(100, 128, pseudoRandom(100 * 128, 3));
    const x = pseudoRandom(9 * 128, 4);
    const err = relativeError(
      await gemm(x, w, DEFAULT_GEMM_TILING, 8192),
      await cpuOps.matmul(x, w),
    );
    assert.ok(err < 1e-5, `relative error ${err}`);
  },
});

Deno.test({
  name: "webgpu: a GEMM split over input features adds its partial sums into the output",
  ignore: unavailable !== undefined,
  async fn() {
    // 1100 columns: 35 chunks, split 4 ways (9, 9, 9 and 8 chunks, the last one short); 131 rows
    // × 70 tokens: 4 workgroups a way. Asymmetric int4: zero points per group.
    const w = quantizeInt(pseudoRandom(131 * 1100, 5), 131, 1100, {
      bits: 4,
      group: 32,
      symmetric: false,
    });
    const x = pseudoRandom(70 * 1100, 6);
    const base = pseudoRandom(70 * 131, 7);
    const product = await cpuOps.matmul(x, w);
    const expected = product.map((v, i) => v + base[i]!);
    const split = { ...DEFAULT_GEMM_TILING, splitK: 8 };
    for (const tiling of [split, { ...split, prefetch: true }]) {
      assert.equal(splitWays(tiling, 131, 70, 35, 1 << 20), 4);
      const err = relativeError(await gemm(x, w, tiling, Infinity, base), expected);
      assert.ok(err < 1e-5, `${gemmTilingKey(tiling)}: relative error ${err}`);
    }
  },
});

Deno.test("GEMM split: ways double while the dispatch has few workgroups", () => {
  const t = { ...DEFAULT_GEMM_TILING, splitK: 8 };
  // TinyLlama at T = 512: k/v (256 rows), q/o/down (2048), gate/up (5632).
  assert.equal(splitWays(t, 256, 512, 64, 1 << 24), 8);
  assert.equal(splitWays(t, 2048, 512, 64, 1 << 24), 2);
  assert.equal(splitWays(t, 5632, 512, 64, 1 << 24), 1);
  assert.equal(splitWays({ ...t, splitK: 1 }, 256, 512, 64, 1 << 24), 1);
  assert.equal(splitWays(t, 256, 512, 64, 2 * 512 * 256), 2, "scratch for two ways");
  assert.equal(splitWays(t, 256, 512, 20, 1 << 24), 2, "chunks for two ways");
  assert.equal(splitWays(t, 256, 512, 15, 1 << 24), 1, "too few chunks");
});

Deno.test("GEMM tilings: the default and every swept one are valid; bad ones are refused", () => {
  for (const t of [DEFAULT_GEMM_TILING, ...GEMM_TILINGS]) {
    validateGemmTiling(t, { maxThreads: 256, maxWorkgroupBytes: 32768 });
    assert.equal(gemmTilingKey(parseGemmTiling(gemmTilingKey(t))), gemmTilingKey(t));
  }
  assert.throws(() => parseGemmTiling("128x64"), GemmTilingError);
  assert.equal(gemmWorkgroupBytes(DEFAULT_GEMM_TILING), 12544);
  const bad = [
    { ...DEFAULT_GEMM_TILING, depth: 12 },
    { ...DEFAULT_GEMM_TILING, rowsPerThread: 6 },
    { ...DEFAULT_GEMM_TILING, tokens: 60 },
    { ...DEFAULT_GEMM_TILING, rowsPerThread: 4 }, // 512 threads
    { ...DEFAULT_GEMM_TILING, depth: 32, tokens: 128, tokensPerThread: 8 }, // 32.5 KiB
    { ...DEFAULT_GEMM_TILING, splitK: 3 },
  ];
  for (const t of bad) {
    assert.throws(
      () => validateGemmTiling(t, { maxThreads: 256, maxWorkgroupBytes: 32768 }),
      GemmTilingError,
      gemmTilingKey(t),
    );
  }
});

Deno.test("chooseGemmTiling: the wide tile where it leaves enough workgroups (TinyLlama at T = 512)", () => {
  const both = [WIDE_GEMM_TILING, DEFAULT_GEMM_TILING];
  // The scratch the matmul allocates for the wide tile: 256 tiles of 128 × 128 partial sums.
  const scratch = 256 * 128 * 128;
  const pick = (rows: number, cols: number, T = 512) =>
    chooseGemmTiling(both, rows, T, cols / 32, scratch);
  // 1000 wide tiles; 2048 rows: 64 wide tiles split 4 ways against 128 split 2 ways (a tie).
  assert.equal(pick(32000, 2048), WIDE_GEMM_TILING);
  assert.equal(pick(2048, 2048), WIDE_GEMM_TILING);
  assert.equal(pick(2048, 5632), WIDE_GEMM_TILING);
  // 256 rows: 8 wide tiles split 8 ways (64) against 16 split 8 ways (128); 5632 rows: 176
  // unsplit wide tiles against 352.
  assert.equal(pick(256, 2048), DEFAULT_GEMM_TILING);
  assert.equal(pick(5632, 2048), DEFAULT_GEMM_TILING);
  assert.equal(
    chooseGemmTiling([DEFAULT_GEMM_TILING], 32000, 512, 64, scratch),
    DEFAULT_GEMM_TILING,
  );
});
