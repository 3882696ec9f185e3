/**
 * The Gram sum on the GPU equals a float64 `Σ XᵀX` up to float32 rounding, split into bands of
 * rows and chunks of tokens or not, from the host or from device buffers; and the AᵀB kernel's parameters are checked.
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { GpuGram, GramShapeError } from "./gram.ts";
import { AtbArgumentError, atbUniform } from "./atb_wgsl.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import { getGpu } from "./device.ts";
import { GpuWindowInputs } from "./window_inputs.ts";

const unavailable = await createWebGpuBackend().unavailable();

function gram64(xs: Float32Array[], cols: number): Float64Array {
  const h = new Float64Array(cols * cols);
  for (const x of xs) {
    for (let t = 0; t < x.length / cols; t++) {
      for (let i = 0; i < cols; i++) {
        const a = x[t * cols + i]!;
        for (let j = 0; j < cols; j++) h[i * cols + j]! += a * x[t * cols + j]!;
      }
    }
  }
  return h;
}

Deno.test({
  name: "webgpu: Gram sum XᵀX over windows, whole and in bands and chunks",
  ignore: unavailable !== undefined,
  async fn() {
    // 150 columns: a partial 64-wide tile; two windows of 200 and 77 tokens.
    const cols = 150;
    const xs = [pseudoRandom(200 * cols, 1), pseudoRandom(77 * cols, 2)];
    const expected = gram64(xs, cols);
    // The device's binding (one band, one chunk), and one of 64 rows: three bands (the last
    // partial) and chunks of 64 tokens.
    for (const maxBinding of [undefined, 64 * cols * 4]) {
      const gram = await GpuGram.create(cols, { maxBinding });
      for (const x of xs) gram.add(x);
      const h = await gram.read();
      gram.destroy();
      // The same windows from device buffers: the same sums, bit for bit.
      const store = new GpuWindowInputs(await getGpu());
      const fromDevice = await GpuGram.create(cols, { maxBinding });
      for (const b of store.get(xs)) fromDevice.add(b);
      assert.deepEqual(await fromDevice.read(), h);
      fromDevice.destroy();
      store.clear();
      let worst = 0;
      for (let i = 0; i < h.length; i++) {
        worst = Math.max(worst, Math.abs(h[i]! - expected[i]!) / (1 + Math.abs(expected[i]!)));
      }
      assert.ok(worst < 1e-5, `maxBinding ${maxBinding}: worst relative error ${worst}`);
      for (let i = 0; i < cols; i++) assert.equal(h[i * cols + 3], h[3 * cols + i]);
    }
    await assert.rejects(() => GpuGram.create(0), GramShapeError);
    const gram = await GpuGram.create(cols);
    assert.throws(() => gram.add(new Float32Array(cols + 1)), GramShapeError);
    gram.destroy();
  },
});

Deno.test("webgpu: AᵀB parameters must be u32 and rows within their band", () => {
  const p = {
    depth: 4,
    lda: 8,
    ldb: 8,
    ldo: 8,
    i0: 0,
    i1: 8,
    j0: 0,
    j1: 8,
    row0: 0,
    alpha: -1,
  };
  const u = atbUniform(p);
  assert.equal(new Float32Array(u.buffer)[9], -1);
  assert.throws(() => atbUniform({ ...p, depth: -1 }), AtbArgumentError);
  assert.throws(() => atbUniform({ ...p, i0: 4, row0: 8 }), AtbArgumentError);
});
