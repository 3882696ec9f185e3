/**
 * Gram matrices `Σ XᵀX` of captured activations accumulated on the GPU — the sum behind GPTQ's
 * Hessian `H = 2/N · Σ xxᵀ` — with the `AᵀB` kernel (`atb_wgsl.ts`). The sum lives in float32 on
 * the device, in bands of rows that each fit the largest storage binding (a 14336-wide Hessian
 * is 822 MB); activations are sent in chunks of tokens that fit one too. Only the upper triangle
 * is computed (the kernel's 64 × 128 tiles wholly below the diagonal are skipped, so about half
 * the products are made: a 5632-wide window of 512 tokens is 8.1 GFLOP of 16.2);
 * {@linkcode GpuGram.read} mirrors it into a full float64 matrix.
 *
 * @module
 */
import { getGpu, type Gpu } from "./device.ts";
import { Kernels } from "./kernels.ts";
import { ATB_TILE, atbGroups, type AtbParams, atbShader, atbUniform } from "./atb_wgsl.ts";

/** Thrown when a Gram matrix cannot be held or fed. */
export class GramShapeError extends Error {
  override name = "GramShapeError";
}

/** Where a {@linkcode GpuGram} runs. */
export interface GramOptions {
  /** The device (default the shared one). */
  gpu?: Gpu;
  /** A smaller binding limit than the device's (tests split small matrices into bands). */
  maxBinding?: number;
}

/** Most tokens sent per chunk (a chunk also fits the largest binding). */
const MAX_CHUNK_TOKENS = 4096;

interface Band {
  row0: number;
  rows: number;
  buffer: GPUBuffer;
  uniform: GPUBuffer;
  bind: GPUBindGroup;
}

/** A running `Σ XᵀX` (`cols × cols`) on the GPU. */
export class GpuGram {
  readonly cols: number;
  readonly #k: Kernels;
  readonly #pipeline: GPUComputePipeline;
  readonly #x: GPUBuffer;
  readonly #chunk: number;
  readonly #bands: Band[];

  private constructor(
    k: Kernels,
    pipeline: GPUComputePipeline,
    cols: number,
    maxBinding: number,
  ) {
    this.cols = cols;
    this.#k = k;
    this.#pipeline = pipeline;
    const rowBytes = cols * 4;
    const fit = Math.floor(maxBinding / rowBytes);
    // Bands are whole tiles of rows (each band is its own dispatch), so only the last band's
    // last tile of rows is partial.
    const bandRows = Math.floor(fit / ATB_TILE) * ATB_TILE;
    if (bandRows === 0) {
      throw new GramShapeError(
        `A Gram row of ${cols} columns needs ${rowBytes * ATB_TILE} bytes per band, over the ` +
          `largest storage binding of ${maxBinding}`,
      );
    }
    this.#chunk = Math.min(MAX_CHUNK_TOKENS, fit);
    this.#x = k.buffer(this.#chunk * rowBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    this.#bands = [];
    for (let row0 = 0; row0 < cols; row0 += bandRows) {
      const rows = Math.min(bandRows, cols - row0);
      const buffer = k.buffer(
        rows * rowBytes,
        GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      );
      const uniform = k.buffer(64, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
      const bind = k.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [uniform, this.#x, this.#x, buffer].map((b, binding) => ({
          binding,
          resource: { buffer: b },
        })),
      });
      this.#bands.push({ row0, rows, buffer, uniform, bind });
    }
  }

  /** A zero `cols × cols` sum. */
  static async create(cols: number, options: GramOptions = {}): Promise<GpuGram> {
    if (!(Number.isInteger(cols) && cols >= 1)) {
      throw new GramShapeError(`A Gram matrix needs a positive integer width, got ${cols}`);
    }
    const k = new Kernels(options.gpu ?? await getGpu());
    const pipeline = await k.pipeline("urrw", atbShader("upper"));
    const maxBinding = Math.min(k.gpu.maxBinding, options.maxBinding ?? Infinity);
    return new GpuGram(k, pipeline, cols, maxBinding);
  }

  /**
   * Adds `XᵀX` for `x` = `tokens × cols` row-major, from the host or from a device buffer of
   * exactly its bytes (`window_inputs.ts`; the same sums either way).
   */
  add(x: Float32Array | GPUBuffer): void {
    const { cols } = this;
    const length = x instanceof Float32Array ? x.length : x.size / 4;
    if (length % cols !== 0) {
      throw new GramShapeError(`Activations of ${length} values are no rows of ${cols}`);
    }
    const tokens = length / cols;
    const { device } = this.#k;
    for (let t0 = 0; t0 < tokens; t0 += this.#chunk) {
      const n = Math.min(this.#chunk, tokens - t0);
      if (x instanceof Float32Array) {
        device.queue.writeBuffer(this.#x, 0, x as Float32Array<ArrayBuffer>, t0 * cols, n * cols);
      }
      for (const [b, band] of this.#bands.entries()) {
        const params: AtbParams = {
          depth: n,
          lda: cols,
          ldb: cols,
          ldo: cols,
          i0: band.row0,
          i1: band.row0 + band.rows,
          j0: 0,
          j1: cols,
          row0: band.row0,
          alpha: 1,
        };
        device.queue.writeBuffer(band.uniform, 0, atbUniform(params));
        // One submit per band: the next band's parameters overwrite nothing in flight.
        const enc = device.createCommandEncoder();
        if (b === 0 && !(x instanceof Float32Array)) {
          enc.copyBufferToBuffer(x, t0 * cols * 4, this.#x, 0, n * cols * 4);
        }
        const pass = enc.beginComputePass();
        pass.setPipeline(this.#pipeline);
        pass.setBindGroup(0, band.bind);
        pass.dispatchWorkgroups(...atbGroups(params));
        pass.end();
        device.queue.submit([enc.finish()]);
      }
    }
  }

  /**
   * The sum so far as computed: `cols × cols` float32, row-major, valid on and above the
   * diagonal (one read back).
   */
  async readUpper(): Promise<Float32Array> {
    const { cols } = this;
    const { device } = this.#k;
    const out = new Float32Array(cols * cols);
    // A staging buffer per band (the whole matrix may be over the largest buffer), one submit.
    const enc = device.createCommandEncoder();
    const stagings = this.#bands.map((band) => {
      const size = band.rows * cols * 4;
      const staging = device.createBuffer({
        size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      enc.copyBufferToBuffer(band.buffer, 0, staging, 0, size);
      return staging;
    });
    device.queue.submit([enc.finish()]);
    await Promise.all(stagings.map((b) => b.mapAsync(GPUMapMode.READ)));
    stagings.forEach((staging, i) => {
      out.set(new Float32Array(staging.getMappedRange()), this.#bands[i]!.row0 * cols);
      staging.unmap();
      staging.destroy();
    });
    return out;
  }

  /** The sum so far as a full symmetric `cols × cols` float64 matrix. */
  async read(): Promise<Float64Array> {
    const { cols } = this;
    const upper = await this.readUpper();
    const out = new Float64Array(cols * cols);
    // Tile by tile, so the transposed writes stay within a few cache lines.
    const T = 64;
    for (let i0 = 0; i0 < cols; i0 += T) {
      for (let j0 = i0; j0 < cols; j0 += T) {
        const [i1, j1] = [Math.min(cols, i0 + T), Math.min(cols, j0 + T)];
        for (let i = i0; i < i1; i++) {
          for (let j = Math.max(i, j0); j < j1; j++) {
            const v = upper[i * cols + j]!;
            out[i * cols + j] = v;
            out[j * cols + i] = v;
          }
        }
      }
    }
    return out;
  }

  /** Frees the device buffers. */
  destroy(): void {
    this.#k.destroy();
  }
}
