/** The batched linear on the GPU equals `x·Wᵀ` in float64 up to float32 rounding. */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { BatchLinearError, GpuBatchLinear } from "./batch_linear.ts";
import { pseudoRandom } from "../../core/test_values.ts";

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
