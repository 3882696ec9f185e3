/**
 * Greedy generation through the WebGPU runner's GPU-resident decoding (`decodeGreedy`, chunks of
 * tokens per call) gives the tokens, text, stop reason and KV cache of the token-by-token loop
 * (one `forward` and a host argmax per token), on stories260K and mini, with the embedding table
 * split over several storage bindings.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { GENERATE_CHUNK, greedyGenerate, timeGeneration } from "./generate.ts";
import type { GenerateRequest } from "./engine.ts";
import { createWebGpuBackend } from "../../kernels/webgpu/backend.ts";
import type { ModelRunner } from "../../kernels/backend.ts";
import type { LlamaModel } from "../../core/model.ts";
import { REPO_ROOT } from "../../core/shared.ts";
import { loadModelPath } from "../models/load.ts";
import { missing, stories } from "../tasks/test_context.ts";

const unavailable = await createWebGpuBackend().unavailable();

/** The runner without its device decoding: what generation did before `decodeGreedy`. */
function tokenByToken(runner: ModelRunner): ModelRunner {
  return {
    forward: (tokens, pos) => runner.forward(tokens, pos),
    reset: () => runner.reset(),
    dispose: () => runner.dispose(),
  };
}

/** `all`: besides the chunk and stop-string cases, the context and end-id stops and timing. */
async function compare(model: LlamaModel, maxBinding: number, maxSeqLen: number, all: boolean) {
  const backend = createWebGpuBackend({ maxBinding });
  const device = await backend.load(model, { maxSeqLen });
  const host = tokenByToken(await backend.load(model, { maxSeqLen }));
  try {
    assert.ok(device.decodeGreedy && device.truncate);
    const { tokenizer } = model;
    const prompt = [tokenizer.bosId, ...tokenizer.encode("Once upon a time")];
    const run = async (request: GenerateRequest, context = maxSeqLen) => {
      const a = await greedyGenerate(device, tokenizer, request, context);
      const b = await greedyGenerate(host, tokenizer, request, context);
      const { prefillMs: _a, firstTokenMs: _b, decodeMs: _c, ...got } = a;
      const { prefillMs: _d, firstTokenMs: _e, decodeMs: _f, ...want } = b;
      assert.deepEqual(got, want);
      // The KV cache was cut back to the kept tokens: both runners continue alike from there.
      const at = prompt.length + a.decodeSteps;
      const next = a.ids.at(-1) ?? 0;
      assert.deepEqual(await device.forward([next], at), await host.forward([next], at));
      return a;
    };
    // A length that is no multiple of the chunk.
    const long = 2 * GENERATE_CHUNK + 5;
    const free = await run({ prompt, maxTokens: long, stopIds: [] });
    assert.equal(free.stopReason, "max_tokens");
    assert.equal(free.ids.length, long);
    // A stop string whose first occurrence ends inside the second chunk (not at its end).
    const k = GENERATE_CHUNK + 3;
    const piece = tokenizer.decode(free.ids.slice(k - 1, k));
    const until = tokenizer.decode(free.ids.slice(0, k));
    const cut = await run({
      prompt,
      maxTokens: long,
      stopIds: [],
      until: [until.slice(until.length - Math.max(2, piece.length))],
    });
    assert.equal(cut.stopReason, "until");
    assert.ok(cut.decodeSteps % GENERATE_CHUNK !== 0, `stopped at ${cut.decodeSteps} steps`);
    if (!all) return;
    // A context that ends mid-chunk, and the model's end-of-sequence id.
    const full = await run({ prompt, maxTokens: long, stopIds: [] }, prompt.length + 7);
    assert.equal(full.stopReason, "context");
    await run({ prompt, maxTokens: long });
    // Timing decodes as many tokens either way and leaves the cache as long.
    const newTokens = 2 * GENERATE_CHUNK + 7;
    await timeGeneration(device, { prompt, newTokens });
    await timeGeneration(host, { prompt, newTokens });
    const at = prompt.length + newTokens;
    assert.deepEqual(await device.forward([3], at), await host.forward([3], at));
  } finally {
    device.dispose();
    host.dispose();
  }
}

Deno.test({
  name: "generate: WebGPU device decoding of stories260K matches the token-by-token loop",
  ignore: unavailable !== undefined || missing(),
  async fn() {
    // 64 KiB bindings: the 128 KiB embedding table goes to the GPU in two parts.
    await compare(await stories(), 65536, 256, true);
  },
});

Deno.test({
  name: "generate: WebGPU device decoding of mini matches the token-by-token loop",
  ignore: unavailable !== undefined,
  async fn() {
    // 1 MiB bindings: the 3 MiB embedding table in three parts.
    await compare(
      await loadModelPath(join(REPO_ROOT, "fixtures/models/mini")),
      1 << 20,
      256,
      false,
    );
  },
});
