/** Windows' causal attention on the GPU equals the CPU's (`kernels/cpu/ops.ts`). */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { BatchAttentionError, GpuWindowAttention, gpuWindowAttention } from "./batch_attention.ts";
import { getGpu } from "./device.ts";
import { GpuBatchLinear } from "./batch_linear.ts";
import { GpuWindowInputs } from "./window_inputs.ts";
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

Deno.test({
  name: "webgpu: one GpuWindowAttention over runs of growing windows and groups, host or device",
  ignore: unavailable !== undefined,
  async fn() {
    const shape = { nHeads: 4, nKvHeads: 1, headDim: 8 };
    const [qDim, kvDim] = [32, 8];
    // Groups of two windows of the longest (a third group, slots reused); then longer windows
    // (slots remade), then more windows a group (slots added).
    const store = new GpuWindowInputs(await getGpu());
    const batch = new GpuWindowAttention(
      shape,
      await getGpu(),
      2 * 4 * 20 * (2 * qDim + 2 * kvDim),
    );
    try {
      for (const [run, lengths] of [[5, 20, 3, 20, 7], [41, 2], [9, 9, 9, 9, 9, 9, 9]].entries()) {
        const windows = lengths.map((T, i) => ({
          q: pseudoRandom(T * qDim, 50 * run + 3 * i + 1),
          k: pseudoRandom(T * kvDim, 50 * run + 3 * i + 2),
          v: pseudoRandom(T * kvDim, 50 * run + 3 * i + 3),
        }));
        const got = await batch.run(windows, (outs) => store.keep(outs));
        assert.equal(got.length, windows.length);
        // The outputs kept on the device are those returned (seen through a random projection).
        assert.ok(store.holds(got));
        const probe = await GpuBatchLinear.create(pseudoRandom(3 * qDim, 99), 3, qDim);
        assert.deepEqual(await probe.apply(store.get(got)), await probe.apply(got));
        probe.destroy();
        // From device buffers, the outputs left there: the same values once read.
        const onDevice = windows.map((w) => {
          const [q, k, v] = store.get([w.q, w.k, w.v]);
          return { q: q!, k: k!, v: v! };
        });
        const left = await batch.run(onDevice, (outs) => store.produce(outs), false);
        assert.ok(left.every((o) => store.deviceOnly(o)));
        await store.read(left);
        assert.deepEqual(left, got);
        windows.forEach((w, i) => {
          const expected = new Float32Array(w.q.length);
          attention(
            expected,
            w.q,
            w.k,
            w.v,
            0,
            shape.nHeads,
            shape.nKvHeads,
            shape.headDim,
          );
          assert.equal(got[i]!.length, expected.length);
          let worst = 0;
          expected.forEach((e, j) => worst = Math.max(worst, Math.abs(e - got[i]![j]!)));
          assert.ok(worst < 1e-5, `run ${run}, window ${i}: worst ${worst}`);
        });
      }
      assert.deepEqual(await batch.run([]), []);
      await assert.rejects(() => batch.run([], undefined, false), BatchAttentionError);
    } finally {
      batch.destroy();
      store.clear();
    }
  },
});
