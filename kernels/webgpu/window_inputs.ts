/**
 * Calibration windows' activations kept on the device between the kernels that read them: GPTQ's
 * Hessian (`gram.ts`) and the linears of a group (`batch_linear.ts`) read the same windows, and
 * a group's linears (`q`, `k`, `v`) share one input, which went up once per reader before. The
 * store holds one set of windows — the host arrays last asked for, one device buffer each — and
 * hands back their buffers while the same arrays (the same objects, in the same order) are asked
 * for again; any other set replaces it. A kernel may also leave its outputs there
 * ({@linkcode GpuWindowInputs.keep}), so the next reader finds them without an upload.
 *
 * The arrays are matched by identity, not content: whoever writes into held arrays in place
 * (the CPU's RoPE, head norms and Hadamard transforms do) calls {@linkcode GpuWindowInputs.clear}
 * first.
 *
 * @module
 */
import type { Gpu } from "./device.ts";

/** One set of windows' activations on the device (see the module notes). */
export class GpuWindowInputs {
  readonly gpu: Gpu;
  #arrays: readonly Float32Array[] = [];
  #buffers: GPUBuffer[] = [];
  /** Buffers replaced by {@linkcode GpuWindowInputs.keep}, freed at the next change. */
  #retired: GPUBuffer[] = [];

  /** An empty store on `gpu`. */
  constructor(gpu: Gpu) {
    this.gpu = gpu;
  }

  /** Whether `xs` are the arrays held. */
  holds(xs: readonly Float32Array[]): boolean {
    return xs.length > 0 && xs.length === this.#arrays.length &&
      xs.every((x, i) => x === this.#arrays[i]);
  }

  /** The device buffers of `xs` (one a window, exactly its bytes): those held, or uploaded now. */
  get(xs: readonly Float32Array[]): GPUBuffer[] {
    if (this.holds(xs)) return this.#buffers;
    this.clear();
    const { device } = this.gpu;
    const buffers = xs.map((x) => {
      const b = device.createBuffer({ size: x.byteLength, usage: USAGE });
      device.queue.writeBuffer(b, 0, x as Float32Array<ArrayBuffer>);
      return b;
    });
    this.#arrays = [...xs];
    this.#buffers = buffers;
    return buffers;
  }

  /**
   * Empty buffers of the sizes of `xs`, held for them in place of what was held: a kernel about
   * to compute those windows writes its outputs there as well as into `xs`. What was held may be
   * that kernel's input: it is freed at the next change, not now.
   */
  keep(xs: readonly Float32Array[]): GPUBuffer[] {
    for (const b of this.#retired) b.destroy();
    this.#retired = this.#buffers;
    const { device } = this.gpu;
    this.#buffers = xs.map((x) => device.createBuffer({ size: x.byteLength, usage: USAGE }));
    this.#arrays = [...xs];
    return this.#buffers;
  }

  /** Frees what is held. */
  clear(): void {
    for (const b of [...this.#buffers, ...this.#retired]) b.destroy();
    this.#buffers = [];
    this.#retired = [];
    this.#arrays = [];
  }
}

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
