/** Windows' causal attention on the GPU equals the CPU's (`kernels/cpu/ops.ts`). */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { BatchAttentionError, gpuWindowAttention } from "./batch_attention.ts";
import { attention } from "../cpu/ops.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await createWebGpuBackend().unavailable();

Deno.test({
  name: "webgpu: calibration windows' attention (grouped heads, windows of several lengths)",
  ignore: unavailable !== undefined,
  async fn() {
    const shape = { nHeads: 4, nKvHeads: 2, headDim: 16 };
    const [qDim, kvDim] = [64, 32];
    // 70 tokens: a second block of 64 keys.
    const windows = [70, 9, 33].map((T, i) => ({
      q: pseudoRandom(T * qDim, 3 * i + 1),
      k: pseudoRandom(T * kvDim, 3 * i + 2),
      v: pseudoRandom(T * kvDim, 3 * i + 3),
    }));
    // All in one group, and one window a group (groups in flight at once).
    for (const groupBytes of [undefined, 1]) {
      const got = await gpuWindowAttention(windows, shape, undefined, groupBytes);
      assert.equal(got.length, windows.length);
      windows.forEach((w, i) => {
        const expected = new Float32Array(w.q.length);
        attention(expected, w.q, w.k, w.v, 0, shape.nHeads, shape.nKvHeads, shape.headDim);
        let worst = 0;
        expected.forEach((e, j) => worst = Math.max(worst, Math.abs(e - got[i]![j]!)));
        assert.ok(worst < 1e-5, `groups of ${groupBytes} bytes, window ${i}: worst ${worst}`);
      });
    }
    await assert.rejects(
      () => gpuWindowAttention([{ ...windows[0]!, k: windows[1]!.k }], shape),
      BatchAttentionError,
    );
  },
});
