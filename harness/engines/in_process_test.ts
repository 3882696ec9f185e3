import assert from "node:assert/strict";
import { CpuRunner } from "../../kernels/cpu/backend.ts";
import { rollingWindows } from "../tasks/windows.ts";
import { engineFor, missing, stories } from "../tasks/test_context.ts";
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
