/**
 * `deno task perf --backend webgpu`: the WebGPU matmul kernels per weight format at LLM sizes —
 * GEMV (decode, one activation row) and GEMM (prefill, `rows` activation rows) — against a copy
 * kernel moving as many bytes on the same adapter in the same run.
 *
 * - Formats are those of `perfFormats()` (`kernels/perf.ts`), each in the layout the backend packs
 *   it into. Weights are made on the GPU (random codes, fixed valid scales): speed does not depend
 *   on the values, and LLM-sized matrices need no host upload. All memory is allocated once up
 *   front (an arena), since allocating and freeing hundreds of MB per measurement slowed the
 *   kernels that followed.
 * - Decode reads each weight once, so GEMV and copy timings rotate over enough copies of the
 *   buffers (≥ 256 MiB) that nothing is served from the GPU's L2 cache.
 * - Time is the median over five compute passes of `n ≥ 20` back-to-back dispatches (GEMM: ≥ 3),
 *   `n` chosen so a pass takes a few ms, from GPU timestamps at the pass edges when the adapter has
 *   `timestamp-query`, else wall time from submit to completion. Before timing, the run waits
 *   until two successive int4-g128 GEMV timings agree within 3 %.
 * - GB/s counts the bytes of codes and scales the kernel reads; the copy's GB/s counts bytes read
 *   plus bytes written; `÷ copy` is GEMV GB/s divided by copy GB/s (1.0: as fast as memory).
 * - Integer layouts with an integer-activation GEMV (`gemv_a8_wgsl.ts`) are also timed as
 *   `gemv-a8`: the decode GEMV on int8 activation codes (W4A8, W8A8); the per-token activation
 *   quantization before it (one dispatch per linear input, shared by q/k/v and by gate/up) is
 *   timed on its own as `quantize`.
 * - Codebook formats (QuIP#'s E8P, AQLM, VPTQ) are timed by `perf_codebook.ts`: every dispatch
 *   of their product over matrices uploaded from the host, `gemv` and `gemm` rows alike.
 * - `--sweep` also times the codebook formats' knobs (`CODEBOOK_VARIANTS`: codebooks in workgroup
 *   memory, work per thread, E8P's and AQLM's lanes a row) at 8192², and variants of the
 *   int4-g128 integer-activation GEMV (threads per workgroup and per row, rows per thread,
 *   chunks per iteration, signed codes or code sums) and of the float-activation GEMV (rows per
 *   thread, activations staged in workgroup memory, pre-scaled there, or loaded by each thread)
 *   at the decode shapes of a 1B model and at 8192², each right after the default kernel, after
 *   everything else. `--sweep-codebook` times the codebook knobs alone (with `--formats ""`,
 *   nothing else but the copy kernel).
 * - `--sweep-gemm` times the prefill GEMM with each tiling of {@linkcode GEMM_TILINGS} at
 *   `T = 512` over the TinyLlama-1.1B linears and head (N×K 2048×2048, 256×2048, 5632×2048,
 *   2048×5632, 32000×2048) for f32, int4-g128 and f16 weights: TFLOP/s per tiling, also as rows
 *   (`kernel` `gemm`, `tiling` set) of `perf.csv`.
 * - `--atb` times the `AᵀB` kernel of GPTQ's calibration (`atb_wgsl.ts`) at TinyLlama-1.1B's
 *   shapes ({@linkcode ATB_PERF_CASES}): the Hessian sums `XᵀX` of a 512-token window (`rows`
 *   layout, upper triangle only, 2048 and 5632 wide) and the calibration forward's linears over
 *   4096 tokens (`cols` layout, 2048 → 5632 and 5632 → 2048), as `atb` rows whose TFLOP/s count
 *   only the products made (for the Hessian, those on and above the diagonal).
 *
 * @module
 */
import { join } from "node:path";
import { getGpu } from "./device.ts";
import { packMatrix } from "./pack_matrix.ts";
import {
  type Dispatch,
  encodeDispatches,
  Kernels,
  linearGroups,
  STEP_STRIDE,
  type WeightBuffers,
} from "./kernels.ts";
import {
  gemvA8Group,
  gemvA8Lanes,
  gemvA8Rows,
  gemvA8Unroll,
  gemvRowsPerThread,
  type GemvTuning,
  type Layout,
  type PackedMatrix,
  packedShape,
  SCALE_BYTES,
  type ScaleKind,
  threadsPerRow,
} from "./pack.ts";
import { perfFormats } from "../perf_formats.ts";
import {
  CODEBOOK_SWEEP_FORMATS,
  CODEBOOK_VARIANTS,
  codebookPerf,
  type CodebookPerfHost,
} from "./perf_codebook.ts";
import { codebookPerfFormats } from "../perf_codebook_formats.ts";
import { elementFormats } from "../formats/registry.ts";
import { dense } from "../../core/model.ts";
import { COPY_WGSL, FILL_WGSL } from "./ops_wgsl.ts";
import { a8Supported, codesPerWord, quantizedRowWords } from "./gemv_a8_wgsl.ts";
import {
  DEFAULT_GEMM_TILING,
  gemmThreads,
  type GemmTiling,
  gemmTilingKey,
  gemmWorkgroupBytes,
} from "./gemm_wgsl.ts";
import {
  ATB_TILE,
  ATB_TILE_COLS,
  atbGroups,
  type AtbLayout,
  type AtbParams,
  atbShader,
  atbUniform,
} from "./atb_wgsl.ts";
import { markdownTable } from "../../core/markdown_table.ts";
import { rowsToCsvTable } from "../perf_csv.ts";
import { writeFileAtomic } from "../../core/atomic.ts";

/** Options of a WebGPU perf run. */
export interface WebGpuPerfOptions {
  /** Activation rows of the GEMM runs (default 256; the issue asks for 128–512). */
  rows?: number;
  /** Directory for `perf.csv` and `perf.md`. */
  out?: string;
  /** Only these formats (names as in the table). */
  formats?: string[];
  /** Small shapes: a smoke run (default: on software adapters, which would take hours). */
  quick?: boolean;
  /** Also time variants of the int4-g128 integer-activation GEMV ({@linkcode GEMV_VARIANTS}). */
  sweep?: boolean;
  /** Also time the codebook formats' knobs ({@linkcode CODEBOOK_VARIANTS}); `sweep` does too. */
  sweepCodebook?: boolean;
  /** Also time the GEMM tilings of {@linkcode GEMM_TILINGS} at the 1.1B Llama shapes. */
  sweepGemm?: boolean;
  /** The tilings the GEMM sweep times instead of {@linkcode GEMM_TILINGS}. */
  gemmTilings?: readonly GemmTiling[];
  /** Also time GPTQ's calibration `AᵀB` kernel ({@linkcode ATB_PERF_CASES}). */
  atb?: boolean;
}

/** One measurement. */
export interface GpuPerfRow {
  backend: string;
  format: string;
  /**
   * `gemv-a8`: the decode GEMV on run-time int8 activation codes (`gemv_a8_wgsl.ts`);
   * `quantize`: the per-token activation quantization before it; `atb`: GPTQ's calibration
   * kernel (`atb_wgsl.ts`).
   */
  kernel: "gemv" | "gemm" | "gemv-a8" | "quantize" | "atb";
  /**
   * `T×N×K`: activation rows × output features × input features (`atb`: depth `t` × rows `i` ×
   * columns `j` of `O`).
   */
  shape: string;
  /** `gpu-timestamps` or `wall`. */
  timing: string;
  median_ms: number;
  /** Bytes of codes and scales the kernel reads (the copy: bytes copied). */
  weight_bytes: number;
  gbps: number;
  /** Copy bandwidth (read + write) for as many bytes, same adapter, same run. */
  copy_gbps: number;
  /** `gbps / copy_gbps`. */
  copy_ratio: number;
  /** Arithmetic rate `2·T·N·K / time` in TFLOP/s. */
  tflops: number;
  /** The GEMM's tiling (`gemmTilingKey`); `atb`: its tile, layout and `/upper`; else empty. */
  tiling: string;
}

/** A perf format: its layout in the backend and the u32 its scale words are filled with. */
interface PerfFormat {
  name: string;
  layout: Omit<Layout, "tpr">;
  tensorScale: number;
  /** Set when the backend decodes this format to f32 on load (it then runs as f32). */
  fallback?: string;
}

/** Valid scale words per scale kind (so no NaN or infinity slows or skews anything). */
const SCALE_WORDS: Record<ScaleKind, number> = {
  none: 0,
  f16: 0x2c002c00, // two f16 1/16
  bf16: 0x3d803d80, // two bf16 1/16
  f32: 0x3d800000, // 1/16
  f16zero: 0x3c002c00, // scale 1/16, zero point 1
  f16min: 0xac002c00, // scale 1/16, min -1/16
  e8m0: 0x7c7c7c7c, // 2^-3
  e4m3: 0x38383838, // 1.0
};

/**
 * The formats `deno task perf` measures (`perfFormats()`: every registered element format with
 * its default settings, integer ones also with groups of 128 and 32), each with the layout the
 * backend packs it into, found by packing a small sample matrix of it.
 */
export function gpuPerfFormats(): PerfFormat[] {
  const sample = dense(8, 256, Float32Array.from({ length: 8 * 256 }, (_, i) => Math.sin(i)));
  // Codebook formats (AQLM, VPTQ) run their own kernels: perf_codebook.ts times them.
  return perfFormats().flatMap(({ label, weights, settings }) => {
    const element = elementFormats.get(weights);
    if (/^(aqlm_|vptq-)/.test(weights)) return [];
    const m = element.kind === "float" ? sample : element.quantize(settings, sample);
    const packed = packMatrix(m, 2 ** 30);
    const { tpr: _, ...layout } = packed.layout;
    return [{ name: label, layout, tensorScale: packed.tensorScale, fallback: packed.fallback }];
  });
}

/** `[N, K]` (output × input features) of the LLM-sized runs. */
const SHAPES: [number, number][] = [[4096, 4096], [4096, 14336], [14336, 4096], [8192, 8192]];
const QUICK_SHAPES: [number, number][] = [[256, 512], [512, 256]];
/** Decode buffers rotate over at least this many bytes (H100/H200 L2: 50–60 MB). */
const ROTATE_BYTES = 256 * 2 ** 20;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Times passes of `n` dispatches; returns ms per dispatch and how it was measured. */
class Timer {
  readonly #k: Kernels;
  readonly #query: GPUQuerySet | undefined;
  readonly #resolve: GPUBuffer | undefined;
  readonly #read: GPUBuffer | undefined;
  static readonly REPS = 5;

  constructor(k: Kernels) {
    this.#k = k;
    if (k.gpu.timestamps) {
      const count = 2 * Timer.REPS;
      this.#query = k.device.createQuerySet({ type: "timestamp", count });
      this.#resolve = k.buffer(count * 8, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC);
      this.#read = k.buffer(count * 8, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    }
  }

  get method(): string {
    return this.#query ? "gpu-timestamps" : "wall";
  }

  /** Median ms per dispatch over `reps` passes of `n` dispatches each (`encode(pass, i)`). */
  async time(
    encode: (pass: GPUComputePassEncoder, i: number) => void,
    n: number,
    reps = Timer.REPS,
  ): Promise<number> {
    const device = this.#k.device;
    // A rejected dispatch would time as nothing at all: surface validation errors instead.
    device.pushErrorScope("validation");
    const result = await this.#timeOnce(encode, n, reps);
    const error = await device.popErrorScope();
    if (error) throw new Error(`WebGPU rejected a timed pass: ${error.message}`);
    return result;
  }

  async #timeOnce(
    encode: (pass: GPUComputePassEncoder, i: number) => void,
    n: number,
    reps: number,
  ): Promise<number> {
    const device = this.#k.device;
    if (this.#query) {
      const enc = device.createCommandEncoder();
      for (let r = 0; r < reps; r++) {
        const pass = enc.beginComputePass({
          timestampWrites: {
            querySet: this.#query,
            beginningOfPassWriteIndex: 2 * r,
            endOfPassWriteIndex: 2 * r + 1,
          },
        });
        for (let i = 0; i < n; i++) encode(pass, i);
        pass.end();
      }
      enc.resolveQuerySet(this.#query, 0, 2 * reps, this.#resolve!, 0);
      enc.copyBufferToBuffer(this.#resolve!, 0, this.#read!, 0, 16 * reps);
      device.queue.submit([enc.finish()]);
      await this.#read!.mapAsync(GPUMapMode.READ, 0, 16 * reps);
      const t = new BigUint64Array(this.#read!.getMappedRange(0, 16 * reps).slice(0));
      this.#read!.unmap();
      const per: number[] = [];
      for (let r = 0; r < reps; r++) per.push(Number(t[2 * r + 1]! - t[2 * r]!) / 1e6 / n);
      return median(per);
    }
    const per: number[] = [];
    for (let r = 0; r < reps; r++) {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (let i = 0; i < n; i++) encode(pass, i);
      pass.end();
      const t0 = performance.now();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
      per.push((performance.now() - t0) / n);
    }
    return median(per);
  }

  /**
   * Times passes of `n ≥ minN` dispatches, `n` chosen so a pass takes about `targetMs`. Two
   * untimed passes first compile pipelines and touch every buffer.
   */
  async timeAuto(
    encode: (pass: GPUComputePassEncoder, i: number) => void,
    targetMs: number,
    minN: number,
  ): Promise<number> {
    await this.time(encode, 3, 1);
    const probe = await this.time(encode, 10, 1);
    const n = Math.max(minN, Math.min(2000, Math.ceil(targetMs / Math.max(probe, 1e-4))));
    // ~100 ms of untimed work first: after the host-side pauses between measurements (pipeline
    // compilation, filling buffers) the H200 ran short passes up to 4× slower, as if clocked down.
    await this.time(encode, Math.min(20000, Math.ceil(100 / Math.max(probe, 1e-3))), 1);
    return await this.time(encode, n);
  }
}

/**
 * GPU memory for every measurement, allocated once: allocating and freeing hundreds of MB per
 * measurement made the driver's background work (clearing memory) slow down later kernels.
 * Ranges are handed out from a few large buffers and taken back all at once by `reset`.
 */
class Arena {
  readonly #k: Kernels;
  readonly #buffers: GPUBuffer[] = [];
  readonly #size: number;
  #buffer = 0;
  #offset = 0;

  constructor(k: Kernels, buffers: number, size: number) {
    this.#k = k;
    this.#size = Math.floor(size / 256) * 256;
    for (let i = 0; i < buffers; i++) this.#buffers.push(k.storage(this.#size));
  }

  /** A range of `bytes` (256-byte aligned), or undefined when the arena is full. */
  take(bytes: number): GPUBufferBinding | undefined {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (size > this.#size) return undefined;
    if (this.#offset + size > this.#size) {
      this.#buffer++;
      this.#offset = 0;
    }
    const buffer = this.#buffers[this.#buffer];
    if (!buffer) return undefined;
    const range = { buffer, offset: this.#offset, size };
    this.#offset += Math.ceil(size / 256) * 256;
    return range;
  }

  reset(): void {
    this.#buffer = 0;
    this.#offset = 0;
  }

  /** Fills a range's words on the GPU: 0 random, 1 the constant `seed`, 2 floats in ±0.5. */
  async fill(range: GPUBufferBinding, mode: number, seed: number): Promise<void> {
    const k = this.#k;
    const pipe = await k.pipeline("uw", FILL_WGSL);
    const words = range.size! / 4;
    const bg = k.device.createBindGroup({
      layout: k.layout("uw"),
      entries: [
        { binding: 0, resource: { buffer: k.uniform([words, seed >>> 0, mode]) } },
        { binding: 1, resource: range },
      ],
    });
    const enc = k.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bg);
    const [x, y] = linearGroups(words);
    pass.dispatchWorkgroups(x, y);
    pass.end();
    k.device.queue.submit([enc.finish()]);
    await k.device.queue.onSubmittedWorkDone();
  }
}

/** Everything measurements share: kernels, timer, and the arenas of weights and outputs. */
interface Bench {
  k: Kernels;
  timer: Timer;
  weights: Arena;
  outputs: Arena;
  /**
   * Destinations of the copy kernel: buffers apart from its sources, since one buffer may not be
   * both read-only and writable storage in a dispatch (such a dispatch is rejected).
   */
  copies: Arena;
  step: GPUBuffer;
  /** Random activations for up to the largest `T × K`. */
  x: GPUBuffer;
  /** Packed int8 activation codes (constant words) for one row of up to 16384. */
  xq: GPUBuffer;
}

/** Copies of a `format` matrix in the arena (random codes, valid scales), as dispatch sets. */
async function gpuMatrices(
  b: Bench,
  format: PerfFormat,
  layout: Layout,
  T: number,
  N: number,
  K: number,
  copies: number,
  a8: boolean,
  tiling?: GemmTiling,
): Promise<{ sets: Dispatch[][]; bytes: number }> {
  const shape = packedShape(N, K, layout, b.k.gpu.maxBinding);
  const m: PackedMatrix = {
    rows: N,
    cols: K,
    chunks: shape.chunks,
    groups: shape.groups,
    layout,
    tensorScale: format.tensorScale,
    parts: shape.parts.map((p) => ({
      rowStart: p.rowStart,
      rows: p.rows,
      codes: new Uint32Array(0),
      scales: new Uint32Array(0),
    })),
  };
  const bytes = shape.parts.reduce((n, p) => n + p.codeBytes + p.scaleBytes, 0);
  const sets: Dispatch[][] = [];
  for (let c = 0; c < copies; c++) {
    const parts: WeightBuffers[] = [];
    for (const p of shape.parts) {
      const codes = b.weights.take(p.codeBytes);
      const scales = SCALE_BYTES[layout.scale] > 0 ? b.weights.take(p.scaleBytes) : b.k.empty;
      if (!codes || !scales) break;
      await b.weights.fill(codes, layout.element === "f32" ? 2 : 0, 1 + c);
      if (scales !== b.k.empty) {
        await b.weights.fill(scales as GPUBufferBinding, 1, SCALE_WORDS[layout.scale]);
      }
      parts.push({ codes, scales });
    }
    const out = b.outputs.take(T * N * 4);
    if (parts.length < shape.parts.length || !out) break;
    sets.push(
      await b.k.matmul(b.step, m, parts, b.x, out.buffer, {
        outOff: out.offset! / 4,
        outStride: N,
        xq: a8 ? { buffer: b.xq, per: codesPerWord(layout.bits) } : undefined,
        tiling,
      }),
    );
  }
  if (sets.length === 0) throw new RangeError(`${N}×${K} ${format.name} does not fit the arena`);
  return { sets, bytes };
}

function encodeOne(pass: GPUComputePassEncoder, d: Dispatch, T: number): void {
  encodeDispatches(pass, [d], T, 0);
}

/**
 * Copy time per dispatch and bandwidth (read + write, GB/s) for `bytes`, rotating over ≥ 256 MiB
 * (each copy its own source and destination, so nothing is cached and no barrier separates them).
 */
async function copyBandwidth(b: Bench, bytes: number): Promise<{ ms: number; gbps: number }> {
  b.weights.reset();
  b.copies.reset();
  const vecs = Math.ceil(Math.min(bytes, b.k.gpu.maxBinding) / 16);
  const copies = Math.max(1, Math.min(32, Math.ceil(ROTATE_BYTES / (vecs * 16))));
  const pipe = await b.k.pipeline("urw", COPY_WGSL);
  const params = b.k.uniform([vecs]);
  const groups = linearGroups(Math.ceil(vecs / 4));
  const bgs: GPUBindGroup[] = [];
  for (let c = 0; c < copies; c++) {
    const src = b.weights.take(vecs * 16);
    const dst = b.copies.take(vecs * 16);
    if (!src || !dst) break;
    await b.weights.fill(src, 0, c);
    bgs.push(b.k.device.createBindGroup({
      layout: b.k.layout("urw"),
      entries: [
        { binding: 0, resource: { buffer: params } },
        { binding: 1, resource: src },
        { binding: 2, resource: dst },
      ],
    }));
  }
  const ms = await b.timer.timeAuto(
    (pass, i) => {
      pass.setPipeline(pipe);
      pass.setBindGroup(0, bgs[i % bgs.length]!);
      pass.dispatchWorkgroups(groups[0], groups[1]);
    },
    5,
    20,
  );
  return { ms, gbps: (2 * vecs * 16) / (ms * 1e6) };
}

/**
 * Times one format × shape × kernel. Decode (T = 1) rotates over copies of the weights, each with
 * its own output, as the copy kernel does.
 */
async function measure(
  b: Bench,
  format: PerfFormat,
  layout: Layout,
  T: number,
  N: number,
  K: number,
  a8 = false,
  tiling?: GemmTiling,
): Promise<{ ms: number; bytes: number }> {
  b.weights.reset();
  b.outputs.reset();
  b.k.device.queue.writeBuffer(b.step, 0, new Uint32Array([T, 0, 0, 0]));
  const one = packedShape(N, K, layout, b.k.gpu.maxBinding).parts.reduce(
    (n, p) => n + p.codeBytes + p.scaleBytes,
    0,
  );
  const copies = T === 1 ? Math.max(1, Math.min(32, Math.ceil(ROTATE_BYTES / one))) : 1;
  const { sets, bytes } = await gpuMatrices(b, format, layout, T, N, K, copies, a8, tiling);
  const ms = await b.timer.timeAuto(
    (pass, i) => {
      for (const d of sets[i % sets.length]!) encodeOne(pass, d, T);
    },
    T === 1 ? 5 : 20,
    T === 1 ? 20 : 3,
  );
  return { ms, bytes };
}

function row(
  format: string,
  kernel: GpuPerfRow["kernel"],
  T: number,
  N: number,
  K: number,
  timing: string,
  ms: number,
  bytes: number,
  copyGbps: number,
  tiling = "",
): GpuPerfRow {
  const gbps = bytes / (ms * 1e6);
  return {
    backend: "webgpu",
    format,
    kernel,
    shape: `${T}x${N}x${K}`,
    timing,
    median_ms: ms,
    weight_bytes: bytes,
    gbps,
    copy_gbps: copyGbps,
    copy_ratio: gbps / copyGbps,
    tflops: (2 * T * N * K) / (ms * 1e9),
    tiling,
  };
}

function table(rows: GpuPerfRow[]): string {
  // Rows without a copy to compare with (the compute-bound `atb` rows) read "—" there.
  const fixed = (v: number, digits: number) => Number.isFinite(v) ? v.toFixed(digits) : "—";
  return markdownTable(
    ["format", "kernel", "T×N×K", "ms", "MB", "GB/s", "copy GB/s", "÷ copy", "TFLOP/s"],
    rows.map((r) => [
      r.format,
      r.kernel,
      r.shape,
      r.median_ms.toFixed(4),
      (r.weight_bytes / 1e6).toFixed(2),
      r.gbps.toFixed(1),
      fixed(r.copy_gbps, 1),
      fixed(r.copy_ratio, 3),
      r.tflops.toFixed(2),
    ]),
  );
}

/** Time of the per-token activation quantization of one row of `K` (`quantizeActivations`). */
async function quantizeTime(b: Bench, K: number): Promise<number> {
  b.outputs.reset();
  const xd = b.outputs.take(K * 4)!;
  const d = await b.k.quantizeActivations(
    b.step,
    b.x,
    { buffer: b.xq, per: 2 },
    xd.buffer,
    { cols: K, qmax: 127 },
  );
  return await b.timer.timeAuto((pass) => encodeOne(pass, d, 1), 5, 20);
}

/**
 * Variants of the int4-g128 integer-activation GEMV (`--sweep`). The earlier sweep of threads per
 * row 16–64 × rows per thread 1–2 × chunks per iteration 1–4 × workgroups of 64–256 is in
 * PERF.md; these vary one thing at a time around the default (and 16 threads per row with 4
 * chunks per iteration, so that each thread still loads as much).
 */
export const GEMV_VARIANTS: readonly GemvTuning[] = [
  {},
  { gemvXsum: true },
  { gemvUnroll: 1 },
  { gemvUnroll: 4 },
  { gemvRows: 2 },
  { gemvLanes: 16, gemvUnroll: 4 },
  { gemvLanes: 64 },
  { gemvGroup: 128 },
  { gemvGroup: 1024 },
];

/**
 * Variants of the int4-g128 float-activation GEMV (`--sweep`): rows per thread (fewer registers
 * and more workgroups in flight, against activation work shared by fewer rows), activations
 * loaded by each thread instead of staged in workgroup memory between barriers, and staged
 * activations pre-scaled and summed once per workgroup (so fewer rows per thread cost less).
 */
export const FLOAT_GEMV_VARIANTS: readonly GemvTuning[] = [
  {},
  { gemvRows: 1 },
  { gemvRows: 2 },
  { gemvRows: 4 },
  { gemvDirect: true },
  { gemvDirect: true, gemvRows: 1 },
  { gemvDirect: true, gemvRows: 2 },
  { gemvDirect: true, gemvRows: 4 },
  { gemvPrescale: true },
  { gemvPrescale: true, gemvRows: 1 },
  { gemvPrescale: true, gemvRows: 2 },
  { gemvPrescale: true, gemvRows: 4 },
];

/**
 * `[N, K]` of the float GEMV sweep: TinyLlama-1.1B's decode matmuls (q and o 2048², k and v
 * 256 × 2048, gate and up 5632 × 2048, down 2048 × 5632, head 32000 × 2048) and 8192².
 */
const FLOAT_SWEEP_SHAPES: [number, number][] = [
  [2048, 2048],
  [256, 2048],
  [5632, 2048],
  [2048, 5632],
  [32000, 2048],
  [8192, 8192],
];

/**
 * Float-activation GEMV variants of int4-g128 (`--sweep`, {@linkcode FLOAT_GEMV_VARIANTS}), each
 * timed right after the default kernel, as in {@linkcode sweepGemv}.
 */
async function sweepFloatGemv(
  b: Bench,
  quick: boolean,
  copyFor: (bytes: number) => Promise<number>,
  log: (line: string) => void,
): Promise<string> {
  const f = gpuPerfFormats().find((p) => p.name === "int4-g128")!;
  const sizes = quick ? [[512, 512]] : FLOAT_SWEEP_SHAPES;
  const cells: (string | number)[][] = [];
  for (const [N, K] of sizes) {
    const base = { ...f.layout, tpr: threadsPerRow(Math.ceil(K! / 32)) };
    for (const variant of FLOAT_GEMV_VARIANTS) {
      const layout: Layout = { ...base, ...variant };
      log(`float sweep ${N}x${K} ${JSON.stringify(variant)}`);
      const reference = await measure(b, f, base, 1, N!, K!);
      const { ms, bytes } = await measure(b, f, layout, 1, N!, K!);
      const gbps = bytes / (ms * 1e6);
      const copy = await copyFor(bytes);
      cells.push([
        `${N}x${K}`,
        layout.tpr,
        gemvRowsPerThread(layout),
        layout.gemvDirect ? "each thread" : layout.gemvPrescale ? "staged, pre-scaled" : "staged",
        ms.toFixed(4),
        gbps.toFixed(1),
        (gbps / copy).toFixed(3),
        (reference.ms / ms).toFixed(3),
      ]);
    }
  }
  return "Float-activation GEMV variants, int4-g128 (default: activations staged in workgroup " +
    "memory, 8 rows per thread):\n\n" +
    markdownTable(
      [
        "N×K",
        "threads/row",
        "rows/thread",
        "activations",
        "ms",
        "GB/s",
        "÷ copy",
        "speed ÷ default",
      ],
      cells,
    );
}

/**
 * GEMV variants of int4-g128 at 8192² and 16384² (`--sweep`), integer-activation kernel
 * ({@linkcode GEMV_VARIANTS}). Each variant is timed right after the default kernel, and
 * `÷ default` compares the two: timings on the H200 drifted by up to 4× over a run, and adjacent
 * pairs cancel that. The first row times the default against itself (the noise).
 */
async function sweepGemv(
  b: Bench,
  quick: boolean,
  copyFor: (bytes: number) => Promise<number>,
  log: (line: string) => void,
): Promise<string> {
  const f = gpuPerfFormats().find((p) => p.name === "int4-g128")!;
  const sizes = quick ? [[512, 512]] : [[8192, 8192], [16384, 16384]];
  const maxGroup = b.k.device.limits.maxComputeInvocationsPerWorkgroup;
  const cells: (string | number)[][] = [];
  for (const [N, K] of sizes) {
    const base = { ...f.layout, tpr: threadsPerRow(Math.ceil(K! / 32)) };
    for (const variant of GEMV_VARIANTS) {
      const layout: Layout = { ...base, ...variant };
      const group = gemvA8Group(layout);
      const label = [
        `${N}x${K}`,
        group,
        gemvA8Lanes(layout),
        gemvA8Rows(layout),
        gemvA8Unroll(layout),
        layout.gemvXsum ? "code sums" : "signed codes",
      ];
      if (group > maxGroup) {
        cells.push([...label, "n/a", "", "", ""]);
        continue;
      }
      log(`sweep ${N}x${K} ${JSON.stringify(variant)}`);
      const reference = await measure(b, f, base, 1, N!, K!, true);
      const { ms, bytes } = await measure(b, f, layout, 1, N!, K!, true);
      const gbps = bytes / (ms * 1e6);
      const copy = await copyFor(bytes);
      cells.push([
        ...label,
        ms.toFixed(4),
        gbps.toFixed(1),
        (gbps / copy).toFixed(3),
        (reference.ms / ms).toFixed(3),
      ]);
    }
  }
  return "Integer-activation GEMV variants, int4-g128 (default: 256 threads per workgroup, 32 " +
    "threads per row, 1 row per thread, 2 chunks per iteration, signed codes):\n\n" +
    markdownTable(
      [
        "N×K",
        "threads/workgroup",
        "threads/row",
        "rows/thread",
        "unroll",
        "zero point",
        "ms",
        "GB/s",
        "÷ copy",
        "speed ÷ default",
      ],
      cells,
    );
}

/**
 * GEMM tilings of `--sweep-gemm` (the default first): wider and deeper tiles, more outputs per
 * thread (within 256 threads), prefetching into registers, and input features split over
 * workgroups where a dispatch has few; those past the device's workgroup memory are listed as n/a.
 */
export const GEMM_TILINGS: readonly GemmTiling[] = [
  DEFAULT_GEMM_TILING,
  { ...DEFAULT_GEMM_TILING, splitK: 1 },
  { ...DEFAULT_GEMM_TILING, prefetch: true },
  { rows: 128, tokens: 128, depth: 16, rowsPerThread: 8, tokensPerThread: 8, splitK: 8 },
  {
    rows: 128,
    tokens: 128,
    depth: 16,
    rowsPerThread: 8,
    tokensPerThread: 8,
    prefetch: true,
    splitK: 8,
  },
  { rows: 128, tokens: 128, depth: 8, rowsPerThread: 8, tokensPerThread: 8, splitK: 8 },
  { rows: 128, tokens: 64, depth: 32, rowsPerThread: 8, tokensPerThread: 4, splitK: 8 },
  { rows: 64, tokens: 128, depth: 16, rowsPerThread: 4, tokensPerThread: 8, splitK: 8 },
  { rows: 64, tokens: 64, depth: 16, rowsPerThread: 4, tokensPerThread: 4, splitK: 8 },
  { rows: 64, tokens: 64, depth: 16, rowsPerThread: 4, tokensPerThread: 4 },
  { rows: 256, tokens: 64, depth: 16, rowsPerThread: 16, tokensPerThread: 4, splitK: 8 },
  { rows: 128, tokens: 32, depth: 16, rowsPerThread: 8, tokensPerThread: 4, splitK: 8 },
];

/** Tokens of the GEMM sweep (a perplexity window). */
export const SWEEP_GEMM_T = 512;

/** `[N, K]` of the GEMM sweep: TinyLlama-1.1B's q/o, k/v, gate/up, down and head. */
const SWEEP_GEMM_SHAPES: [number, number][] = [
  [2048, 2048],
  [256, 2048],
  [5632, 2048],
  [2048, 5632],
  [32000, 2048],
];

/**
 * Times every tiling of {@linkcode GEMM_TILINGS} for f32, int4-g128 and f16 weights at the sweep's
 * shapes (`quick`: small ones, T = 70), returning its rows and a table of TFLOP/s per tiling.
 */
async function sweepGemm(
  b: Bench,
  quick: boolean,
  tilings: readonly GemmTiling[],
  log: (line: string) => void,
): Promise<{ rows: GpuPerfRow[]; md: string }> {
  const T = quick ? 70 : SWEEP_GEMM_T;
  const shapes = quick ? QUICK_SHAPES : SWEEP_GEMM_SHAPES;
  const limits = b.k.device.limits;
  const rows: GpuPerfRow[] = [];
  const cells: (string | number)[][] = [];
  for (const name of ["f32", "int4-g128", "f16"]) {
    const f = gpuPerfFormats().find((p) => p.name === name)!;
    for (const tiling of tilings) {
      const key = gemmTilingKey(tiling);
      const fits = gemmThreads(tiling) <= limits.maxComputeInvocationsPerWorkgroup &&
        gemmWorkgroupBytes(tiling) <= limits.maxComputeWorkgroupStorageSize;
      const line: (string | number)[] = [name, key];
      for (const [N, K] of shapes) {
        if (!fits) {
          line.push("n/a");
          continue;
        }
        const layout: Layout = { ...f.layout, tpr: threadsPerRow(Math.ceil(K / 32)) };
        const { ms, bytes } = await measure(b, f, layout, T, N, K, false, tiling);
        const r = row(name, "gemm", T, N, K, b.timer.method, ms, bytes, NaN, key);
        rows.push({ ...r, copy_ratio: NaN });
        line.push(r.tflops.toPrecision(3));
        log(
          `gemm sweep ${name} ${key} ${r.shape}: ${ms.toFixed(4)} ms, ${
            r.tflops.toFixed(2)
          } TFLOP/s`,
        );
      }
      cells.push(line);
    }
  }
  const md = `GEMM tilings at T = ${T}, TFLOP/s (tiling: rows×tokens×depth/rows×tokens per ` +
    `thread, +prefetch: the next step's inputs loaded into registers during this one, /splitN: ` +
    `input features split up to N ways where a dispatch has few workgroups; default ` +
    `${gemmTilingKey(DEFAULT_GEMM_TILING)}):\n\n` +
    markdownTable(["format", "tiling", ...shapes.map(([N, K]) => `${N}×${K}`)], cells);
  return { rows, md };
}

/** One use of the `AᵀB` kernel timed by `--atb`. */
export interface AtbPerfCase {
  /** `hessian` (`H += XᵀX`) or `linear` (`x·Wᵀ` of the calibration forward). */
  use: "hessian" | "linear";
  layout: AtbLayout;
  /** Only the upper triangle's tiles (the Hessian). */
  upper: boolean;
  /** Values of `t` summed over (tokens of a window, or input features). */
  depth: number;
  /** Rows `i` and columns `j` of `O`. */
  rows: number;
  cols: number;
}

/**
 * `--atb`'s cases at TinyLlama-1.1B's shapes: GPTQ's Hessian of one 512-token window for the
 * 2048-wide inputs (q/k/v, o, gate/up) and the 5632-wide one (down), and the calibration
 * forward's gate/up and down linears over a chunk of 4096 token rows.
 */
export const ATB_PERF_CASES: readonly AtbPerfCase[] = [
  { use: "hessian", layout: "rows", upper: true, depth: 512, rows: 2048, cols: 2048 },
  { use: "hessian", layout: "rows", upper: true, depth: 512, rows: 5632, cols: 5632 },
  { use: "linear", layout: "cols", upper: false, depth: 2048, rows: 4096, cols: 5632 },
  { use: "linear", layout: "cols", upper: false, depth: 5632, rows: 4096, cols: 2048 },
];

/** `--atb --quick`: small shapes that are no whole tiles, for a smoke run. */
const QUICK_ATB_CASES: readonly AtbPerfCase[] = [
  { use: "hessian", layout: "rows", upper: true, depth: 70, rows: 150, cols: 150 },
  { use: "linear", layout: "cols", upper: false, depth: 96, rows: 70, cols: 200 },
];

/**
 * Times the `AᵀB` kernel at each case over random values in ±0.5, each dispatch accumulating into
 * the same `O` as GPTQ's calibration does; TFLOP/s count the products made (`upper`: those with
 * `i ≤ j`).
 */
async function timeAtb(
  b: Bench,
  cases: readonly AtbPerfCase[],
  log: (line: string) => void,
): Promise<GpuPerfRow[]> {
  const { k, timer } = b;
  const out: GpuPerfRow[] = [];
  for (const c of cases) {
    const { depth, rows: I, cols: J, layout, upper } = c;
    const a = k.storage(depth * I * 4);
    const bm = upper ? a : k.storage(depth * J * 4);
    const o = k.storage(I * J * 4);
    for (const [buffer, seed] of [[a, 11], [bm, 12]] as const) {
      await b.weights.fill({ buffer, offset: 0, size: buffer.size }, 2, seed);
    }
    const p: AtbParams = {
      depth,
      lda: layout === "rows" ? I : depth,
      ldb: layout === "rows" ? J : depth,
      ldo: J,
      i0: 0,
      i1: I,
      j0: 0,
      j1: J,
      row0: 0,
      alpha: 1,
    };
    const pipeline = await k.pipeline("urrw", atbShader(upper ? "upper" : "all", layout));
    const bind = k.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [k.uniform([...atbUniform(p)]), a, bm, o].map((buffer, binding) => ({
        binding,
        resource: { buffer },
      })),
    });
    const groups = atbGroups(p);
    const ms = await timer.timeAuto(
      (pass) => {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bind);
        pass.dispatchWorkgroups(...groups);
      },
      20,
      3,
    );
    for (const buffer of new Set([a, bm, o])) buffer.destroy();
    const products = upper ? (depth * I * (I + 1)) / 2 : depth * I * J;
    const tiling = `${ATB_TILE}x${ATB_TILE_COLS} ${layout}${upper ? "/upper" : ""}`;
    const bytes = depth * (upper ? I : I + J) * 4;
    const r = row(c.use, "atb", depth, I, J, timer.method, ms, bytes, NaN, tiling);
    out.push({ ...r, copy_ratio: NaN, tflops: (2 * products) / (ms * 1e9) });
    log(
      `atb ${c.use} ${tiling} ${r.shape}: ${ms.toFixed(4)} ms, ${
        out.at(-1)!.tflops.toFixed(2)
      } TFLOP/s`,
    );
  }
  return out;
}

/**
 * The codebook formats' GEMV with each knob setting of `CODEBOOK_VARIANTS` at 8192² (`quick`:
 * 512²), as a table of `÷ copy` per format and setting.
 */
async function sweepCodebook(
  host: CodebookPerfHost,
  quick: boolean,
  copyFor: (bytes: number) => Promise<number>,
  log: (line: string) => void,
): Promise<string> {
  const size = quick ? 512 : 8192;
  const formats = codebookPerfFormats().filter((f) => CODEBOOK_SWEEP_FORMATS.includes(f.name));
  const cells: string[][] = [];
  for (const f of formats) {
    const cell = [f.name];
    for (const variant of CODEBOOK_VARIANTS) {
      const [t] = await codebookPerf(host, [f], [[size, size]], [1], log, variant);
      if (!t) {
        // Not timed (a knob its kernel does not take, lanes for VPTQ): codebookPerf said why.
        cell.push("—");
        continue;
      }
      const ratio = t.bytes / (t.ms * 1e6) / await copyFor(t.bytes);
      log(
        `${f.name}${variant.label} gemv ${size}²: ${t.ms.toFixed(4)} ms, ÷ copy ${
          ratio.toFixed(3)
        }`,
      );
      cell.push(ratio.toFixed(3));
    }
    cells.push(cell);
  }
  return `Codebook formats' GEMV at ${size}² by knob setting (÷ copy; codebook_matmul.ts):\n\n` +
    markdownTable(["format", ...CODEBOOK_VARIANTS.map((v) => v.label.trim())], cells);
}

/** Runs the WebGPU micro-benchmarks, prints the tables and returns the rows. */
export async function runWebGpuPerf(options: WebGpuPerfOptions = {}): Promise<GpuPerfRow[]> {
  const gpu = await getGpu();
  const quick = options.quick ?? gpu.adapter.isFallbackAdapter;
  const T = options.rows ?? (quick ? 8 : 256);
  const shapes = quick ? QUICK_SHAPES : SHAPES;
  const formats = gpuPerfFormats().filter((f) =>
    !options.formats || options.formats.includes(f.name)
  );
  const k = new Kernels(gpu);
  try {
    return await perfRuns(k, { ...options, quick, rows: T }, shapes, formats);
  } finally {
    k.destroy();
  }
}

async function perfRuns(
  k: Kernels,
  options: WebGpuPerfOptions & { quick: boolean; rows: number },
  shapes: [number, number][],
  formats: PerfFormat[],
): Promise<GpuPerfRow[]> {
  const { quick, rows: T } = options;
  const gpu = k.gpu;
  const timer = new Timer(k);
  // Arena slots hold the largest matrix measured (f32 8192², 268 MB).
  const slot = Math.min(gpu.maxBinding, (quick ? 32 : 320) * 2 ** 20);
  const step = k.buffer(STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  const b: Bench = {
    k,
    timer,
    weights: new Arena(k, quick ? 4 : 5, slot),
    outputs: new Arena(k, 1, (quick ? 4 : 64) * 2 ** 20),
    copies: new Arena(k, 2, slot),
    step,
    // The GEMM sweep reads up to 512 rows of 5632.
    x: k.storage(Math.max(T * (quick ? 1024 : 16384), options.sweepGemm ? 512 * 5632 : 0) * 4),
    xq: k.storage(quantizedRowWords(16384 / 32) * 4),
  };
  await b.weights.fill({ buffer: b.x, offset: 0, size: b.x.size }, 2, 7);
  await b.weights.fill({ buffer: b.xq, offset: 0, size: b.xq.size }, 1, 0x01010101);
  const a = gpu.adapter;
  const header = [
    `backend: webgpu; adapter: ${a.description} (vendor ${a.vendor}${
      a.architecture ? `, ${a.architecture}` : ""
    }${a.isFallbackAdapter ? ", software fallback" : ""})`,
    `features: ${a.features.join(", ")}`,
    `max storage binding: ${a.maxStorageBufferBindingSize} B; timing: ${timer.method}; ` +
    `Deno ${Deno.version.deno}; GEMM rows: ${T}`,
  ];
  const out: GpuPerfRow[] = [];
  const log = (line: string) => console.log(line);
  header.forEach(log);
  // On an H200 the first tens of seconds after the buffers were allocated ran kernels several
  // times slower (and unevenly); time the int4-g128 GEMV until two runs agree within 3 %.
  const probeFormat = gpuPerfFormats().find((p) => p.name === "int4-g128")!;
  const probeLayout: Layout = { ...probeFormat.layout, tpr: threadsPerRow(256) };
  const settle = Date.now();
  let last = Infinity;
  for (let i = 0; !quick && Date.now() - settle < 90_000; i++) {
    await copyBandwidth(b, slot);
    const { ms } = await measure(b, probeFormat, probeLayout, 1, 8192, 8192);
    log(`settling ${i}: int4-g128 GEMV 8192² ${ms.toFixed(4)} ms`);
    if (Math.abs(ms - last) <= 0.03 * ms) break;
    last = ms;
  }
  const peak = await copyBandwidth(b, slot);
  header.push(
    `copy kernel, ${(slot / 2 ** 20).toFixed(0)} MiB: ${peak.gbps.toFixed(1)} GB/s ` +
      `(read + write, ${peak.ms.toFixed(3)} ms)${quick ? "; small shapes (--quick)" : ""}`,
  );
  log(header[header.length - 1]!);
  const copyCache = new Map<number, number>();
  const copyFor = async (bytes: number) => {
    let c = copyCache.get(bytes);
    if (c === undefined) copyCache.set(bytes, c = (await copyBandwidth(b, bytes)).gbps);
    return c;
  };
  const runs: [PerfFormat, number, number, number, boolean][] = [];
  // Formats the backend decodes to f32 on load run exactly as f32; they are listed, not timed.
  const skipped = formats.filter((f) => f.fallback).map((f) => f.name);
  if (skipped.length) log(`as f32 (not timed again): ${skipped.join(", ")}`);
  for (const f of formats.filter((f) => !f.fallback)) {
    // Integer layouts with an integer-activation GEMV are also timed on int8 activation codes.
    const a8 = a8Supported({ ...f.layout, tpr: 32 });
    for (const [N, K] of shapes) {
      runs.push([f, 1, N, K, false], [f, T, N, K, false]);
      if (a8) runs.push([f, 1, N, K, true]);
    }
    if (f.name === "int4-g128" && !quick) {
      runs.push([f, 1, 16384, 16384, false], [f, 1, 16384, 16384, true]);
    }
  }
  for (const [f, rowsT, N, K, a8] of runs) {
    const layout: Layout = { ...f.layout, tpr: threadsPerRow(Math.ceil(K / 32)) };
    const { ms, bytes } = await measure(b, f, layout, rowsT, N, K, a8);
    const kernel = a8 ? "gemv-a8" : rowsT === 1 ? "gemv" : "gemm";
    const r = row(f.name, kernel, rowsT, N, K, timer.method, ms, bytes, await copyFor(bytes));
    out.push(r);
    log(
      `${r.format} ${r.kernel} ${r.shape}: ${ms.toFixed(4)} ms, ${r.gbps.toFixed(1)} GB/s, ` +
        `÷ copy ${r.copy_ratio.toFixed(3)}, ${r.tflops.toFixed(2)} TFLOP/s`,
    );
  }
  // Codebook formats (QuIP#, AQLM, VPTQ): their own kernels over their uploaded parts.
  const codebook = codebookPerfFormats().filter((f) =>
    !options.formats || options.formats.includes(f.name)
  );
  const host = { gpu, x: b.x, timeAuto: timer.timeAuto.bind(timer) };
  for (const t of await codebookPerf(host, codebook, shapes, [1, T], log)) {
    const r = row(
      t.format,
      t.kernel,
      t.T,
      t.N,
      t.K,
      timer.method,
      t.ms,
      t.bytes,
      await copyFor(t.bytes),
    );
    out.push(r);
    log(
      `${r.format} ${r.kernel} ${r.shape}: ${t.ms.toFixed(4)} ms, ${r.gbps.toFixed(1)} GB/s, ` +
        `÷ copy ${r.copy_ratio.toFixed(3)}`,
    );
  }
  // The per-token activation quantization that feeds gemv-a8 (one dispatch per linear input).
  if (runs.some(([, , , , a8]) => a8)) {
    for (const K of [...new Set(runs.map(([, , , K]) => K))].sort((a, b) => a - b)) {
      const ms = await quantizeTime(b, K);
      const r = row("x → int8", "quantize", 1, 1, K, timer.method, ms, K * 4, await copyFor(K * 4));
      out.push({ ...r, tflops: 0 });
      log(`quantize activations 1×${K}: ${ms.toFixed(4)} ms`);
    }
  }
  if (options.atb) out.push(...await timeAtb(b, quick ? QUICK_ATB_CASES : ATB_PERF_CASES, log));
  const sweep: string[] = [];
  if (options.sweep) {
    sweep.push(await sweepGemv(b, quick, copyFor, log));
    sweep.push(await sweepFloatGemv(b, quick, copyFor, log));
  }
  if (options.sweep || options.sweepCodebook) {
    sweep.push(await sweepCodebook(host, quick, copyFor, log));
  }
  // The GEMM sweep's rows go to perf.csv; perf.md has them in the sweep's own table.
  const swept: GpuPerfRow[] = [];
  if (options.sweepGemm) {
    const gemm = await sweepGemm(b, quick, options.gemmTilings ?? GEMM_TILINGS, log);
    swept.push(...gemm.rows);
    sweep.push(gemm.md);
  }
  const md = `${header.join("\n")}\n\n${table(out)}\n${
    skipped.length ? `\nDecoded to f32 on load, so timed as f32: ${skipped.join(", ")}.\n` : ""
  }${sweep.length ? `\n${sweep.join("\n")}\n` : ""}`;
  log(`\n${md}`);
  if (options.out) {
    await writeFileAtomic(join(options.out, "perf.csv"), rowsToCsvTable([...out, ...swept]));
    await writeFileAtomic(join(options.out, "perf.md"), md);
  }
  return [...out, ...swept];
}
