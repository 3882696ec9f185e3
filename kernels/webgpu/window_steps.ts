/**
 * The cheap steps of a decoder block over calibration windows on the GPU — RMSNorm, RoPE, the
 * residual add, biases and head norms — each window in its own device buffer
 * (`window_inputs.ts`), so that a block runs from its input to its output without its values
 * leaving the device. The kernels round as the CPU's do, so that the block's values equal the CPU
 * block's but for the linears' and attention's float32 sums: RMSNorm and RoPE in double-float
 * (`rmsnorm_dd_wgsl.ts`, `rope_dd_wgsl.ts`; the model forward's float32 kernels come out units in
 * the last place off, enough to tip a search's near-tie; head norms are that RMSNorm over heads
 * as rows), the add and biases in float32 (`add_wgsl.ts`, `Kernels.bias`: the CPU rounds a sum
 * of two float32 values alike). One dispatch a window and one submission a step; every window
 * starts at position 0.
 *
 * @module
 */
import type { Gpu } from "./device.ts";
import { type Dispatch, encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";
import { addDispatch } from "./add_wgsl.ts";
import { rmsnormDdDispatch } from "./rmsnorm_dd_wgsl.ts";
import { ropeDdDispatch, ropeTableDd } from "./rope_dd_wgsl.ts";

/** Thrown when windows' buffers do not agree with each other or with the rows asked for. */
export class WindowStepError extends Error {
  override name = "WindowStepError";
}

/** RoPE of a block's queries or keys: heads per row and the model's pairing. */
export interface WindowRope {
  nHeads: number;
  headDim: number;
  style: "interleaved" | "half";
}

/** RMSNorm, RoPE and adds over windows' device buffers (see the module notes). */
export class GpuWindowSteps {
  readonly #gpu: Gpu;
  readonly #invFreq: ArrayLike<number>;
  /** RoPE's double-float (cos, sin) table for positions `0 … positions−1`, made for the longest window. */
  #table: { positions: number; k: Kernels; buffer: GPUBuffer } | undefined;

  /** Steps on `gpu`, RoPE turning pair `i` of position `p` by `p · invFreq[i]`. */
  constructor(gpu: Gpu, invFreq: ArrayLike<number>) {
    this.#gpu = gpu;
    this.#invFreq = invFreq;
  }

  /** `outs[w] = weight · xs[w] / rms(xs[w])` row by row (rows of `weight.length`). */
  async rmsnorm(
    xs: readonly GPUBuffer[],
    outs: readonly GPUBuffer[],
    weight: Float32Array,
    eps: number,
  ): Promise<void> {
    const dim = weight.length;
    sameCount(xs, outs);
    await this.#run(xs.length, (w) => rowsOf([xs[w]!, outs[w]!], dim, w), (k, step) => {
      const wb = k.storage(weight);
      return (w) => rmsnormDdDispatch(k, step, xs[w]!, wb, outs[w]!, dim, eps);
    });
  }

  /** `outs[w] = as[w] + bs[w]` (rows of `n`). */
  async add(
    as: readonly GPUBuffer[],
    bs: readonly GPUBuffer[],
    outs: readonly GPUBuffer[],
    n: number,
  ): Promise<void> {
    sameCount(as, bs, outs);
    await this.#run(
      as.length,
      (w) => rowsOf([as[w]!, bs[w]!, outs[w]!], n, w),
      (k, step) => (w) => addDispatch(k, step, as[w]!, bs[w]!, outs[w]!, n),
    );
  }

  /** RoPE in place on each window's rows of `nHeads × headDim`, row `t` at position `t`. */
  async rope(xs: readonly GPUBuffer[], o: WindowRope): Promise<void> {
    const width = o.nHeads * o.headDim;
    const rows = xs.map((x, w) => rowsOf([x], width, w));
    const table = this.#tableFor(Math.max(0, ...rows));
    await this.#run(
      xs.length,
      (w) => rows[w]!,
      (k, step) => (w) => ropeDdDispatch(k, step, table, xs[w]!, o),
    );
  }

  /** In place `xs[w][t] += bias` for every row `t` (rows of `bias.length`): float32 sums, as the CPU's. */
  async bias(xs: readonly GPUBuffer[], bias: Float32Array): Promise<void> {
    const n = bias.length;
    await this.#run(xs.length, (w) => rowsOf([xs[w]!], n, w), (k, step) => {
      const b = k.storage(bias);
      return (w) => k.bias(step, b, xs[w]!, n, { rowStride: n });
    });
  }

  /**
   * In place RMSNorm of each head of `weight.length` values in `xs` (Qwen3's query and key
   * norms), rounded as the CPU's: the double-float RMSNorm over the heads as rows, into scratch
   * and copied back.
   */
  async headNorm(xs: readonly GPUBuffer[], weight: Float32Array, eps: number): Promise<void> {
    const dim = weight.length;
    const scratch: GPUBuffer[] = [];
    await this.#run(
      xs.length,
      (w) => rowsOf([xs[w]!], dim, w),
      (k, step) => {
        const wb = k.storage(weight);
        return (w) => {
          scratch[w] = k.buffer(xs[w]!.size, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
          return rmsnormDdDispatch(k, step, xs[w]!, wb, scratch[w]!, dim, eps);
        };
      },
      (enc) => xs.forEach((x, w) => enc.copyBufferToBuffer(scratch[w]!, 0, x, 0, x.size)),
    );
  }

  /** Frees the RoPE table (a later call makes it again). */
  destroy(): void {
    this.#table?.k.destroy();
    this.#table = undefined;
  }

  #tableFor(positions: number): GPUBuffer {
    if (this.#table === undefined || this.#table.positions < positions) {
      this.destroy();
      const k = new Kernels(this.#gpu);
      const buffer = k.storage(ropeTableDd(Math.max(1, positions), this.#invFreq));
      this.#table = { positions, k, buffer };
    }
    return this.#table.buffer;
  }

  /**
   * One submission of a dispatch per window (`rows(w)` rows each, at position 0), built by
   * `prepare`'s function on a `Kernels` whose buffers (uniforms, weights) are freed once
   * submitted, and then what `after` encodes.
   */
  async #run(
    count: number,
    rows: (w: number) => number,
    prepare: (k: Kernels, step: GPUBuffer) => (w: number) => Promise<Dispatch>,
    after?: (enc: GPUCommandEncoder) => void,
  ): Promise<void> {
    if (count === 0) return;
    const k = new Kernels(this.#gpu);
    try {
      const steps = new Uint32Array((count * STEP_STRIDE) / 4);
      const tokens = Array.from({ length: count }, (_, w) => rows(w));
      tokens.forEach((T, w) => steps[(w * STEP_STRIDE) / 4] = T);
      const step = k.storage(steps, GPUBufferUsage.UNIFORM);
      const make = prepare(k, step);
      const dispatches = await Promise.all(tokens.map((_, w) => make(w)));
      const enc = k.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      dispatches.forEach((d, w) => encodeDispatches(pass, [d], tokens[w]!, w * STEP_STRIDE));
      pass.end();
      after?.(enc);
      k.device.queue.submit([enc.finish()]);
    } finally {
      // Buffers used by submitted work are freed once it completes.
      k.destroy();
    }
  }
}

/** Throws unless every list has a buffer for each window. */
function sameCount(...lists: (readonly GPUBuffer[])[]): void {
  if (lists.some((l) => l.length !== lists[0]!.length)) {
    throw new WindowStepError(`Buffers for ${lists.map((l) => l.length).join(", ")} windows`);
  }
}

/** Rows of `n` in window `w`'s buffers, which must all hold the same number. */
function rowsOf(buffers: GPUBuffer[], n: number, w: number): number {
  const T = buffers[0]!.size / 4 / n;
  if (!Number.isInteger(T) || buffers.some((b) => b.size !== buffers[0]!.size)) {
    throw new WindowStepError(
      `Window ${w}: buffers of ${buffers.map((b) => b.size).join(", ")} bytes are no rows of ${n}`,
    );
  }
  return T;
}
