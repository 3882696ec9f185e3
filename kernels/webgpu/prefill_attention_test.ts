/**
 * The tiled prefill attention against the CPU reference: several query tiles, a cache already
 * holding positions, grouped heads, and each key tile length; and the choice of key tile. Heads
 * up to 64 run the one-thread-a-row kernel (`prefill_rows_wgsl.ts`), wider ones the lane-shared
 * kernel.
 */
import assert from "node:assert/strict";
import { cpuOps } from "../cpu/backend.ts";
import { pseudoRandom, relativeError } from "../../core/test_values.ts";
import { createWebGpuBackend } from "./backend.ts";
import { adapterUnavailable } from "./device.ts";
import { prefillAttentionBytes, prefillKeyTile } from "./prefill_attention_wgsl.ts";
import { prefillRowsApplies, prefillRowsBytes } from "./prefill_rows_wgsl.ts";

const unavailable = await adapterUnavailable();

Deno.test({
  name: "webgpu: prefill attention over query tiles equals the CPU's causal attention",
  ignore: unavailable !== undefined,
  async fn() {
    const ops = createWebGpuBackend().ops!;
    // 70 rows: three query tiles, the last partial; 45 cached positions: key tiles that straddle
    // the rows' own positions. Head sizes 8 (fewer vec4s than lanes), 64 and 128 (whose key tile
    // is shorter where workgroup memory is small).
    // 150 rows of 32: three row-kernel query tiles, the last partial.
    const cases = [
      [4, 2, 8, 0, 2],
      [8, 2, 64, 45, 70],
      [4, 1, 128, 13, 33],
      [2, 2, 64, 0, 40],
      [8, 2, 32, 45, 150],
    ];
    for (const [nHeads, nKv, headDim, pos, T] of cases) {
      const len = pos! + T!;
      const q = pseudoRandom(T! * nHeads! * headDim!, 20).map((v) => v * 3);
      const keys = pseudoRandom(len * nKv! * headDim!, 21);
      const values = pseudoRandom(len * nKv! * headDim!, 22);
      const error = relativeError(
        await ops.attention(q, keys, values, pos!, nHeads!, nKv!, headDim!),
        await cpuOps.attention(q, keys, values, pos!, nHeads!, nKv!, headDim!),
      );
      assert.ok(error <= 1e-5, `${nHeads}/${nKv} heads of ${headDim}, T=${T} at ${pos}: ${error}`);
    }
  },
});

Deno.test("prefill attention: the longest key tile that fits, none for odd head sizes", () => {
  assert.equal(prefillKeyTile(64, 32768), 32);
  assert.equal(prefillKeyTile(128, 49152), 16);
  assert.equal(prefillKeyTile(128, 32768), 8);
  assert.equal(prefillKeyTile(256, 16384), undefined);
  assert.equal(prefillKeyTile(6, 1 << 20), undefined);
  assert.equal(prefillAttentionBytes(64, 32), 29824);
  // A quantized KV cache stages dequantized keys and values too.
  assert.equal(prefillKeyTile(64, 32768, true), 16);
  assert.equal(prefillKeyTile(128, 32768, true), undefined);
});

Deno.test("prefill attention: the one-thread-a-row kernel serves heads of 4 to 64 floats", () => {
  assert.equal(prefillRowsBytes(64), 16384);
  assert.ok(prefillRowsApplies(64, 16384));
  assert.ok(prefillRowsApplies(8, 16384));
  assert.ok(!prefillRowsApplies(64, 16383));
  assert.ok(!prefillRowsApplies(128, 1 << 20));
  assert.ok(!prefillRowsApplies(6, 1 << 20));
});
