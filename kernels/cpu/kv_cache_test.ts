import assert from "node:assert/strict";
import { QuantizedKvCache } from "./kv_cache.ts";
import { attention } from "./ops.ts";
import { quantizeKvGroup } from "../formats/runtime_quant.ts";

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

Deno.test("kv cache: which positions a query reads quantized (KIVI windows, hand-derived)", () => {
  // Residual 4, group 2: keys enter in blocks of 4 once full; values once 4 tokens old.
  const view = new QuantizedKvCache({ format: "int4", group: 2, residual: 4 }, 1, 16, 1, 2)
    .view(0);
  const keys = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((p) => view.keysBefore(p));
  const values = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((p) => view.valuesBefore(p));
  assert.deepEqual(keys, [0, 0, 0, 4, 4, 4, 4, 8, 8]);
  assert.deepEqual(values, [0, 0, 0, 0, 1, 2, 3, 4, 5]);
  // No residual window: keys a group at a time, values at once.
  const bare = new QuantizedKvCache({ format: "int8", group: 4, residual: 0 }, 1, 16, 1, 8)
    .view(0);
  assert.deepEqual([2, 3, 4, 7].map((p) => bare.keysBefore(p)), [0, 4, 4, 8]);
  assert.deepEqual([0, 5].map((p) => bare.valuesBefore(p)), [1, 6]);
  assert.throws(() => new QuantizedKvCache({ format: "int4", group: 3, residual: 0 }, 1, 8, 1, 8));
});

Deno.test("kv cache: attention through the view equals attention on hand-substituted caches", () => {
  const [nHeads, nKvHeads, headDim, T] = [4, 2, 8, 12];
  const kvDim = nKvHeads * headDim;
  const q = random(T * nHeads * headDim, 1);
  const k = random(T * kvDim, 2);
  const v = random(T * kvDim, 3);
  const settings = { format: "int4", group: 4, residual: 8 };
  const cache = new QuantizedKvCache(settings, 1, T, nKvHeads, headDim);
  cache.update(0, k, v, 0, T);
  const out = new Float32Array(q.length);
  attention(out, q, k, v, 0, nHeads, nKvHeads, headDim, cache.view(0));
  // The reference: per query position p, keys of complete 8-blocks and values older than 8
  // tokens replaced by their own quantization (keys per channel in groups of 4 tokens, values
  // per token in groups of 4 channels), the rest as is.
  const kq = k.slice();
  for (let t0 = 0; t0 + 4 <= T; t0 += 4) {
    for (let c = 0; c < kvDim; c++) quantizeKvGroup(k, kq, t0 * kvDim + c, kvDim, 4, "int4");
  }
  const vq = v.slice();
  for (let i = 0; i < T * kvDim; i += 4) quantizeKvGroup(v, vq, i, 1, 4, "int4");
  for (let p = 0; p < T; p++) {
    const kp = k.slice();
    const vp = v.slice();
    const keysBefore = 8 * Math.floor((p + 1) / 8);
    kp.set(kq.subarray(0, keysBefore * kvDim));
    vp.set(vq.subarray(0, Math.max(0, p + 1 - 8) * kvDim));
    const row = new Float32Array(nHeads * headDim);
    const qp = q.subarray(p * nHeads * headDim, (p + 1) * nHeads * headDim);
    attention(row, qp, kp, vp, p, nHeads, nKvHeads, headDim);
    assert.deepEqual(row, out.subarray(p * nHeads * headDim, (p + 1) * nHeads * headDim), `${p}`);
  }
});
