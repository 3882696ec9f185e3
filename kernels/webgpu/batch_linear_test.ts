/** The batched linear on the GPU equals `x·Wᵀ` in float64 up to float32 rounding. */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { BatchLinearError, BatchLinearScratch, GpuBatchLinear } from "./batch_linear.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import { getGpu } from "./device.ts";
import { GpuWindowInputs } from "./window_inputs.ts";

const unavailable = await createWebGpuBackend().unavailable();

Deno.test({
  name: "webgpu: batched linear x·Wᵀ over windows, chunks crossing windows",
  ignore: unavailable !== undefined,
  async fn() {
    // 70 outputs of 150 inputs: partial tiles; windows of 33, 100 and 5 tokens.
    const [rows, cols] = [70, 150];
    const w = pseudoRandom(rows * cols, 1);
    const xs = [33, 100, 5].map((t, i) => pseudoRandom(t * cols, 2 + i));
    const linear = await GpuBatchLinear.create(w, rows, cols);
    for (const chunk of [8192, 40]) {
      const ys = await linear.apply(xs, chunk);
      xs.forEach((x, i) => {
        const y = ys[i]!;
        assert.equal(y.length, (x.length / cols) * rows);
        let worst = 0;
        for (let t = 0; t < x.length / cols; t++) {
          for (let r = 0; r < rows; r++) {
            let s = 0;
            for (let c = 0; c < cols; c++) s += x[t * cols + c]! * w[r * cols + c]!;
            worst = Math.max(worst, Math.abs(y[t * rows + r]! - s));
          }
        }
        assert.ok(worst < 1e-5, `chunk ${chunk}, window ${i}: worst error ${worst}`);
      });
    }
    await assert.rejects(() => linear.apply([new Float32Array(cols + 1)]), BatchLinearError);
    linear.destroy();
    await assert.rejects(() => GpuBatchLinear.create(w, rows, cols + 1), BatchLinearError);
  },
});

Deno.test({
  name: "webgpu: gated pair silu(x·Gᵀ)·(x·Uᵀ) as SwiGLU of the two linears, across chunks",
  ignore: unavailable !== undefined,
  async fn() {
    const [rows, cols] = [70, 150];
    const gate = await GpuBatchLinear.create(pseudoRandom(rows * cols, 11), rows, cols);
    const up = await GpuBatchLinear.create(pseudoRandom(rows * cols, 12), rows, cols);
    // Inputs scaled so the gate's values reach the saturated ends of silu.
    const xs = [33, 100, 5].map((t, i) => pseudoRandom(t * cols, 20 + i).map((v) => 4 * v));
    const [gs, us] = [await gate.apply(xs), await up.apply(xs)];
    for (const chunk of [8192, 40]) {
      const ys = await gate.applyGated(xs, up, chunk);
      ys.forEach((y, i) => {
        let worst = 0;
        y.forEach((v, j) => {
          const g = gs[i]![j]!;
          const expected = (g / (1 + Math.exp(-g))) * us[i]![j]!;
          worst = Math.max(worst, Math.abs(v - expected) / Math.max(1, Math.abs(expected)));
        });
        assert.ok(worst < 1e-5, `chunk ${chunk}, window ${i}: worst error ${worst}`);
      });
    }
    const other = await GpuBatchLinear.create(pseudoRandom(rows * (cols - 1), 13), rows, cols - 1);
    assert.throws(() => gate.applyGated(xs, other), BatchLinearError);
    for (const l of [gate, up, other]) l.destroy();
  },
});

Deno.test({
  name:
    "webgpu: batched linear from device-held windows, outputs kept or left there, as from the host",
  ignore: unavailable !== undefined,
  async fn() {
    const [rows, cols] = [70, 150];
    const gpu = await getGpu();
    const first = await GpuBatchLinear.create(pseudoRandom(rows * cols, 31), rows, cols);
    const second = await GpuBatchLinear.create(pseudoRandom(cols * rows, 32), cols, rows);
    const store = new GpuWindowInputs(gpu);
    // Chunk buffers shared by every call below (shapes 70 × 150 and 150 × 70, chunks of 40 rows
    // and of all): the results of calls that make their own.
    const scratch = new BatchLinearScratch(gpu.device);
    try {
      const xs = [33, 100, 5].map((t, i) => pseudoRandom(t * cols, 40 + i));
      for (const chunk of [40, 8192]) {
        // Host rows, then the same windows from the store: the same results, bit for bit.
        const host = await first.apply(xs, chunk);
        const buffers = store.get(xs);
        assert.deepEqual(store.get(xs), buffers);
        const ys = await first.apply(buffers, chunk, {
          keep: (outs) => store.keep(outs),
          scratch,
        });
        assert.deepEqual(ys, host);
        // The outputs kept on the device feed the next linear as their arrays would.
        assert.ok(store.holds(ys) && !store.deviceOnly(ys[0]!));
        const fromDevice = await second.apply(store.get(ys), chunk, { scratch });
        assert.deepEqual(fromDevice, await second.apply(ys, chunk));
        // Not read back: the device alone has the outputs until they are read.
        const zs = await first.apply(buffers, chunk, {
          keep: (outs) => store.produce(outs),
          readBack: false,
          scratch,
        });
        assert.ok(zs.every((z) => store.deviceOnly(z) && z.every((v) => v === 0)));
        await store.read(zs);
        assert.deepEqual(zs, host);
        assert.deepEqual(await first.apply(xs, chunk, { scratch }), host);
      }
      await assert.rejects(
        () => first.apply(store.get([new Float32Array(cols + 1)])),
        BatchLinearError,
      );
      await assert.rejects(() => first.apply(xs, 40, { readBack: false }), BatchLinearError);
    } finally {
      store.clear();
      scratch.destroy();
      first.destroy();
      second.destroy();
    }
  },
});
