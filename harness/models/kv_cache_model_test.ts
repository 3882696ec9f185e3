import assert from "node:assert/strict";
import { cpuBackend } from "../../kernels/cpu/backend.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "./llama2c.ts";

const STORIES = "models/stories260K";

Deno.test({
  name: "kv cache: stories260K prefill scores as a token-by-token decode; int2 hurts, int8 not",
  ignore: !hasShared(STORIES, "stories260K.bin") ||
    !hasShared("data/text/tinystories_sample.txt"),
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const text = await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt"));
    const ids = model.tokenizer.encode(text).slice(0, 200);
    const V = model.config.vocabSize;
    const nll = (logits: Float32Array) => {
      let total = 0;
      for (let t = 0; t + 1 < ids.length; t++) {
        const row = logits.subarray(t * V, (t + 1) * V);
        const max = row.reduce((m, x) => Math.max(m, x), -Infinity);
        total += max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0)) - row[ids[t + 1]!]!;
      }
      return total / (ids.length - 1);
    };
    const run = async (kv?: { format: string; group: number; residual: number }) => {
      const runner = await cpuBackend.load(kv ? { ...model, runtime: { kvCache: kv } } : model);
      return await runner.forward(ids, 0);
    };
    const kv4 = { format: "int4", group: 32, residual: 64 };
    const prefill = await run(kv4);
    const runner = await cpuBackend.load({ ...model, runtime: { kvCache: kv4 } });
    for (let p = 0; p < ids.length; p++) {
      const step = await runner.forward([ids[p]!], p);
      for (let i = 0; i < V; i++) {
        assert.ok(Math.abs(step[i]! - prefill[p * V + i]!) < 1e-4, `position ${p}`);
      }
    }
    const base = nll(await run());
    assert.ok(Math.abs(nll(await run({ format: "int8", group: 0, residual: 32 })) - base) < 0.01);
    assert.ok(nll(await run({ format: "int2", group: 32, residual: 0 })) > base + 0.05);
    assert.notDeepEqual(prefill, await run());
  },
});
