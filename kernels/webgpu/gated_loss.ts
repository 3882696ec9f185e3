/**
 * The squared error of a gated MLP's output through the next linear, kept on the GPU — AWQ's
 * scale-search loss for `[gate, up]` (`harness/methods/awq_webgpu.ts`), evaluated once per
 * candidate: `Σ ‖N·(silu(x·Gᵀ) · (x·Uᵀ) − y)‖²` over the calibration tokens `x` with the float
 * SwiGLU output `y` and the next linear `N`. The tokens and targets are sent once and stay
 * there; a candidate sends its two matrices, and per chunk of tokens the gate and up GEMMs
 * (`atb_wgsl.ts`'s `ABᵀ`), SwiGLU minus the target (`gated_error_wgsl.ts`), the next GEMM and a
 * sum of squares in partial sums (`sum_squares_wgsl.ts`) run back to back; only the partial sums
 * come back, added here in float64. {@linkcode GpuTargetLoss} does the same from the module's
 * outputs computed elsewhere (the attention's, whose RoPE runs on the host): the targets stay on
 * the device, the outputs are sent per candidate.
 *
 * @module
 */
import { getGpu } from "./device.ts";
import { Kernels } from "./kernels.ts";
import { atbGroups, type AtbParams, atbShader, atbUniform } from "./atb_wgsl.ts";
import { GATED_ERROR_SIGNATURE, GATED_ERROR_WGSL, gatedErrorGroups } from "./gated_error_wgsl.ts";
import {
  SUM_SQUARES_GROUPS,
  SUM_SQUARES_SIGNATURE,
  SUM_SQUARES_WGSL,
  sumSquaresUniform,
} from "./sum_squares_wgsl.ts";

/** Thrown when the shapes do not fit together or into the device's bindings. */
export class GatedLossError extends Error {
  override name = "GatedLossError";
}

/** Most token rows per chunk. */
const MAX_CHUNK_ROWS = 8192;

/** The shapes of a gated MLP: `cols` inputs, `hidden` gate/up outputs, `out` next outputs. */
export interface GatedShape {
  cols: number;
  hidden: number;
  out: number;
}

interface Chunk {
  rows: number;
  binds: GPUBindGroup[];
}

/** The rows of `arrays` (rows of `cols`), in order, as chunks of `[array, first row, rows]`. */
function chunksOf(
  arrays: readonly Float32Array[],
  cols: number,
  chunkRows: number,
): [number, number, number][][] {
  const chunks: [number, number, number][][] = [[]];
  let filled = 0;
  arrays.forEach((x, i) => {
    for (let r0 = 0, n = x.length / cols; r0 < n;) {
      if (filled === chunkRows) {
        chunks.push([]);
        filled = 0;
      }
      const take = Math.min(n - r0, chunkRows - filled);
      chunks.at(-1)!.push([i, r0, take]);
      filled += take;
      r0 += take;
    }
  });
  return chunks;
}

/** The linear `x·Wᵀ` of `n` token rows of `depth` into `j1` outputs (`atb_wgsl.ts`'s `ABᵀ`). */
function linearParams(n: number, depth: number, j1: number): AtbParams {
  return { depth, lda: depth, ldb: depth, ldo: j1, i0: 0, i1: n, j0: 0, j1, row0: 0, alpha: 1 };
}

/** The three kernels both losses run: `AᵀB` by columns, the gated error, the sums of squares. */
type LossPipelines = [GPUComputePipeline, GPUComputePipeline, GPUComputePipeline];

/** {@linkcode LossPipelines} of `k`. */
async function lossPipelines(k: Kernels): Promise<LossPipelines> {
  return await Promise.all([
    k.pipeline("urrw", atbShader("all", "cols")),
    k.pipeline(GATED_ERROR_SIGNATURE, GATED_ERROR_WGSL),
    k.pipeline(SUM_SQUARES_SIGNATURE, SUM_SQUARES_WGSL),
  ]);
}

/** The sums-of-squares partials of `chunks` chunks, read back by {@linkcode readSum}. */
function partialsBuffer(k: Kernels, chunks: number): GPUBuffer {
  return k.buffer(
    chunks * SUM_SQUARES_GROUPS * 4,
    GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  );
}

/** Adds the float32 partial sums of `partials` (its first `count`) in float64. */
async function readSum(k: Kernels, enc: GPUCommandEncoder, partials: GPUBuffer, count: number) {
  const size = count * 4;
  const staging = k.device.createBuffer({
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  enc.copyBufferToBuffer(partials, 0, staging, 0, size);
  k.device.queue.submit([enc.finish()]);
  try {
    await staging.mapAsync(GPUMapMode.READ);
    let sum = 0;
    for (const v of new Float32Array(staging.getMappedRange())) sum += v;
    staging.unmap();
    return sum;
  } finally {
    staging.destroy();
  }
}

/**
 * A module's error through the next linear against resident targets: `Σ ‖N·(o − y)‖²` over
 * outputs `o` the host computed and sends per call (AWQ's attention module, whose RoPE runs on
 * the host), the targets `y` and `N` sent once; the difference, the GEMM and the sum of squares
 * run on the device and only partial sums come back.
 */
export class GpuTargetLoss {
  readonly #k: Kernels;
  readonly #hidden: number;
  readonly #chunks: { parts: [number, number, number][]; binds: GPUBindGroup[] }[];
  readonly #pipelines: LossPipelines;
  readonly #work: GPUBuffer[];
  readonly #partials: GPUBuffer;
  readonly #out: number;
  readonly #lengths: number[];

  private constructor(
    k: Kernels,
    dims: [number, number],
    lengths: number[],
    chunks: { parts: [number, number, number][]; binds: GPUBindGroup[] }[],
    pipelines: LossPipelines,
    work: GPUBuffer[],
    partials: GPUBuffer,
  ) {
    this.#k = k;
    [this.#hidden, this.#out] = dims;
    this.#lengths = lengths;
    this.#chunks = chunks;
    this.#pipelines = pipelines;
    this.#work = work;
    this.#partials = partials;
  }

  /**
   * Targets `ys` (rows of `hidden`) and the next linear `next` (`out × hidden`) on the device,
   * in chunks of at most `maxChunkRows` token rows.
   */
  static async create(
    hidden: number,
    out: number,
    ys: readonly Float32Array[],
    next: Float32Array,
    maxChunkRows = MAX_CHUNK_ROWS,
  ): Promise<GpuTargetLoss> {
    const k = new Kernels(await getGpu());
    const chunkRows = Math.min(
      maxChunkRows,
      Math.floor(k.gpu.maxBinding / (4 * Math.max(hidden, out))),
    );
    if (next.length !== out * hidden || chunkRows === 0 || ys.some((y) => y.length % hidden)) {
      k.destroy();
      throw new GatedLossError(`Targets of ${hidden} and a next linear of ${out} do not fit`);
    }
    const { device } = k;
    const storage = (floats: number, extra = 0) =>
      k.buffer(floats * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | extra);
    const nextBuffer = storage(out * hidden);
    device.queue.writeBuffer(nextBuffer, 0, next as Float32Array<ArrayBuffer>);
    const work = [storage(chunkRows * hidden), storage(chunkRows * out)];
    const [o, nextOut] = work as [GPUBuffer, GPUBuffer];
    const pipelines = await lossPipelines(k);
    const [atb, error, sumsq] = pipelines;
    const rows = chunksOf(ys, hidden, chunkRows);
    const partials = partialsBuffer(k, rows.length);
    const uniform = (words: Uint32Array<ArrayBuffer>) => {
      const u = k.buffer(64, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
      device.queue.writeBuffer(u, 0, words);
      return u;
    };
    const bind = (pipeline: GPUComputePipeline, buffers: GPUBuffer[]) =>
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
    const chunks = rows.map((parts, c) => {
      const n = parts.reduce((s, [, , take]) => s + take, 0);
      const y = storage(n * hidden);
      let at = 0;
      for (const [i, r0, take] of parts) {
        const yi = ys[i]! as Float32Array<ArrayBuffer>;
        device.queue.writeBuffer(y, at * hidden * 4, yi, r0 * hidden, take * hidden);
        at += take;
      }
      const errorWords = Uint32Array.of(n * hidden, 0, 0, 0);
      const sumWords = sumSquaresUniform(n * out, c * SUM_SQUARES_GROUPS);
      return {
        parts,
        binds: [
          // `up` is unread without `gated`; `y` stands in for it.
          bind(error, [uniform(errorWords), o, y, y]),
          bind(atb, [uniform(atbUniform(linearParams(n, hidden, out))), o, nextBuffer, nextOut]),
          bind(sumsq, [uniform(sumWords), nextOut, partials]),
        ],
      };
    });
    const lengths = ys.map((y) => y.length);
    return new GpuTargetLoss(k, [hidden, out], lengths, chunks, pipelines, work, partials);
  }

  /** `Σ ‖N·(o − y)‖²` over the module outputs `os` (one array per target array). */
  async loss(os: readonly Float32Array[]): Promise<number> {
    const [hidden, out] = [this.#hidden, this.#out];
    const { device } = this.#k;
    const [atb, error, sumsq] = this.#pipelines;
    const [o, nextOut] = this.#work as [GPUBuffer, GPUBuffer];
    if (os.length !== this.#lengths.length || os.some((x, i) => x.length !== this.#lengths[i])) {
      throw new GatedLossError(`Outputs of ${os.map((x) => x.length)} are not the targets' shape`);
    }
    for (const { parts, binds } of this.#chunks) {
      const n = parts.reduce((s, [, , take]) => s + take, 0);
      // The chunk's outputs into the shared buffer: the queue orders this write after the
      // previous chunk's work.
      let at = 0;
      for (const [i, r0, take] of parts) {
        const oi = os[i]! as Float32Array<ArrayBuffer>;
        device.queue.writeBuffer(o, at * hidden * 4, oi, r0 * hidden, take * hidden);
        at += take;
      }
      const enc = device.createCommandEncoder();
      enc.clearBuffer(nextOut, 0, n * out * 4);
      const pass = enc.beginComputePass();
      pass.setPipeline(error);
      pass.setBindGroup(0, binds[0]!);
      pass.dispatchWorkgroups(...gatedErrorGroups(n * hidden));
      pass.setPipeline(atb);
      pass.setBindGroup(0, binds[1]!);
      pass.dispatchWorkgroups(...atbGroups(linearParams(n, hidden, out)));
      pass.setPipeline(sumsq);
      pass.setBindGroup(0, binds[2]!);
      pass.dispatchWorkgroups(SUM_SQUARES_GROUPS);
      pass.end();
      device.queue.submit([enc.finish()]);
    }
    return await readSum(
      this.#k,
      device.createCommandEncoder(),
      this.#partials,
      this.#chunks.length * SUM_SQUARES_GROUPS,
    );
  }

  /** Frees the device buffers. */
  destroy(): void {
    this.#k.destroy();
  }
}

/** A gated MLP's error through its next linear over resident tokens (see the module notes). */
export class GpuGatedLoss {
  readonly shape: GatedShape;
  readonly #k: Kernels;
  readonly #pipelines: LossPipelines;
  readonly #gate: GPUBuffer;
  readonly #up: GPUBuffer;
  readonly #partials: GPUBuffer;
  readonly #chunks: Chunk[];
  readonly #work: GPUBuffer[];

  private constructor(
    shape: GatedShape,
    k: Kernels,
    pipelines: LossPipelines,
    weights: GPUBuffer[],
    partials: GPUBuffer,
    chunks: Chunk[],
    work: GPUBuffer[],
  ) {
    this.shape = shape;
    this.#k = k;
    this.#pipelines = pipelines;
    [this.#gate, this.#up] = weights as [GPUBuffer, GPUBuffer];
    this.#partials = partials;
    this.#chunks = chunks;
    this.#work = work;
  }

  /**
   * Tokens `xs` (rows of `cols`), their targets `ys` (rows of `hidden`, one array per array of
   * `xs`) and the next linear `next` (`out × hidden`), sent to the device in chunks of at most
   * `maxChunkRows` token rows (fewer where a chunk's widest buffer would exceed a binding).
   */
  static async create(
    shape: GatedShape,
    xs: readonly Float32Array[],
    ys: readonly Float32Array[],
    next: Float32Array,
    maxChunkRows = MAX_CHUNK_ROWS,
  ): Promise<GpuGatedLoss> {
    const { cols, hidden, out } = shape;
    const k = new Kernels(await getGpu());
    const fail = (message: string) => {
      k.destroy();
      return new GatedLossError(message);
    };
    const widest = Math.max(cols, hidden, out);
    const chunkRows = Math.min(maxChunkRows, Math.floor(k.gpu.maxBinding / (4 * widest)));
    if (next.length !== out * hidden || hidden * cols * 4 > k.gpu.maxBinding || chunkRows === 0) {
      throw fail(`A gated MLP of ${cols} → ${hidden} → ${out} does not fit the device's bindings`);
    }
    if (xs.length !== ys.length || xs.some((x, i) => x.length / cols !== ys[i]!.length / hidden)) {
      throw fail(`Tokens and targets do not pair up as rows of ${cols} and ${hidden}`);
    }
    const device = k.device;
    const storage = (floats: number, extra = 0) =>
      k.buffer(floats * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | extra);
    const weights = [storage(hidden * cols), storage(hidden * cols)];
    const nextBuffer = storage(out * hidden);
    device.queue.writeBuffer(nextBuffer, 0, next as Float32Array<ArrayBuffer>);
    const work = [
      storage(chunkRows * hidden),
      storage(chunkRows * hidden),
      storage(chunkRows * out),
    ];
    const [gateOut, upOut, nextOut] = work as [GPUBuffer, GPUBuffer, GPUBuffer];
    const pipelines = await lossPipelines(k);
    const [atb, gated, sumsq] = pipelines;
    // Token rows of all arrays, in order, `chunkRows` at a time.
    const rows = chunksOf(xs, cols, chunkRows);
    const partials = partialsBuffer(k, rows.length);
    const bind = (pipeline: GPUComputePipeline, buffers: GPUBuffer[]) =>
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
    const uniform = (words: Uint32Array<ArrayBuffer>) => {
      const u = k.buffer(64, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
      device.queue.writeBuffer(u, 0, words);
      return u;
    };
    const chunks = rows.map((parts, c): Chunk => {
      const n = parts.reduce((s, [, , take]) => s + take, 0);
      const x = storage(n * cols);
      const y = storage(n * hidden);
      let at = 0;
      for (const [i, r0, take] of parts) {
        const [xi, yi] = [xs[i]! as Float32Array<ArrayBuffer>, ys[i]! as Float32Array<ArrayBuffer>];
        device.queue.writeBuffer(x, at * cols * 4, xi, r0 * cols, take * cols);
        device.queue.writeBuffer(y, at * hidden * 4, yi, r0 * hidden, take * hidden);
        at += take;
      }
      const first = uniform(atbUniform(linearParams(n, cols, hidden)));
      const second = uniform(atbUniform(linearParams(n, hidden, out)));
      return {
        rows: n,
        binds: [
          bind(atb, [first, x, weights[0]!, gateOut]),
          bind(atb, [first, x, weights[1]!, upOut]),
          bind(gated, [uniform(Uint32Array.of(n * hidden, 1, 0, 0)), gateOut, upOut, y]),
          bind(atb, [second, gateOut, nextBuffer, nextOut]),
          bind(sumsq, [
            uniform(sumSquaresUniform(n * out, c * SUM_SQUARES_GROUPS)),
            nextOut,
            partials,
          ]),
        ],
      };
    });
    return new GpuGatedLoss(shape, k, pipelines, weights, partials, chunks, work);
  }

  /** `Σ ‖N·(silu(x·Gᵀ) · (x·Uᵀ) − y)‖²` with the gate `gate` and up `up` (`hidden × cols`). */
  async loss(gate: Float32Array, up: Float32Array): Promise<number> {
    const { cols, hidden, out } = this.shape;
    if (gate.length !== hidden * cols || up.length !== hidden * cols) {
      throw new GatedLossError(`Gate and up must be ${hidden} × ${cols}`);
    }
    const { device } = this.#k;
    device.queue.writeBuffer(this.#gate, 0, gate as Float32Array<ArrayBuffer>);
    device.queue.writeBuffer(this.#up, 0, up as Float32Array<ArrayBuffer>);
    const [atb, gated, sumsq] = this.#pipelines;
    const [gateOut, upOut, nextOut] = this.#work as [GPUBuffer, GPUBuffer, GPUBuffer];
    const enc = device.createCommandEncoder();
    for (const { rows, binds } of this.#chunks) {
      // The GEMMs accumulate into their outputs.
      enc.clearBuffer(gateOut, 0, rows * hidden * 4);
      enc.clearBuffer(upOut, 0, rows * hidden * 4);
      enc.clearBuffer(nextOut, 0, rows * out * 4);
      const pass = enc.beginComputePass();
      const gemm = (bindGroup: GPUBindGroup, j1: number) => {
        pass.setPipeline(atb);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(...atbGroups(linearParams(rows, 0, j1)));
      };
      gemm(binds[0]!, hidden);
      gemm(binds[1]!, hidden);
      pass.setPipeline(gated);
      pass.setBindGroup(0, binds[2]!);
      pass.dispatchWorkgroups(...gatedErrorGroups(rows * hidden));
      gemm(binds[3]!, out);
      pass.setPipeline(sumsq);
      pass.setBindGroup(0, binds[4]!);
      pass.dispatchWorkgroups(SUM_SQUARES_GROUPS);
      pass.end();
    }
    return await readSum(this.#k, enc, this.#partials, this.#chunks.length * SUM_SQUARES_GROUPS);
  }

  /** Frees the device buffers. */
  destroy(): void {
    this.#k.destroy();
  }
}
