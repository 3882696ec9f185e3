/**
 * A linear layer `y = x·Wᵀ` over many token rows at once on the GPU — the bulk of a
 * calibration forward (`2 · tokens · rows · cols` flops per linear: about 140 TFLOP for GPTQ's
 * 128 windows of 512 tokens through a 1.1B model) — with the `AᵀB` kernel in its `ABᵀ` layout
 * (`atb_wgsl.ts`), float32 weights: 64 token rows × 128 output features a workgroup, the tile
 * of the prefill GEMM that reached ~20 TFLOP/s on an H100 (the older 64 × 64 kernel ran the
 * calibration at ~1.5; `perf_main.ts --atb` times this one). Rows go through in chunks whose
 * input and output each fit the largest storage binding. A gated pair (SwiGLU's gate and up
 * projections) runs as one: `silu(x·Gᵀ) · (x·Uᵀ)` with the input sent once and only the product
 * read back ({@linkcode GpuBatchLinear.applyGated}; the SwiGLU kernel of `ops_wgsl.ts`).
 *
 * @module
 */
import { getGpu, type Gpu } from "./device.ts";
import { encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";
import { atbGroups, type AtbParams, atbShader, atbUniform } from "./atb_wgsl.ts";

/** Thrown when the weights or the activations do not fit. */
export class BatchLinearError extends Error {
  override name = "BatchLinearError";
}

/** A window's token rows: on the host, or on the device in a buffer of exactly their bytes. */
export type WindowRows = Float32Array | GPUBuffer;

/** Where a batch's results go besides the arrays returned. */
export interface BatchLinearOptions {
  /**
   * Given the arrays about to be returned, device buffers of their sizes (one a window) that
   * receive the same values (`GpuWindowInputs.keep`), for a next kernel to read there.
   */
  keep?: (outs: Float32Array[]) => GPUBuffer[];
  /**
   * Chunk buffers (input, outputs, staging) kept from call to call; without it a call makes its
   * own and frees them.
   */
  scratch?: BatchLinearScratch;
  /**
   * Whether the results come back to the arrays returned (default true); with false they go to
   * the `keep` buffers only and the arrays stay unwritten (a next kernel reads them there).
   */
  readBack?: boolean;
}

/**
 * The chunk buffers of batched linears, reused by call after call (a calibration forward runs
 * seven linears a layer over the same number of rows): each is made again only when a call
 * needs it larger. Calls that share one run one after another.
 */
export class BatchLinearScratch {
  readonly #device: GPUDevice;
  readonly #buffers = new Map<string, GPUBuffer>();

  /** No buffers yet, on `device`. */
  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** The buffer `name`: at least `size` bytes of `usage` (always the same for a name). */
  get(name: string, size: number, usage: GPUBufferUsageFlags): GPUBuffer {
    let b = this.#buffers.get(name);
    if (b === undefined || b.size < size) {
      b?.destroy();
      b = this.#device.createBuffer({ size, usage });
      this.#buffers.set(name, b);
    }
    return b;
  }

  /** Frees the buffers (a later call makes them again). */
  destroy(): void {
    for (const b of this.#buffers.values()) b.destroy();
    this.#buffers.clear();
  }
}

/** Most token rows per chunk. */
const MAX_CHUNK_ROWS = 8192;

/** A float32 `rows × cols` weight matrix on the GPU, applied to batches of token rows. */
export class GpuBatchLinear {
  readonly rows: number;
  readonly cols: number;
  readonly #k: Kernels;
  readonly #pipeline: GPUComputePipeline;
  readonly #w: GPUBuffer;

  private constructor(
    k: Kernels,
    pipeline: GPUComputePipeline,
    w: GPUBuffer,
    rows: number,
    cols: number,
  ) {
    this.rows = rows;
    this.cols = cols;
    this.#k = k;
    this.#pipeline = pipeline;
    this.#w = w;
  }

  /** `w` (`rows × cols`, row-major) on the device (default the shared one). */
  static async create(
    w: Float32Array,
    rows: number,
    cols: number,
    gpu?: Gpu,
  ): Promise<GpuBatchLinear> {
    const k = new Kernels(gpu ?? await getGpu());
    if (w.length !== rows * cols || w.byteLength > k.gpu.maxBinding) {
      k.destroy();
      throw new BatchLinearError(
        `Weights of ${w.length} values are no ${rows} × ${cols} matrix within one storage ` +
          `binding of ${k.gpu.maxBinding} bytes`,
      );
    }
    const buffer = k.buffer(w.byteLength, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    k.device.queue.writeBuffer(buffer, 0, w as Float32Array<ArrayBuffer>);
    const pipeline = await k.pipeline("urrw", atbShader("all", "cols"));
    return new GpuBatchLinear(k, pipeline, buffer, rows, cols);
  }

  /**
   * `x·Wᵀ` of each of `xs` (token rows of `cols`: host arrays, or device buffers of exactly their
   * bytes, `window_inputs.ts`), as `tokens × rows` arrays, sent `chunkRows` token rows at a time
   * (default as many as fit a binding, at most 8192).
   */
  apply(
    xs: readonly WindowRows[],
    chunkRows = MAX_CHUNK_ROWS,
    options: BatchLinearOptions = {},
  ): Promise<Float32Array[]> {
    return this.#run(xs, chunkRows, undefined, options);
  }

  /**
   * `silu(x·Wᵀ) · (x·Upᵀ)` of each of `xs`, this matrix the gate and `up` (same shape, same
   * device) the up projection: SwiGLU's two linears with the input sent once and only the
   * product read back, in chunks as {@linkcode apply} sends them.
   */
  applyGated(
    xs: readonly WindowRows[],
    up: GpuBatchLinear,
    chunkRows = MAX_CHUNK_ROWS,
    options: BatchLinearOptions = {},
  ): Promise<Float32Array[]> {
    if (up.rows !== this.rows || up.cols !== this.cols || up.#k.device !== this.#k.device) {
      throw new BatchLinearError(
        `A gate of ${this.rows} × ${this.cols} needs an up projection of the same shape on the ` +
          `same device, got ${up.rows} × ${up.cols}`,
      );
    }
    return this.#run(xs, chunkRows, up, options);
  }

  async #run(
    xs: readonly WindowRows[],
    chunkRows: number,
    up: GpuBatchLinear | undefined,
    { keep, scratch: shared, readBack = true }: BatchLinearOptions,
  ): Promise<Float32Array[]> {
    const { rows, cols } = this;
    if (!readBack && !keep) {
      throw new BatchLinearError(`Results not read back need buffers to keep them (keep)`);
    }
    const lengths = xs.map((x) => x instanceof Float32Array ? x.length : x.size / 4);
    for (const length of lengths) {
      if (length % cols !== 0) {
        throw new BatchLinearError(`Activations of ${length} values are no rows of ${cols}`);
      }
    }
    const k = this.#k;
    const { device } = k;
    const chunk = Math.min(chunkRows, Math.floor(k.gpu.maxBinding / (4 * Math.max(rows, cols))));
    if (chunk === 0) {
      throw new BatchLinearError(`A row of ${Math.max(rows, cols)} floats is over the binding`);
    }
    const scratch = shared ?? new BatchLinearScratch(device);
    const buffer = (name: string, size: number, usage: GPUBufferUsageFlags) =>
      scratch.get(name, size, usage | GPUBufferUsage.COPY_DST);
    const input = buffer("input", chunk * cols * 4, GPUBufferUsage.STORAGE);
    const output = buffer(
      "output",
      chunk * rows * 4,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    );
    const uniform = buffer("uniform", 64, GPUBufferUsage.UNIFORM);
    // Two staging buffers: a chunk comes back through one while the next is sent.
    const stagings = readBack
      ? [0, 1].map((i) => buffer(`staging${i}`, chunk * rows * 4, GPUBufferUsage.MAP_READ))
      : [];
    let flushes = 0;
    const bindFor = (w: GPUBuffer, out: GPUBuffer) =>
      device.createBindGroup({
        layout: this.#pipeline.getBindGroupLayout(0),
        entries: [uniform, input, w, out].map((buffer, binding) => ({
          binding,
          resource: { buffer },
        })),
      });
    const bind = bindFor(this.#w, output);
    // The gated pair: the up projection into a second output, then gate = silu(gate)·up there.
    const gated = up && {
      output: buffer("upOutput", chunk * rows * 4, GPUBufferUsage.STORAGE),
      step: buffer("step", STEP_STRIDE, GPUBufferUsage.UNIFORM),
    };
    const upBind = gated && bindFor(up.#w, gated.output);
    const swiglu = gated && await k.swiglu(gated.step, output, gated.output, rows);
    const outs = lengths.map((length) => new Float32Array((length / cols) * rows));
    const kept = keep?.(outs);
    // Rows of all inputs, in order, `chunk` at a time: [input index, first row, row count].
    let pending: [number, number, number][] = [];
    let filled = 0;
    // Chunks submitted whose results are not copied out yet. The queue orders each chunk's
    // writes to the shared input, uniform and output after the previous chunk's dispatch and
    // copy, so the next chunk is sent while this one computes and comes back.
    const inflight: Promise<void>[] = [];
    const flush = () => {
      if (filled === 0) return;
      const p: AtbParams = {
        depth: cols,
        lda: cols,
        ldb: cols,
        ldo: rows,
        i0: 0,
        i1: filled,
        j0: 0,
        j1: rows,
        row0: 0,
        alpha: 1,
      };
      device.queue.writeBuffer(uniform, 0, atbUniform(p));
      const size = filled * rows * 4;
      // Its last chunk was read before this one was filled (two chunks in flight at most).
      const staging = stagings[flushes++ % 2];
      const enc = device.createCommandEncoder();
      // Rows of device inputs come into the chunk's input here, in order with its dispatch.
      let at = 0;
      for (const [i, r0, n] of pending) {
        const x = xs[i]!;
        if (!(x instanceof Float32Array)) {
          enc.copyBufferToBuffer(x, r0 * cols * 4, input, at * cols * 4, n * cols * 4);
        }
        at += n;
      }
      // The kernel accumulates into its output.
      enc.clearBuffer(output, 0, size);
      if (gated) {
        enc.clearBuffer(gated.output, 0, size);
        device.queue.writeBuffer(gated.step, 0, Uint32Array.of(filled, 0));
      }
      const pass = enc.beginComputePass();
      pass.setPipeline(this.#pipeline);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(...atbGroups(p));
      if (upBind && swiglu) {
        pass.setBindGroup(0, upBind);
        pass.dispatchWorkgroups(...atbGroups(p));
        encodeDispatches(pass, [swiglu], filled, 0);
      }
      pass.end();
      if (staging) enc.copyBufferToBuffer(output, 0, staging, 0, size);
      if (kept) {
        at = 0;
        for (const [i, r0, n] of pending) {
          enc.copyBufferToBuffer(output, at * rows * 4, kept[i]!, r0 * rows * 4, n * rows * 4);
          at += n;
        }
      }
      device.queue.submit([enc.finish()]);
      const parts = pending;
      pending = [];
      filled = 0;
      if (!staging) return;
      const done = (async () => {
        await staging.mapAsync(GPUMapMode.READ, 0, size);
        const got = new Float32Array(staging.getMappedRange(0, size));
        let at = 0;
        for (const [i, r0, n] of parts) {
          outs[i]!.set(got.subarray(at * rows, (at + n) * rows), r0 * rows);
          at += n;
        }
        staging.unmap();
      })();
      // Handled here too: a failure surfaces where the chunk is awaited, not as unhandled.
      done.catch(() => {});
      inflight.push(done);
    };
    try {
      for (const [i, x] of xs.entries()) {
        const tokens = lengths[i]! / cols;
        for (let r0 = 0; r0 < tokens;) {
          const n = Math.min(tokens - r0, chunk - filled);
          if (x instanceof Float32Array) {
            device.queue.writeBuffer(
              input,
              filled * cols * 4,
              x as Float32Array<ArrayBuffer>,
              r0 * cols,
              n * cols,
            );
          }
          pending.push([i, r0, n]);
          filled += n;
          r0 += n;
          if (filled === chunk) {
            flush();
            // At most two chunks' results held at once.
            if (inflight.length >= 2) await inflight.shift();
          }
        }
      }
      flush();
      await Promise.all(inflight.splice(0));
    } finally {
      await Promise.allSettled(inflight);
      if (!shared) scratch.destroy();
    }
    return outs;
  }

  /** Frees the device buffers. */
  destroy(): void {
    this.#k.destroy();
  }
}
