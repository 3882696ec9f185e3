/**
 * The embedding table of device decoding splits into row parts within a binding, and the gather
 * of every part together copies exactly the rows of the ids at the step's slot.
 */
import assert from "node:assert/strict";
import { embedParts } from "./embed_wgsl.ts";
import { getGpu } from "./device.ts";
import { encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";
import { createWebGpuBackend } from "./backend.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await createWebGpuBackend().unavailable();

Deno.test("webgpu: embedding table parts cover the rows within the binding limit", () => {
  assert.deepEqual(embedParts(10, 4, 64), [[0, 4], [4, 4], [8, 2]]);
  assert.deepEqual(embedParts(10, 4, 1 << 20), [[0, 10]]);
  assert.throws(() => embedParts(10, 4, 8), RangeError);
});

Deno.test({
  name: "webgpu: the embedding gather copies the rows of the step's token ids from every part",
  ignore: unavailable !== undefined,
  async fn() {
    const k = new Kernels(await getGpu());
    try {
      const [vocab, dim, T, a] = [37, 300, 3, 2];
      const table = pseudoRandom(vocab * dim, 3);
      const ids = [9, 0, 36, 17, 5];
      const step = k.buffer(STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
      k.device.queue.writeBuffer(step, 0, new Uint32Array([T, 0, a, 0]));
      const idBuf = k.storage(Uint32Array.from(ids));
      const x = k.storage(T * dim * 4);
      const dispatches = await Promise.all(
        embedParts(vocab, dim, 10 * dim * 4).map(([rowStart, rows]) =>
          k.embed(
            step,
            idBuf,
            k.storage(table.subarray(rowStart * dim, (rowStart + rows) * dim)),
            x,
            {
              dim,
              rowStart,
              rows,
            },
          )
        ),
      );
      assert.equal(dispatches.length, 4);
      const read = k.buffer(T * dim * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
      const enc = k.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      encodeDispatches(pass, dispatches, T, 0);
      pass.end();
      enc.copyBufferToBuffer(x, 0, read, 0, T * dim * 4);
      k.device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const got = new Float32Array(read.getMappedRange().slice(0));
      read.unmap();
      const want = new Float32Array(T * dim);
      for (let t = 0; t < T; t++) {
        const id = ids[a + t]!;
        want.set(table.subarray(id * dim, (id + 1) * dim), t * dim);
      }
      assert.deepEqual(got, want);
    } finally {
      k.destroy();
    }
  },
});
