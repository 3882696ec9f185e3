/**
 * The device side of GPTQ's column loop: the weights being quantized stay on the GPU, stored
 * column by column (`Wᵀ`, `cols × rows`, so a block of columns is one contiguous range), and the
 * lazy batch update after each block, `W[:, end:] −= Err · U[block, end:]` — the loop's
 * `rows · cols² / 2` multiply-adds — runs there as the `AᵀB` kernel (`atb_wgsl.ts`). Either the
 * caller reads each block's columns back, quantizes them (the format's grid rounds there), and
 * sends the block's errors and rows of `U` ({@linkcode GpuGptqColumns.update}), or the block is
 * quantized on the device too (`gptq_blocks.ts`), which puts `U` there once
 * ({@linkcode GpuGptqColumns.setFactor}) and encodes the copies and updates itself.
 *
 * @module
 */
import { getGpu, type Gpu } from "./device.ts";
import { Kernels } from "./kernels.ts";
import { atbGroups, type AtbParams, atbShader, atbUniform } from "./atb_wgsl.ts";

/** Thrown when the weights or a block do not fit. */
export class GptqColumnsError extends Error {
  override name = "GptqColumnsError";
}

/** A `rows × cols` weight matrix on the GPU being updated block by block. */
export class GpuGptqColumns {
  readonly rows: number;
  readonly cols: number;
  readonly #k: Kernels;
  readonly #pipeline: GPUComputePipeline;
  readonly #wt: GPUBuffer;
  readonly #hinv: GPUBuffer;
  readonly #err: GPUBuffer;
  readonly #uniform: GPUBuffer;
  readonly #bind: GPUBindGroup;
  readonly #maxBlock: number;
  #u: GPUBuffer | undefined;

  private constructor(
    k: Kernels,
    pipeline: GPUComputePipeline,
    wt: Float32Array<ArrayBuffer>,
    rows: number,
    cols: number,
    maxBlock: number,
  ) {
    this.rows = rows;
    this.cols = cols;
    this.#k = k;
    this.#pipeline = pipeline;
    this.#maxBlock = maxBlock;
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
    this.#wt = k.buffer(wt.byteLength, storage | GPUBufferUsage.COPY_SRC);
    k.device.queue.writeBuffer(this.#wt, 0, wt);
    this.#hinv = k.buffer(maxBlock * cols * 4, storage);
    this.#err = k.buffer(maxBlock * rows * 4, storage);
    this.#uniform = k.buffer(64, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.#bind = k.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [this.#uniform, this.#hinv, this.#err, this.#wt].map((b, binding) => ({
        binding,
        resource: { buffer: b },
      })),
    });
  }

  /**
   * The weights `w` (`rows × cols`, row-major) on the device (default the shared one), for
   * blocks of up to `maxBlock` columns.
   */
  static async create(
    w: Float64Array,
    rows: number,
    cols: number,
    maxBlock: number,
    gpu?: Gpu,
  ): Promise<GpuGptqColumns> {
    if (w.length !== rows * cols || !(Number.isInteger(maxBlock) && maxBlock >= 1)) {
      throw new GptqColumnsError(
        `Weights of ${w.length} values are no ${rows} × ${cols} matrix, or block ${maxBlock} ` +
          `is no positive integer`,
      );
    }
    const k = new Kernels(gpu ?? await getGpu());
    const bytes = rows * cols * 4;
    if (bytes > k.gpu.maxBinding || maxBlock * Math.max(rows, cols) * 4 > k.gpu.maxBinding) {
      k.destroy();
      throw new GptqColumnsError(
        `A ${rows} × ${cols} matrix (${bytes} bytes) is over the largest storage binding of ` +
          `${k.gpu.maxBinding} bytes`,
      );
    }
    const wt = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) wt[c * rows + r] = w[r * cols + c]!;
    }
    const pipeline = await k.pipeline("urrw", atbShader("all"));
    return new GpuGptqColumns(k, pipeline, wt, rows, cols, maxBlock);
  }

  /** The kernels (and device) the buffers belong to. */
  get kernels(): Kernels {
    return this.#k;
  }

  /**
   * The device buffers: `wt` the weights (`Wᵀ`), `hinv` the current block's rows of `U`
   * (`maxBlock × cols`), `err` the block's errors (`maxBlock × rows`, column by column).
   */
  get buffers(): { wt: GPUBuffer; hinv: GPUBuffer; err: GPUBuffer } {
    return { wt: this.#wt, hinv: this.#hinv, err: this.#err };
  }

  /** Puts the whole factor `u` (`cols × cols`, row-major) on the device, in float32. */
  setFactor(u: Float64Array | Float32Array): void {
    const { cols } = this;
    if (u.length !== cols * cols) {
      throw new GptqColumnsError(`A factor of ${u.length} values is no ${cols} × ${cols} matrix`);
    }
    this.#u ??= this.#k.buffer(cols * cols * 4, GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    const u32 = u instanceof Float32Array ? u : Float32Array.from(u);
    this.#k.device.queue.writeBuffer(this.#u, 0, u32 as Float32Array<ArrayBuffer>);
  }

  /** Encodes the copy of rows `[start, end)` of the factor ({@linkcode setFactor}) to `hinv`. */
  encodeFactorRows(enc: GPUCommandEncoder, start: number, end: number): void {
    this.#checkBlock(start, end);
    if (!this.#u) throw new GptqColumnsError("The factor is not on the device (setFactor)");
    const bytes = this.cols * 4;
    enc.copyBufferToBuffer(this.#u, start * bytes, this.#hinv, 0, (end - start) * bytes);
  }

  /** Columns `[c0, c1)` as they are now, into `w` (`rows × cols`, row-major, float64). */
  async readColumns(c0: number, c1: number, w: Float64Array): Promise<void> {
    const { rows, cols } = this;
    if (!(0 <= c0 && c0 < c1 && c1 <= cols)) {
      throw new GptqColumnsError(`Columns [${c0}, ${c1}) are not within 0…${cols}`);
    }
    const { device } = this.#k;
    const size = (c1 - c0) * rows * 4;
    const staging = device.createBuffer({
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(this.#wt, c0 * rows * 4, staging, 0, size);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const part = new Float32Array(staging.getMappedRange());
    for (let c = c0; c < c1; c++) {
      const base = (c - c0) * rows;
      for (let r = 0; r < rows; r++) w[r * cols + c] = part[base + r]!;
    }
    staging.unmap();
    staging.destroy();
  }

  /**
   * `W[:, end:] −= Err · U[start:end, end:]` for the block `[start, end)`: `err` its errors
   * (`rows × (end − start)`, row-major), `u` the factor (`cols × cols`, row-major).
   */
  update(err: Float64Array, u: Float64Array | Float32Array, start: number, end: number): void {
    const { rows, cols } = this;
    const count = end - start;
    this.#checkBlock(start, end, err.length);
    if (end === cols) return;
    const errT = new Float32Array(count * rows);
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < count; i++) errT[i * rows + r] = err[r * count + i]!;
    }
    const { device } = this.#k;
    device.queue.writeBuffer(
      this.#hinv,
      0,
      Float32Array.from(u.subarray(start * cols, end * cols)),
    );
    device.queue.writeBuffer(this.#err, 0, errT);
    const enc = device.createCommandEncoder();
    this.encodeUpdate(enc, start, end);
    device.queue.submit([enc.finish()]);
  }

  /**
   * Encodes `W[:, end:] −= Err · U[start:end, end:]` with the errors and rows of `U` already in
   * `err` and `hinv`; its parameters are written now, so the encoder is submitted before the
   * next block's.
   */
  encodeUpdate(enc: GPUCommandEncoder, start: number, end: number): void {
    this.#checkBlock(start, end);
    const { rows, cols } = this;
    if (end === cols) return;
    const count = end - start;
    // Wᵀ[j][r] −= Σ_i U[start + i][j] · Errᵀ[i][r] over j ∈ [end, cols).
    const params: AtbParams = {
      depth: count,
      lda: cols,
      ldb: rows,
      ldo: rows,
      i0: end,
      i1: cols,
      j0: 0,
      j1: rows,
      row0: 0,
      alpha: -1,
    };
    this.#k.device.queue.writeBuffer(this.#uniform, 0, atbUniform(params));
    const pass = enc.beginComputePass();
    pass.setPipeline(this.#pipeline);
    pass.setBindGroup(0, this.#bind);
    pass.dispatchWorkgroups(...atbGroups(params));
    pass.end();
  }

  #checkBlock(start: number, end: number, errors = this.rows * (end - start)): void {
    const count = end - start;
    if (
      !(Number.isInteger(start) && start >= 0 && count >= 1 && count <= this.#maxBlock &&
        end <= this.cols) || errors !== this.rows * count
    ) {
      throw new GptqColumnsError(
        `Block [${start}, ${end}) with ${errors} errors does not fit ${this.rows} rows and ` +
          `blocks of up to ${this.#maxBlock} columns`,
      );
    }
  }

  /** Frees the device buffers. */
  destroy(): void {
    this.#k.destroy();
  }
}
