/**
 * Calibration windows' activations kept on the device between the kernels that read them: GPTQ's
 * Hessian (`gram.ts`) and the linears of a group (`batch_linear.ts`) read the same windows, a
 * group's linears (`q`, `k`, `v`) share one input, and a block run wholly on the device
 * (`window_steps.ts`) leaves every value there for the next step. The store holds device buffers
 * for host arrays (one buffer a window, exactly its bytes), matched by the arrays' identity, not
 * their content, in one of two states:
 *
 * - a copy: the host array is current and the buffer holds the same values (uploaded by
 *   {@linkcode GpuWindowInputs.get}, or written by a kernel that also returned them:
 *   {@linkcode GpuWindowInputs.keep});
 * - the original: a kernel wrote the buffer and not the host array, whose contents are
 *   meaningless until {@linkcode GpuWindowInputs.read} copies the buffer back
 *   ({@linkcode GpuWindowInputs.produce}).
 *
 * Whoever writes into a held array in place (the CPU's head norms and Hadamard transforms do)
 * reads it first and then calls {@linkcode GpuWindowInputs.written}. Buffers are freed by
 * {@linkcode GpuWindowInputs.retain} (all but the arrays still in use) and
 * {@linkcode GpuWindowInputs.clear}; an original freed unread is lost, and asking for it again
 * throws {@linkcode WindowLostError} rather than uploading a meaningless array.
 *
 * @module
 */
import type { Gpu } from "./device.ts";

/** Thrown when a window's values are asked for after the device's only copy was freed. */
export class WindowLostError extends Error {
  override name = "WindowLostError";
}

/** Most bytes read back per map. */
const READ_BYTES = 1 << 28;

interface Entry {
  buffer: GPUBuffer;
  /** Whether the host array holds the buffer's values. */
  host: boolean;
}

/** Windows' activations on the device (see the module notes). */
export class GpuWindowInputs {
  readonly gpu: Gpu;
  readonly #entries = new Map<Float32Array, Entry>();
  /** Host arrays whose only current copy was freed. */
  readonly #lost = new WeakSet<Float32Array>();

  /** An empty store on `gpu`. */
  constructor(gpu: Gpu) {
    this.gpu = gpu;
  }

  /** Bytes of the buffers held now. */
  get bytes(): number {
    let n = 0;
    for (const e of this.#entries.values()) n += e.buffer.size;
    return n;
  }

  /** Whether every one of `xs` (at least one) has a buffer. */
  holds(xs: readonly Float32Array[]): boolean {
    return xs.length > 0 && xs.every((x) => this.#entries.has(x));
  }

  /** Whether the device alone holds `x`'s values (its host array is not current). */
  deviceOnly(x: Float32Array): boolean {
    return this.#entries.get(x)?.host === false;
  }

  /** The device buffers of `xs` (one a window, exactly its bytes): those held, or uploaded now. */
  get(xs: readonly Float32Array[]): GPUBuffer[] {
    const { device } = this.gpu;
    return xs.map((x) => {
      const held = this.#entries.get(x);
      if (held) return held.buffer;
      this.#checkLost(x);
      const buffer = device.createBuffer({ size: x.byteLength, usage: USAGE });
      device.queue.writeBuffer(buffer, 0, x as Float32Array<ArrayBuffer>);
      this.#entries.set(x, { buffer, host: true });
      return buffer;
    });
  }

  /**
   * Empty buffers of the sizes of `xs`, held for them: a kernel about to compute those windows
   * writes its outputs there as well as into `xs`.
   */
  keep(xs: readonly Float32Array[]): GPUBuffer[] {
    return this.#fresh(xs, true);
  }

  /**
   * Empty buffers of the sizes of `xs`, held for them: a kernel writes those windows there only,
   * and `xs` stay meaningless until {@linkcode GpuWindowInputs.read}.
   */
  produce(xs: readonly Float32Array[]): GPUBuffer[] {
    return this.#fresh(xs, false);
  }

  /** Marks held arrays as rewritten on the device in place: only their buffers are current now. */
  rewritten(xs: readonly Float32Array[]): void {
    for (const x of xs) {
      const e = this.#entries.get(x);
      if (!e) throw new WindowLostError(`A window of ${x.length} values is not on the device`);
      e.host = false;
    }
  }

  /**
   * Copies the buffers of those of `xs` that only the device holds into their host arrays (in
   * maps of at most 256 MiB), which are current from then on.
   */
  async read(xs: readonly Float32Array[]): Promise<void> {
    const todo = [...new Set(xs)].filter((x) => this.deviceOnly(x));
    for (const x of xs) this.#checkLost(x);
    const { device } = this.gpu;
    let staging: GPUBuffer | undefined;
    try {
      for (let i = 0; i < todo.length;) {
        // A batch of whole windows (a window larger than a batch goes alone).
        const batch: Float32Array[] = [];
        let bytes = 0;
        while (
          i < todo.length && (batch.length === 0 || bytes + todo[i]!.byteLength <= READ_BYTES)
        ) {
          bytes += todo[i]!.byteLength;
          batch.push(todo[i++]!);
        }
        if (!staging || staging.size < bytes) {
          staging?.destroy();
          staging = device.createBuffer({
            size: bytes,
            usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
          });
        }
        const enc = device.createCommandEncoder();
        let at = 0;
        for (const x of batch) {
          enc.copyBufferToBuffer(this.#entries.get(x)!.buffer, 0, staging, at, x.byteLength);
          at += x.byteLength;
        }
        device.queue.submit([enc.finish()]);
        await staging.mapAsync(GPUMapMode.READ, 0, bytes);
        const got = new Float32Array(staging.getMappedRange(0, bytes));
        at = 0;
        for (const x of batch) {
          x.set(got.subarray(at, at + x.length));
          at += x.length;
          this.#entries.get(x)!.host = true;
        }
        staging.unmap();
      }
    } finally {
      staging?.destroy();
    }
  }

  /**
   * Told that the host rewrote `xs` in place (after reading them): their buffers are stale and
   * freed.
   */
  written(xs: readonly Float32Array[]): void {
    for (const x of xs) {
      const e = this.#entries.get(x);
      if (e === undefined) continue;
      if (!e.host) {
        throw new WindowLostError(
          `A window of ${x.length} values was rewritten on the host before it was read back`,
        );
      }
      e.buffer.destroy();
      this.#entries.delete(x);
    }
  }

  /** Frees the buffers of every array but those of `live`. */
  retain(live: Iterable<Float32Array>): void {
    const keep = new Set(live);
    for (const x of [...this.#entries.keys()]) if (!keep.has(x)) this.#drop(x);
  }

  /** Frees what is held. */
  clear(): void {
    this.retain([]);
  }

  #fresh(xs: readonly Float32Array[], host: boolean): GPUBuffer[] {
    const { device } = this.gpu;
    return xs.map((x) => {
      // A kernel's output is a new array; one held already is written over.
      const old = this.#entries.get(x);
      if (old) return (old.host = host, old.buffer);
      const buffer = device.createBuffer({ size: x.byteLength, usage: USAGE });
      this.#entries.set(x, { buffer, host });
      return buffer;
    });
  }

  #drop(x: Float32Array): void {
    const e = this.#entries.get(x)!;
    if (!e.host) this.#lost.add(x);
    e.buffer.destroy();
    this.#entries.delete(x);
  }

  #checkLost(x: Float32Array): void {
    if (this.#lost.has(x)) {
      throw new WindowLostError(
        `A window of ${x.length} values was freed on the device before it was read back`,
      );
    }
  }
}

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
