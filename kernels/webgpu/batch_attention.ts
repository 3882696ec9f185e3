/**
 * Causal attention of calibration windows on the GPU with the backend's attention kernel
 * (`Kernels.attention`): each window is a prefill at position 0 whose keys and values are its
 * own rows, as the CPU's calibration block computes it. Windows go through in groups that bound
 * the device memory held.
 *
 * @module
 */
import { getGpu, type Gpu } from "./device.ts";
import { encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";

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

/** One window's queries (`T × nHeads·headDim`), keys and values (`T × nKvHeads·headDim`). */
export interface AttentionWindow {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

/** Most bytes of queries, keys, values and outputs on the device at once. */
const GROUP_BYTES = 1 << 28;

/**
 * The attention output (`T × nHeads·headDim`) of each window, the windows sent in groups of
 * about `groupBytes` (queries, keys, values and outputs).
 */
export async function gpuWindowAttention(
  windows: readonly AttentionWindow[],
  shape: AttentionShape,
  gpu?: Gpu,
  groupBytes = GROUP_BYTES,
): Promise<Float32Array[]> {
  const qDim = shape.nHeads * shape.headDim;
  const kvDim = shape.nKvHeads * shape.headDim;
  for (const [i, w] of windows.entries()) {
    const T = w.q.length / qDim;
    if (!Number.isInteger(T) || w.k.length !== T * kvDim || w.v.length !== T * kvDim) {
      throw new BatchAttentionError(
        `Window ${i}: ${w.q.length} query, ${w.k.length} key and ${w.v.length} value values ` +
          `are no rows of ${qDim} and ${kvDim}`,
      );
    }
  }
  const g = gpu ?? await getGpu();
  const outs: Float32Array[] = [];
  // Groups in flight: the next is sent while the last computes and comes back (two at most).
  const inflight: Promise<Float32Array[]>[] = [];
  try {
    let start = 0;
    while (start < windows.length) {
      let end = start;
      let bytes = 0;
      do {
        const w = windows[end]!;
        bytes += 4 * (2 * w.q.length + w.k.length + w.v.length);
        end++;
      } while (end < windows.length && bytes < groupBytes);
      const group = attendGroup(new Kernels(g), windows.slice(start, end), shape, qDim);
      // Handled here too: a failure surfaces where the group is awaited, not as unhandled.
      group.catch(() => {});
      inflight.push(group);
      if (inflight.length >= 2) outs.push(...await inflight.shift()!);
      start = end;
    }
    for (const group of inflight.splice(0)) outs.push(...await group);
    return outs;
  } finally {
    await Promise.allSettled(inflight);
  }
}

async function attendGroup(
  k: Kernels,
  windows: readonly AttentionWindow[],
  shape: AttentionShape,
  qDim: number,
): Promise<Float32Array[]> {
  try {
    const { device } = k;
    const step = k.buffer(windows.length * STEP_STRIDE, GPUBufferUsage.UNIFORM, true);
    const words = new Uint32Array(step.getMappedRange());
    // Step slot of window i: T, position 0.
    windows.forEach((w, i) => words.set([w.q.length / qDim, 0], (i * STEP_STRIDE) / 4));
    step.unmap();
    const outs = windows.map((w) => k.storage(w.q.byteLength));
    const dispatches = await Promise.all(
      windows.map((w, i) =>
        k.attention(step, k.storage(w.q), k.storage(w.k), k.storage(w.v), outs[i]!, shape)
      ),
    );
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    dispatches.forEach((ds, i) =>
      encodeDispatches(pass, ds, windows[i]!.q.length / qDim, i * STEP_STRIDE)
    );
    pass.end();
    const staging = outs.map((o) =>
      device.createBuffer({
        size: o.size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      })
    );
    outs.forEach((o, i) => enc.copyBufferToBuffer(o, 0, staging[i]!, 0, o.size));
    device.queue.submit([enc.finish()]);
    return await Promise.all(staging.map(async (s, i) => {
      await s.mapAsync(GPUMapMode.READ);
      const out = new Float32Array(s.getMappedRange(), 0, windows[i]!.q.length).slice();
      s.unmap();
      s.destroy();
      return out;
    }));
  } finally {
    k.destroy();
  }
}
