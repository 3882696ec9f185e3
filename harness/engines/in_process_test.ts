import assert from "node:assert/strict";
import { CpuRunner } from "../../kernels/cpu/backend.ts";
import { rollingWindows } from "../tasks/windows.ts";
import { contextFor, datasetOf, engineFor, missing, stories } from "../tasks/test_context.ts";
import type { ModelRunner } from "../../kernels/backend.ts";
import { createWebGpuBackend } from "../../kernels/webgpu/backend.ts";
import { adapterUnavailable } from "../../kernels/webgpu/device.ts";
import { argmaxRow, tokenNll } from "../tasks/nll.ts";
import { perplexity } from "../tasks/perplexity.ts";
import { sharedPath } from "../../core/shared.ts";
import { EmptyContinuationError } from "./in_process.ts";
import { unmetNeed } from "./engine.ts";
import { modelBytes } from "./model_bytes.ts";

const ignore = missing();

/** ln p(target) at logits row `row`, computed here from scratch in float64. */
function logSoftmaxAt(logits: Float32Array, vocab: number, row: number, target: number): number {
  const xs = Array.from(logits.subarray(row * vocab, (row + 1) * vocab));
  const max = Math.max(...xs);
  const lse = Math.log(xs.reduce((a, x) => a + Math.exp(x - max), 0)) + max;
  return xs[target]! - lse;
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

Deno.test({
  name: "in_process engine: loglikelihood is the sum of log-softmax over the forward logits",
  ignore,
  async fn() {
    const model = await stories();
    const engine = engineFor(model);
    const vocab = model.config.vocabSize;
    const ids = [1, ...engine.tokenize("Once upon a time there was a little girl.")];
    const window = { input: ids.slice(0, -1), offset: 3, targets: ids.slice(4) };
    const logits = await new CpuRunner(model).forward(window.input, 0);
    const expected = window.targets.map((t, k) => logSoftmaxAt(logits, vocab, 3 + k, t));
    const [result] = await engine.loglikelihood([window]);
    assert.equal(result!.tokenLogprobs.length, expected.length);
    result!.tokenLogprobs.forEach((lp, k) => assert.ok(close(lp, expected[k]!), `token ${k}`));
    assert.ok(close(result!.logprob, expected.reduce((a, b) => a + b, 0)));
    // The text form encodes as lm-evaluation-harness does: BOS, the context, the rest.
    const context = "Once upon a time";
    const [text] = await engine.loglikelihood([{ context, continuation: " there was" }]);
    const head = [1, ...engine.tokenize(context)];
    const tail = engine.tokenize(`${context} there was`).slice(head.length - 1);
    const [byTokens] = await engine.loglikelihood([{
      input: [...head, ...tail].slice(0, -1),
      offset: head.length - 1,
      targets: tail,
    }]);
    assert.deepEqual(text, byTokens);
    await assert.rejects(
      engine.loglikelihood([{ context, continuation: "" }]),
      EmptyContinuationError,
    );
    // Greedy: the continuation the engine generates is greedy; another is not.
    const [gen] = await engine.generateUntil([{ prompt: head, maxTokens: 4, stopIds: [] }]);
    const greedy = { input: [...head, ...gen!.ids].slice(0, -1), offset: head.length - 1 };
    const [yes, no] = await engine.loglikelihood([
      { ...greedy, targets: gen!.ids },
      { ...greedy, targets: [...gen!.ids.slice(0, -1), (gen!.ids.at(-1)! + 1) % vocab] },
    ]);
    assert.deepEqual([yes!.isGreedy, no!.isGreedy], [true, false]);
  },
});

Deno.test({
  name: "in_process engine: loglikelihood_rolling scores every token once over rolling windows",
  ignore,
  async fn() {
    const model = await stories();
    const engine = engineFor(model);
    const text = "Lily and Ben went to the park. They played on the swings and saw a big dog.";
    const tokens = engine.tokenize(text);
    // One window: BOS then the document, every token predicted from all before it.
    const [whole] = await engine.loglikelihoodRolling([{ text, maxLength: 512 }]);
    const [direct] = await engine.loglikelihood([{
      input: [1, ...tokens].slice(0, -1),
      offset: 0,
      targets: tokens,
    }]);
    assert.deepEqual([whole!.tokens, whole!.windows], [tokens.length, 1]);
    assert.ok(close(whole!.logprob, direct!.logprob));
    // Windows of 8: as many calls as rollingWindows cuts, the same tokens scored, less context.
    const windows = rollingWindows(tokens, 1, 8);
    const [short] = await engine.loglikelihoodRolling([{ text, maxLength: 8 }]);
    const perWindow = await engine.loglikelihood(windows);
    assert.equal(short!.windows, windows.length);
    assert.ok(windows.length > 2);
    assert.deepEqual(windows.flatMap((w) => w.targets), tokens);
    assert.ok(close(short!.logprob, perWindow.reduce((a, r) => a + r.logprob, 0)));
    assert.ok(short!.logprob < whole!.logprob, "less context, lower likelihood");
  },
});

Deno.test({
  name: "in_process engine: generate_until stops at the first `until` string and cuts it off",
  ignore,
  async fn() {
    const engine = engineFor(await stories());
    const prompt = [1];
    const [free] = await engine.generateUntil([{ prompt, maxTokens: 40, stopIds: [] }]);
    assert.equal(free!.stopReason, "max_tokens");
    const stop = free!.text.slice(20, 24);
    const [cut] = await engine.generateUntil([
      { prompt, maxTokens: 40, stopIds: [], until: ["never appears", stop] },
    ]);
    assert.equal(cut!.stopReason, "until");
    assert.equal(cut!.text, free!.text.slice(0, free!.text.indexOf(stop)));
    assert.ok(cut!.ids.length < free!.ids.length);
    assert.deepEqual(cut!.ids, free!.ids.slice(0, cut!.ids.length), "the same greedy tokens");
  },
});

Deno.test({
  name: "in_process engine: info declares every capability and the weights' size",
  ignore,
  async fn() {
    const model = await stories();
    const info = engineFor(model).info();
    assert.equal(info.id, "in_process/cpu");
    assert.deepEqual(info.distributions, { kind: "full" });
    assert.deepEqual([info.vocabSize, info.maxSeqLen, info.bosId], [512, 512, 1]);
    assert.deepEqual(info.fallbacks, []);
    assert.deepEqual(info.weightBytes, modelBytes(model));
    // The CPU runner's float32 keys and values: 2 × layers × positions × KV width × 4 bytes.
    const c = model.config;
    assert.equal(info.kvCacheBytes, 2 * c.nLayers * 512 * c.nKvHeads * c.headDim * 4);
    assert.equal(
      unmetNeed(
        ["loglikelihood", "full_distributions", "generation", "timing", "weight_bytes"],
        info,
      ),
      undefined,
    );
    const timing = await engineFor(model).timeGeneration({ prompt: [1, 2, 3], newTokens: 4 });
    assert.ok(timing.prefillMs > 0 && timing.firstTokenMs >= timing.prefillMs);
    assert.ok(timing.decodeMs > 0);
  },
});

/** `max |a − b| / max |b|` (the conformance suite's measure, over float64 values). */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    norm = Math.max(norm, Math.abs(b[i]!));
  }
  return diff / norm;
}

const noGpu = ignore || (await adapterUnavailable()) !== undefined;

Deno.test({
  name: "webgpu forwardScores: the NLL and argmax of the CPU runner's logits, over token slices",
  ignore: noGpu,
  async fn() {
    const model = await stories();
    const vocab = model.config.vocabSize;
    const ids = [
      1,
      ...model.tokenizer.encode("Once upon a time there was a little girl named Lily."),
    ];
    const input = ids.slice(0, -1);
    // Row 0 and row 5 have no target.
    const targets = Int32Array.from(ids.slice(1), (t, i) => i === 0 || i === 5 ? -1 : t);
    const logits = await new CpuRunner(model).forward(input, 0);
    const rows = [...targets.keys()].filter((i) => targets[i]! >= 0);
    const expected = Float64Array.from(rows, (i) => tokenNll(logits, vocab, i, targets[i]!));
    // 4 KiB bindings: slices of 2 tokens, each scored by its own dispatch.
    for (const maxBinding of [undefined, 4096]) {
      const runner = await createWebGpuBackend({ maxBinding }).load(model, { maxSeqLen: 32 });
      try {
        // A first call that leaves the cache at 3 positions: scores index rows by position.
        await runner.forwardScores!(input.slice(0, 3), 0, targets.slice(0, 3));
        const rest = await runner.forwardScores!(input.slice(3), 3, targets.slice(3));
        runner.reset();
        const scores = await runner.forwardScores!(input, 0, targets);
        const nll = Float64Array.from(rows, (i) => scores.nll[i]!);
        const error = relativeError(nll, expected);
        assert.ok(error <= 1e-5, `binding ${maxBinding}: relative error ${error}`);
        assert.deepEqual(
          [...scores.argmax],
          input.map((_, i) => argmaxRow(logits, vocab, i)),
        );
        assert.ok(Number.isNaN(scores.nll[0]) && Number.isNaN(scores.nll[5]));
        assert.ok(relativeError(rest.nll.subarray(3), scores.nll.subarray(6)) <= 1e-5);
        await assert.rejects(runner.forwardScores!([1, 2], 0, Int32Array.of(3)), RangeError);
      } finally {
        runner.dispose();
      }
    }
  },
});

Deno.test({
  name: "in_process engine on webgpu: perplexity scored on the GPU equals scoring the logits",
  ignore: noGpu || missing("data/text/tinystories_sample.txt"),
  async fn() {
    const model = await stories();
    const runner = await createWebGpuBackend().load(model);
    // The same runner without its scoring method: the engine reads logits back and scores them.
    const logitsOnly: ModelRunner = {
      forward: (tokens, pos) => runner.forward(tokens, pos),
      reset: () => runner.reset(),
      dispose: () => {},
    };
    const dataset = datasetOf(sharedPath("data/text/tinystories_sample.txt"));
    try {
      for (const protocol of ["gptq", "rolling"]) {
        const options = { context: 128, protocol, max_tokens: 0 };
        const run = (r: ModelRunner) =>
          perplexity.run({
            ...contextFor(model, "perplexity", options, { runner: r }),
            dataset,
            limit: 2,
          });
        // One after the other: both use the same runner's KV cache.
        const gpu = await run(runner);
        const host = await run(logitsOnly);
        const [a, b] = [gpu![1]!.value, host![1]!.value];
        assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(b), `${protocol}: nll ${a} vs ${b}`);
      }
    } finally {
      runner.dispose();
    }
  },
});
