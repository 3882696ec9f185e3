/**
 * The window store keeps windows on the device, matched by the arrays' identity: copies of host
 * arrays, and values only the device holds until read back.
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { getGpu } from "./device.ts";
import { GpuWindowInputs, WindowLostError } from "./window_inputs.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await createWebGpuBackend().unavailable();

/** A device buffer's contents as float32. */
async function readBack(b: GPUBuffer): Promise<Float32Array> {
  const { device } = await getGpu();
  const staging = device.createBuffer({
    size: b.size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(b, 0, staging, 0, b.size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange()).slice();
  staging.unmap();
  staging.destroy();
  return out;
}

Deno.test({
  name: "webgpu: window store uploads arrays once, keeps outputs, reads back and frees",
  ignore: unavailable !== undefined,
  async fn() {
    const store = new GpuWindowInputs(await getGpu());
    try {
      const xs = [5, 3].map((t, i) => pseudoRandom(t * 4, i + 1));
      assert.equal(store.holds(xs), false);
      const buffers = store.get(xs);
      assert.deepEqual(await Promise.all(buffers.map(readBack)), xs);
      // The same arrays: the same buffers. Equal values in other arrays are other windows.
      assert.deepEqual(store.get([...xs]), buffers);
      const copies = xs.map((x) => x.slice());
      assert.ok(store.get(copies).every((b, i) => b !== buffers[i]));
      assert.ok(store.holds(copies) && store.holds(xs) && store.holds([copies[0]!]));
      // Kept outputs: buffers of the arrays' sizes, held for them.
      const ys = [new Float32Array(6), new Float32Array(2)];
      const kept = store.keep(ys);
      assert.deepEqual(kept.map((b) => b.size), [24, 8]);
      assert.ok(store.holds(ys) && !store.deviceOnly(ys[0]!));
      assert.equal(store.holds([]), false);
      // Values only the device holds: the host arrays are written by read, and only then.
      const zs = [new Float32Array(4), new Float32Array(8)];
      const produced = store.produce(zs);
      const enc = store.gpu.device.createCommandEncoder();
      produced.forEach((b) => enc.copyBufferToBuffer(buffers[0]!, 0, b, 0, b.size));
      store.gpu.device.queue.submit([enc.finish()]);
      assert.ok(zs.every((z) => store.deviceOnly(z) && z.every((v) => v === 0)));
      await store.read([zs[1]!, xs[0]!, zs[0]!]);
      assert.deepEqual(zs, [xs[0]!.subarray(0, 4), xs[0]!.subarray(0, 8)]);
      assert.ok(!store.deviceOnly(zs[0]!));
      // Rewritten on the host: the device copy is dropped; a device-only value cannot be.
      store.written([zs[0]!]);
      assert.ok(!store.holds([zs[0]!]));
      store.rewritten([zs[1]!]);
      assert.throws(() => store.written([zs[1]!]), WindowLostError);
      // Retain frees the rest; a device-only value freed unread is lost, not uploaded stale.
      store.retain(xs);
      assert.ok(store.holds(xs) && !store.holds(copies) && !store.holds([zs[1]!]));
      assert.equal(store.bytes, (5 + 3) * 4 * 4, "bytes held after retain");
      assert.throws(() => store.get([zs[1]!]), WindowLostError);
      await assert.rejects(() => store.read([zs[1]!]), WindowLostError);
    } finally {
      store.clear();
    }
    assert.equal(store.bytes, 0);
  },
});
