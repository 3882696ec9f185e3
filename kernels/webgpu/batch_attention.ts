/**
 * Causal attention of calibration windows on the GPU with the backend's attention kernel
 * (`Kernels.attention`): each window is a prefill at position 0 whose keys and values are its
 * own rows, as the CPU's calibration block computes it. Windows go through in groups that bound
 * the device memory held.
 *
 * @module
 */
import { getGpu, type Gpu } from "./device.ts";
import { type Dispatch, encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";

/** Thrown when the windows' queries, keys and values do not agree. */
export class BatchAttentionError extends Error {
  override name = "BatchAttentionError";
}

/** Attention heads as the block has them. */
export interface AttentionShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

/**
 * One window's queries (`T × nHeads·headDim`), keys and values (`T × nKvHeads·headDim`): host
 * arrays, or device buffers of exactly their bytes (`window_inputs.ts`).
 */
export interface AttentionWindow {
  q: Float32Array | GPUBuffer;
  k: Float32Array | GPUBuffer;
  v: Float32Array | GPUBuffer;
}

/** The float count of host rows or of a device buffer of exactly their bytes. */
function lengthOf(x: Float32Array | GPUBuffer): number {
  return x instanceof Float32Array ? x.length : x.size / 4;
}

/** Most bytes of queries, keys, values and outputs on the device at once. */
const GROUP_BYTES = 1 << 28;

/**
 * The attention output (`T × nHeads·headDim`) of each window, the windows sent in groups of
 * about `groupBytes` (queries, keys, values and outputs); a one-off
 * {@linkcode GpuWindowAttention}.
 */
export async function gpuWindowAttention(
  windows: readonly AttentionWindow[],
  shape: AttentionShape,
  gpu?: Gpu,
  groupBytes = GROUP_BYTES,
): Promise<Float32Array[]> {
  const attention = new GpuWindowAttention(shape, gpu ?? await getGpu(), groupBytes);
  try {
    return await attention.run(windows);
  } finally {
    attention.destroy();
  }
}

/** One window's place in a group: its buffers and recorded dispatches. */
interface Slot {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  out: GPUBuffer;
  dispatches: Dispatch[];
}

/**
 * Attention of calibration windows, run after run (every layer of a calibration forward) on
 * buffers made once: a group's windows each take a slot (query, key, value and output buffers
 * with their dispatches, recorded once), are written there, run in one pass, and come back
 * through one staging buffer with one map. Slots grow when longer windows come; the staging
 * buffers (two, so that a group is written and run while the last one is read) likewise.
 */
export class GpuWindowAttention {
  readonly #shape: AttentionShape;
  readonly #k: Kernels;
  readonly #groupBytes: number;
  readonly #qDim: number;
  readonly #kvDim: number;
  /** Step slots: window i's `T` and position 0 at `i · STEP_STRIDE`. */
  #step: GPUBuffer | undefined;
  #slots: Slot[] = [];
  /** Tokens each slot holds. */
  #slotTokens = 0;
  readonly #staging: (GPUBuffer | undefined)[] = [undefined, undefined];

  /** Windows of `shape` on `gpu`, in groups of about `groupBytes` (default 256 MiB). */
  constructor(shape: AttentionShape, gpu: Gpu, groupBytes = GROUP_BYTES) {
    this.#shape = shape;
    this.#k = new Kernels(gpu);
    this.#groupBytes = groupBytes;
    this.#qDim = shape.nHeads * shape.headDim;
    this.#kvDim = shape.nKvHeads * shape.headDim;
  }

  /**
   * The attention output (`T × nHeads·headDim`) of each window; `keep`, given the arrays about
   * to be returned, gives device buffers of their sizes that receive the same values
   * (`GpuWindowInputs.keep`); with `readBack` false the outputs go there only, and the arrays
   * returned stay unwritten.
   */
  async run(
    windows: readonly AttentionWindow[],
    keep?: (outs: Float32Array[]) => GPUBuffer[],
    readBack = true,
  ): Promise<Float32Array[]> {
    const [qDim, kvDim] = [this.#qDim, this.#kvDim];
    if (!readBack && !keep) {
      throw new BatchAttentionError(`Outputs not read back need buffers to keep them (keep)`);
    }
    const tokens = windows.map((w, i) => {
      const [q, k, v] = [lengthOf(w.q), lengthOf(w.k), lengthOf(w.v)];
      const T = q / qDim;
      if (!Number.isInteger(T) || k !== T * kvDim || v !== T * kvDim) {
        throw new BatchAttentionError(
          `Window ${i}: ${q} query, ${k} key and ${v} value values are no rows of ${qDim} and ` +
            `${kvDim}`,
        );
      }
      return T;
    });
    if (windows.length === 0) return [];
    const maxT = Math.max(...tokens);
    // Windows a group: as many of the longest as fit the group's bytes.
    const perGroup = Math.max(
      1,
      Math.min(windows.length, Math.floor(this.#groupBytes / (4 * maxT * (2 * qDim + 2 * kvDim)))),
    );
    await this.#ensureSlots(perGroup, maxT);
    const outs = tokens.map((T) => new Float32Array(T * qDim));
    const kept = keep?.(outs);
    let reading: Promise<void> | undefined;
    try {
      for (let start = 0, g = 0; start < windows.length; start += perGroup, g++) {
        const end = Math.min(windows.length, start + perGroup);
        const staging = readBack ? this.#stagingFor(g % 2, perGroup * maxT * qDim * 4) : undefined;
        this.#submit(windows, tokens, start, end, staging, maxT, kept);
        if (!staging) continue;
        // The last group is read while this one runs.
        if (reading) await reading;
        reading = this.#read(staging, tokens, start, end, maxT, outs);
        // Handled here too: a failure surfaces where the group is awaited, not as unhandled.
        reading.catch(() => {});
      }
      await reading;
    } finally {
      await reading?.catch(() => {});
    }
    return outs;
  }

  /** Frees the device buffers. */
  destroy(): void {
    this.#k.destroy();
    for (const s of this.#staging) s?.destroy();
    this.#staging.fill(undefined);
    this.#slots = [];
    this.#slotTokens = 0;
    this.#step = undefined;
  }

  /** At least `count` slots of `T` tokens (all remade when longer windows come). */
  async #ensureSlots(count: number, T: number): Promise<void> {
    const k = this.#k;
    if (T > this.#slotTokens) {
      for (const s of this.#slots) [s.q, s.k, s.v, s.out].forEach((b) => b.destroy());
      this.#slots = [];
      this.#slotTokens = T;
    }
    if (count <= this.#slots.length) return;
    const step = k.buffer(count * STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    // Slots made before bound the old step buffer: all are recorded again on the new one.
    const old = this.#slots;
    this.#step = step;
    const [qBytes, kvBytes] = [
      this.#slotTokens * this.#qDim * 4,
      this.#slotTokens * this.#kvDim * 4,
    ];
    this.#slots = await Promise.all(Array.from({ length: count }, async (_, i) => {
      const reuse = old[i];
      const q = reuse?.q ?? k.storage(qBytes);
      const kb = reuse?.k ?? k.storage(kvBytes);
      const v = reuse?.v ?? k.storage(kvBytes);
      const out = reuse?.out ?? k.storage(qBytes);
      return { q, k: kb, v, out, dispatches: await k.attention(step, q, kb, v, out, this.#shape) };
    }));
  }

  /** A staging buffer of at least `bytes` in place `i`. */
  #stagingFor(i: number, bytes: number): GPUBuffer {
    let s = this.#staging[i];
    if (!s || s.size < bytes) {
      s?.destroy();
      s = this.#k.device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      this.#staging[i] = s;
    }
    return s;
  }

  /** Writes windows `[start, end)` into the slots, runs them and copies the outputs to staging. */
  #submit(
    windows: readonly AttentionWindow[],
    tokens: number[],
    start: number,
    end: number,
    staging: GPUBuffer | undefined,
    maxT: number,
    kept: GPUBuffer[] | undefined,
  ): void {
    const { device } = this.#k;
    const { queue } = device;
    const steps = new Uint32Array(((end - start) * STEP_STRIDE) / 4);
    const enc = device.createCommandEncoder();
    for (let w = start; w < end; w++) {
      const s = this.#slots[w - start]!;
      const win = windows[w]!;
      for (const [from, to] of [[win.q, s.q], [win.k, s.k], [win.v, s.v]] as const) {
        // Device rows are copied in order with the pass below; host rows are written before it.
        if (from instanceof Float32Array) {
          queue.writeBuffer(to, 0, from as Float32Array<ArrayBuffer>);
        } else enc.copyBufferToBuffer(from, 0, to, 0, from.size);
      }
      steps[((w - start) * STEP_STRIDE) / 4] = tokens[w]!;
    }
    queue.writeBuffer(this.#step!, 0, steps);
    const pass = enc.beginComputePass();
    for (let w = start; w < end; w++) {
      encodeDispatches(
        pass,
        this.#slots[w - start]!.dispatches,
        tokens[w]!,
        (w - start) * STEP_STRIDE,
      );
    }
    pass.end();
    const slotBytes = maxT * this.#qDim * 4;
    for (let w = start; w < end; w++) {
      const bytes = tokens[w]! * this.#qDim * 4;
      if (staging) {
        enc.copyBufferToBuffer(
          this.#slots[w - start]!.out,
          0,
          staging,
          (w - start) * slotBytes,
          bytes,
        );
      }
      if (kept) enc.copyBufferToBuffer(this.#slots[w - start]!.out, 0, kept[w]!, 0, bytes);
    }
    queue.submit([enc.finish()]);
  }

  /** Maps `staging` once and copies windows `[start, end)` out of it. */
  async #read(
    staging: GPUBuffer,
    tokens: number[],
    start: number,
    end: number,
    maxT: number,
    outs: Float32Array[],
  ): Promise<void> {
    const qDim = this.#qDim;
    const used = (end - start) * maxT * qDim * 4;
    await staging.mapAsync(GPUMapMode.READ, 0, used);
    try {
      const got = new Float32Array(staging.getMappedRange(0, used));
      for (let w = start; w < end; w++) {
        const at = (w - start) * maxT * qDim;
        outs[w]!.set(got.subarray(at, at + tokens[w]! * qDim));
      }
    } finally {
      staging.unmap();
    }
  }
}
