/**
 * `deno task perf --backend webgpu`: the WebGPU matmul kernels per weight format at LLM sizes —
 * GEMV (decode, one activation row) and GEMM (prefill, `rows` activation rows) — against a copy
 * kernel moving as many bytes on the same adapter in the same run.
 *
 * - Weights are made on the GPU in the backend's own layout (random codes, fixed valid scales):
 *   speed does not depend on the values, and LLM-sized matrices need no host upload.
 * - Decode reads each weight once, so GEMV and copy timings rotate over enough copies of the
 *   buffers (≥ 256 MiB) that nothing is served from the GPU's L2 cache.
 * - Time is the median over several compute passes of `n` back-to-back dispatches, from GPU
 *   timestamps at the pass edges when the adapter has `timestamp-query`, else wall time from
 *   submit to completion; per-dispatch time is the pass time divided by `n`.
 * - GB/s counts the bytes of codes and scales the kernel reads; the copy's GB/s counts bytes read
 *   plus bytes written; `÷ copy` is GEMV GB/s divided by copy GB/s (1.0: as fast as memory).
 *
 * @module
 */
import { join } from "node:path";
import { getGpu, type Gpu } from "./device.ts";
import { type Dispatch, Kernels, linearGroups, STEP_STRIDE } from "./kernels.ts";
import {
  gemvRowsPerGroup,
  type Layout,
  type PackedMatrix,
  packedShape,
  packMatrix,
  SCALE_BYTES,
  type ScaleKind,
  threadsPerRow,
} from "./pack.ts";
import { perfFormats } from "../perf.ts";
import { elementFormats } from "../formats/registry.ts";
import { dense } from "../../harness/models/model.ts";
import { COPY_WGSL, FILL_WGSL } from "./ops_wgsl.ts";
import { markdownTable } from "../../reports/markdown.ts";
import { rowsToCsvTable } from "../perf_csv.ts";
import { writeFileAtomic } from "../../reports/atomic.ts";

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
  /** Also time GEMV kernel variants (threads per row × rows per thread) for int4-g128. */
  sweep?: boolean;
}

/** One measurement. */
export interface GpuPerfRow {
  backend: string;
  format: string;
  kernel: "gemv" | "gemm";
  /** `T×N×K`: activation rows × output features × input features. */
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
  return perfFormats().map(({ label, weights, settings }) => {
    const element = elementFormats.get(weights);
    const m = element.kind === "float" ? sample : element.quantize(settings, sample);
    const packed = packMatrix(m, 2 ** 30);
    const { tpr: _, ...layout } = packed.layout;
    return { name: label, layout, tensorScale: packed.tensorScale, fallback: packed.fallback };
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

  /** Calibrates `n` so a pass takes about `targetMs`, then times it. */
  async timeAuto(
    encode: (pass: GPUComputePassEncoder, i: number) => void,
    targetMs: number,
  ): Promise<number> {
    const probe = await this.time(encode, 3, 1); // also compiles and warms up
    const n = Math.max(3, Math.min(1000, Math.ceil(targetMs / Math.max(probe, 1e-4))));
    return await this.time(encode, n);
  }
}

/** Fills `words` u32 of `buf` on the GPU (mode 0 hash, 1 constant, 2 floats in [-0.5, 0.5)). */
async function fill(k: Kernels, buf: GPUBuffer, words: number, mode: number, seed: number) {
  const pipe = await k.pipeline("uw", FILL_WGSL);
  const bg = k.device.createBindGroup({
    layout: k.layout("uw"),
    entries: [
      { binding: 0, resource: { buffer: k.uniform([words, seed >>> 0, mode]) } },
      { binding: 1, resource: { buffer: buf } },
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

/** A weight matrix of `format` made on the GPU, as the kernels' dispatches. */
async function gpuMatrix(
  k: Kernels,
  format: PerfFormat,
  layout: Layout,
  N: number,
  K: number,
  step: GPUBuffer,
  x: GPUBuffer,
  out: GPUBuffer,
  seed: number,
): Promise<{ dispatches: Dispatch[]; bytes: number }> {
  const shape = packedShape(N, K, layout, k.gpu.maxBinding);
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
  let bytes = 0;
  const buffers: { codes: GPUBuffer; scales: GPUBuffer }[] = [];
  for (const p of shape.parts) {
    const codes = k.storage(p.codeBytes);
    await fill(k, codes, p.codeBytes / 4, layout.element === "f32" ? 2 : 0, seed);
    let scales = k.empty;
    if (SCALE_BYTES[layout.scale] > 0) {
      scales = k.storage(p.scaleBytes);
      await fill(k, scales, p.scaleBytes / 4, 1, SCALE_WORDS[layout.scale]);
    }
    buffers.push({ codes, scales });
    bytes += p.codeBytes + p.scaleBytes;
  }
  return { dispatches: await k.matmul(step, m, buffers, x, out, {}), bytes };
}

function encodeOne(pass: GPUComputePassEncoder, d: Dispatch, T: number): void {
  pass.setPipeline(d.pipeline(T));
  pass.setBindGroup(0, d.bindGroup, [0]);
  const [gx, gy, gz] = d.groups(T);
  pass.dispatchWorkgroups(gx, gy, gz);
}

/**
 * Copy time per dispatch and bandwidth (read + write, GB/s) for `bytes` (at most one storage
 * binding), rotating over ≥ 256 MiB when small.
 */
async function copyBandwidth(
  gpu: Gpu,
  timer: Timer,
  bytes: number,
): Promise<{ ms: number; gbps: number }> {
  const k = new Kernels(gpu);
  try {
    const vecs = Math.ceil(Math.min(bytes, gpu.maxBinding) / 16);
    const copies = Math.max(1, Math.min(32, Math.ceil(ROTATE_BYTES / bytes)));
    const pipe = await k.pipeline("urw", COPY_WGSL);
    const params = k.uniform([vecs]);
    const groups = linearGroups(Math.ceil(vecs / 4));
    const bgs: GPUBindGroup[] = [];
    for (let c = 0; c < copies; c++) {
      const src = k.storage(vecs * 16);
      const dst = k.storage(vecs * 16);
      await fill(k, src, vecs * 4, 0, c);
      bgs.push(k.device.createBindGroup({
        layout: k.layout("urw"),
        entries: [
          { binding: 0, resource: { buffer: params } },
          { binding: 1, resource: { buffer: src } },
          { binding: 2, resource: { buffer: dst } },
        ],
      }));
    }
    const ms = await timer.timeAuto((pass, i) => {
      pass.setPipeline(pipe);
      pass.setBindGroup(0, bgs[i % copies]!);
      pass.dispatchWorkgroups(groups[0], groups[1]);
    }, 4);
    return { ms, gbps: (2 * vecs * 16) / (ms * 1e6) };
  } finally {
    k.destroy();
  }
}

/** Times one format × shape × kernel; weights rotate over copies for GEMV. */
async function measure(
  gpu: Gpu,
  timer: Timer,
  format: PerfFormat,
  layout: Layout,
  T: number,
  N: number,
  K: number,
): Promise<{ ms: number; bytes: number }> {
  const k = new Kernels(gpu);
  try {
    const step = k.buffer(STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    k.device.queue.writeBuffer(step, 0, new Uint32Array([T, 0, 0, 0]));
    const x = k.storage(T * K * 4);
    await fill(k, x, T * K, 2, 7);
    const out = k.storage(T * N * 4);
    const first = await gpuMatrix(k, format, layout, N, K, step, x, out, 1);
    const copies = T === 1 ? Math.max(1, Math.min(32, Math.ceil(ROTATE_BYTES / first.bytes))) : 1;
    const sets = [first.dispatches];
    for (let c = 1; c < copies; c++) {
      sets.push((await gpuMatrix(k, format, layout, N, K, step, x, out, 1 + c)).dispatches);
    }
    const ms = await timer.timeAuto((pass, i) => {
      for (const d of sets[i % copies]!) encodeOne(pass, d, T);
    }, T === 1 ? 4 : 20);
    return { ms, bytes: first.bytes };
  } finally {
    k.destroy();
  }
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
  };
}

function table(rows: GpuPerfRow[]): string {
  return markdownTable(
    ["format", "kernel", "T×N×K", "ms", "MB", "GB/s", "copy GB/s", "÷ copy", "TFLOP/s"],
    rows.map((r) => [
      r.format,
      r.kernel,
      r.shape,
      r.median_ms.toFixed(4),
      (r.weight_bytes / 1e6).toFixed(2),
      r.gbps.toFixed(1),
      r.copy_gbps.toFixed(1),
      r.copy_ratio.toFixed(3),
      r.tflops.toFixed(2),
    ]),
  );
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
  const base = new Kernels(gpu);
  const timer = new Timer(base);
  const a = gpu.adapter;
  const header = [
    `backend: webgpu; adapter: ${a.description} (vendor ${a.vendor}${a.architecture ? `, ${a.architecture}` : ""}` +
    `${a.isFallbackAdapter ? ", software fallback" : ""})`,
    `features: ${a.features.join(", ")}`,
    `max storage binding: ${a.maxStorageBufferBindingSize} B; timing: ${timer.method}; ` +
    `Deno ${Deno.version.deno}`,
  ];
  const out: GpuPerfRow[] = [];
  const log = (line: string) => console.log(line);
  header.forEach(log);
  const peakBytes = Math.min(quick ? 16 * 2 ** 20 : 2 ** 30, gpu.maxBinding);
  const peak = await copyBandwidth(gpu, timer, peakBytes);
  header.push(
    `copy kernel, ${(peakBytes / 2 ** 20).toFixed(0)} MiB: ${peak.gbps.toFixed(1)} GB/s ` +
      `(read + write, ${peak.ms.toFixed(3)} ms)${quick ? "; small shapes (--quick)" : ""}`,
  );
  log(header[header.length - 1]!);
  const copyCache = new Map<number, number>();
  const copyFor = async (bytes: number) => {
    let c = copyCache.get(bytes);
    if (c === undefined) copyCache.set(bytes, c = (await copyBandwidth(gpu, timer, bytes)).gbps);
    return c;
  };
  const sweep: string[] = [];
  if (options.sweep) {
    const f = formats.find((p) => p.name === "int4-g128") ??
      gpuPerfFormats().find((p) => p.name === "int4-g128")!;
    const sizes = quick ? [[512, 512]] : [[8192, 8192], [16384, 16384]];
    const cells: (string | number)[][] = [];
    for (const [N, K] of sizes) {
      const copy = await copyFor(N! * K! / 2 + N! * (K! / 128) * 2);
      for (const tpr of [64, 128, 256]) {
        for (const R of [4, 8, 16]) {
          for (const U of [1, 2]) {
            log(`sweep ${N}x${K} tpr ${tpr} rows ${R} unroll ${U}`);
            const layout: Layout = { ...f.layout, tpr, gemvRows: R, gemvUnroll: U };
            const { ms, bytes } = await measure(gpu, timer, f, layout, 1, N!, K!);
            const gbps = bytes / (ms * 1e6);
            cells.push([
              `${N}x${K}`,
              tpr,
              R,
              U,
              gemvRowsPerGroup(layout),
              ms.toFixed(4),
              gbps.toFixed(1),
              (gbps / copy).toFixed(3),
            ]);
          }
        }
      }
    }
    sweep.push(
      "GEMV variants, int4-g128 (threads per row × rows per thread × chunks per step):\n",
      markdownTable(
        ["N×K", "threads/row", "rows/thread", "unroll", "rows/workgroup", "ms", "GB/s", "÷ copy"],
        cells,
      ),
    );
  }
  const runs: [PerfFormat, number, number, number][] = [];
  // Formats the backend decodes to f32 on load run exactly as f32; they are listed, not timed.
  const skipped = formats.filter((f) => f.fallback).map((f) => f.name);
  if (skipped.length) log(`as f32 (not timed again): ${skipped.join(", ")}`);
  for (const f of formats.filter((f) => !f.fallback)) {
    for (const [N, K] of shapes) runs.push([f, 1, N, K], [f, T, N, K]);
    if (f.name === "int4-g128" && !quick) runs.push([f, 1, 16384, 16384]);
  }
  for (const [f, rowsT, N, K] of runs) {
    const layout: Layout = { ...f.layout, tpr: threadsPerRow(Math.ceil(K / 32)) };
    const { ms, bytes } = await measure(gpu, timer, f, layout, rowsT, N, K);
    const kernel = rowsT === 1 ? "gemv" : "gemm";
    const r = row(f.name, kernel, rowsT, N, K, timer.method, ms, bytes, await copyFor(bytes));
    out.push(r);
    log(
      `${r.format} ${r.kernel} ${r.shape}: ${ms.toFixed(4)} ms, ${r.gbps.toFixed(1)} GB/s, ` +
        `÷ copy ${r.copy_ratio.toFixed(3)}, ${r.tflops.toFixed(2)} TFLOP/s`,
    );
  }
  base.destroy();
  const md = `${header.join("\n")}\n\n${table(out)}\n${
    skipped.length ? `\nDecoded to f32 on load, so timed as f32: ${skipped.join(", ")}.\n` : ""
  }${sweep.length ? `\n${sweep.join("\n")}\n` : ""}`;
  log(`\n${md}`);
  if (options.out) {
    await writeFileAtomic(join(options.out, "perf.csv"), rowsToCsvTable(out));
    await writeFileAtomic(join(options.out, "perf.md"), md);
  }
  return out;
}
