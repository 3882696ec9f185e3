import assert from "node:assert/strict";
import { sharedPath } from "../../core/shared.ts";
import { throughput } from "./throughput.ts";
import { modelBytes } from "../engines/model_bytes.ts";
import { contextFor, missing, STORIES, stories, storiesInt4 } from "./test_context.ts";
import { webgpuBackend } from "../../kernels/webgpu/backend.ts";

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

Deno.test({
  name: "throughput: on WebGPU, the decode speed as a fraction of the device's copy bound",
  ignore: missing() || (await webgpuBackend.unavailable()) !== undefined,
  async fn() {
    const model = await stories();
    const runner = await webgpuBackend.load(model);
    try {
      const [prompt, generate] = [16, 8];
      const rows = await throughput.run(
        contextFor(model, "throughput", {
          prompt_tokens: prompt,
          generate_tokens: generate,
          warmup: 0,
          repeats: 2,
        }, { runner }),
      );
      const byName = new Map(rows.map((r) => [r.metric, r]));
      const copy = byName.get("copy_gb_per_s")!.value;
      const fraction = byName.get("decode_bound_fraction")!;
      assert.ok(copy > 0 && Number.isFinite(copy));
      // stories260K: 5 layers × keys and values of 4 heads × 8 floats per cached position.
      const kv = 5 * 2 * 4 * 8 * 4 * (prompt + (generate + 1) / 2);
      const perToken = modelBytes(model).perToken + kv;
      const decode = byName.get("decode_tokens_per_s")!.samples!.values;
      assert.deepEqual(
        fraction.samples!.values,
        decode.map((tps) => (tps * perToken) / (copy * 1e9)),
      );
      assert.match(fraction.detail, new RegExp(`kv_bytes_per_token=${kv}\\b`));
    } finally {
      runner.dispose();
    }
  },
});
