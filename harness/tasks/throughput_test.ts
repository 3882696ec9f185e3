import assert from "node:assert/strict";
import { sharedPath } from "../../core/shared.ts";
import { throughput } from "./throughput.ts";
import { modelBytes } from "../engines/model_bytes.ts";
import { contextFor, missing, STORIES, stories, storiesInt4 } from "./test_context.ts";

Deno.test({
  name: "throughput: model bytes equal the checkpoint's float32 weights; int4 reads fewer",
  ignore: missing(),
  async fn() {
    const model = await stories();
    // stories260K.bin: a 28-byte header, the float32 weights, then RoPE tables (freq_cis_real and
    // _imag: seq_len × head_size/2 floats each = 512 × 4 × 4 bytes × 2) that no reader uses.
    const file = (await Deno.stat(sharedPath(STORIES))).size;
    assert.equal(modelBytes(model).total, file - 28 - 2 * 512 * 4 * 4);
    const int4 = modelBytes(await storiesInt4());
    assert.ok(int4.perToken < modelBytes(model).perToken);
  },
});

Deno.test({
  name: "throughput: medians over repeated runs with warm-up, per-run samples kept",
  ignore: missing(),
  async fn() {
    const model = await stories();
    let runs = 0;
    const ctx = contextFor(model, "throughput", {
      prompt_tokens: 32,
      generate_tokens: 8,
      warmup: 1,
      repeats: 3,
    }, { progress: () => runs++ });
    const rows = await throughput.run(ctx);
    assert.equal(runs, 4);
    assert.deepEqual(rows.map((r) => r.metric), [
      "prefill_tokens_per_s",
      "decode_tokens_per_s",
      "ttft_ms",
      "decode_gb_per_s",
      "model_bytes",
    ]);
    for (const r of rows.slice(0, 4)) {
      assert.equal(r.samples!.values.length, 3);
      const sorted = [...r.samples!.values].sort((a, b) => a - b);
      assert.equal(r.value, sorted[1]);
      assert.ok(r.ci_low! <= r.value && r.value <= r.ci_high! && r.value > 0);
    }
    const decode = rows[1]!.value, gbps = rows[3]!.value;
    assert.ok(Math.abs(gbps - (decode * modelBytes(model).perToken) / 1e9) / gbps < 0.5);
    await assert.rejects(
      throughput.run(contextFor(model, "throughput", { prompt_tokens: 500, generate_tokens: 32 })),
      /exceeds the model's context 512/,
    );
  },
});
