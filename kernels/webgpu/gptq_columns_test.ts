/** The block update on the GPU equals GPTQ's float64 one up to float32 rounding. */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { GptqColumnsError, GpuGptqColumns } from "./gptq_columns.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await createWebGpuBackend().unavailable();

Deno.test({
  name: "webgpu: GPTQ block update W[:, end:] −= Err·U[block, end:] and column reads",
  ignore: unavailable !== undefined,
  async fn() {
    // 70 rows and 150 columns: partial tiles both ways; blocks of 40 (the last one of 30).
    const [rows, cols, bs] = [70, 150, 40];
    const w = Float64Array.from(pseudoRandom(rows * cols, 3));
    const u = Float64Array.from(pseudoRandom(cols * cols, 4));
    const expected = w.slice();
    const device = await GpuGptqColumns.create(w, rows, cols, bs);
    const got = new Float64Array(rows * cols);
    for (let i1 = 0; i1 < cols; i1 += bs) {
      const i2 = Math.min(cols, i1 + bs);
      const count = i2 - i1;
      const err = Float64Array.from(pseudoRandom(rows * count, 10 + i1));
      for (let r = 0; r < rows; r++) {
        for (let j = i2; j < cols; j++) {
          let s = 0;
          for (let i = 0; i < count; i++) s += err[r * count + i]! * u[(i1 + i) * cols + j]!;
          expected[r * cols + j]! -= s;
        }
      }
      device.update(err, u, i1, i2);
      await device.readColumns(i1, cols, got);
      let worst = 0;
      for (let r = 0; r < rows; r++) {
        for (let c = i1; c < cols; c++) {
          worst = Math.max(worst, Math.abs(got[r * cols + c]! - expected[r * cols + c]!));
        }
      }
      assert.ok(worst < 1e-4, `block ${i1}: worst error ${worst}`);
    }
    assert.throws(() => device.update(new Float64Array(rows * 41), u, 0, 41), GptqColumnsError);
    await assert.rejects(() => device.readColumns(5, 5, got), GptqColumnsError);
    device.destroy();
    await assert.rejects(() => GpuGptqColumns.create(w, rows, cols + 1, bs), GptqColumnsError);
  },
});
