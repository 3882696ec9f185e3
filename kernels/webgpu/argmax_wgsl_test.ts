/**
 * The GPU argmax of greedy decoding picks what the host's `argmaxRow` picks: the first maximum,
 * with ties across threads and loop iterations, rows of every length against the 256 × 4 stride,
 * infinities, and NaNs (passed over, except at index 0).
 */
import assert from "node:assert/strict";
import { getGpu } from "./device.ts";
import { encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";
import { createWebGpuBackend } from "./backend.ts";

const unavailable = await createWebGpuBackend().unavailable();

/** The index `argmaxRow` (harness/tasks/nll.ts) returns, restated. */
function firstMax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** The argmax dispatch's pick, run at token slot `a` (it writes `ids[a + 1]`). */
async function gpuArgmax(k: Kernels, logits: Float32Array, a: number): Promise<number> {
  const step = k.buffer(STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  k.device.queue.writeBuffer(step, 0, new Uint32Array([1, 0, a, 0]));
  const ids = k.storage(new Uint32Array(a + 2).fill(7));
  const read = k.buffer(4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  const d = await k.argmax(step, k.storage(logits), ids, logits.length);
  const enc = k.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  encodeDispatches(pass, [d], 1, 0);
  pass.end();
  enc.copyBufferToBuffer(ids, (a + 1) * 4, read, 0, 4);
  k.device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const id = new Uint32Array(read.getMappedRange())[0]!;
  read.unmap();
  return id;
}

Deno.test({
  name: "webgpu: argmax of decoding is the first maximum, as on the host",
  ignore: unavailable !== undefined,
  async fn() {
    const k = new Kernels(await getGpu());
    try {
      const cases: [string, Float32Array][] = [];
      for (const n of [1, 3, 255, 256, 1000, 1024, 1025, 4099]) {
        // Few distinct values: many ties, spread over threads and iterations.
        const v = Float32Array.from({ length: n }, (_, i) => (i * 7919) % 13);
        cases.push([`ties over ${n}`, v]);
      }
      const late = new Float32Array(3000).fill(-1);
      late[2999] = 5;
      late[1500] = 5;
      cases.push(["equal maxima far apart", late]);
      cases.push(["all −∞", new Float32Array(600).fill(-Infinity)]);
      const nan = Float32Array.from({ length: 700 }, (_, i) => i % 97);
      nan[96] = NaN;
      nan[500] = NaN;
      cases.push(["NaNs passed over", nan]);
      const nan0 = Float32Array.from({ length: 700 }, (_, i) => i);
      nan0[0] = NaN;
      cases.push(["NaN at index 0", nan0]);
      for (const [name, v] of cases) {
        assert.equal(await gpuArgmax(k, v, 0), firstMax(v), name);
      }
      assert.equal(await gpuArgmax(k, late, 5), 1500, "written at the step's slot");
    } finally {
      k.destroy();
    }
  },
});
