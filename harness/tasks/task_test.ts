import assert from "node:assert/strict";
import { sharedPath } from "../../core/shared.ts";
import type { ChatMessage } from "../../core/model.ts";
import {
  type Engine,
  type EngineInfo,
  type GenerateRequest,
  type LoglikelihoodRequest,
  MissingCapabilityError,
  type RollingRequest,
  type TimingRequest,
} from "../engines/engine.ts";
import { runTask } from "./task.ts";
import { kld } from "./kld.ts";
import { perplexity } from "./perplexity.ts";
import {
  contextFor,
  datasetOf,
  engineFor,
  missing,
  referenceOver,
  stories,
} from "./test_context.ts";

const TINY = "data/text/tinystories_sample.txt";

/**
 * An engine that gives log-probabilities of given tokens and generations, but next-token
 * distributions only as the top `k` log-probabilities (as completion APIs do): no full logits.
 */
class TopKEngine implements Engine {
  constructor(readonly inner: Engine, readonly k: number) {}
  info(): EngineInfo {
    const info = this.inner.info();
    return { ...info, id: `top_k(${info.id})`, distributions: { kind: "top_k", k: this.k } };
  }
  tokenize(text: string) {
    return this.inner.tokenize(text);
  }
  detokenize(ids: readonly number[]) {
    return this.inner.detokenize(ids);
  }
  chat(messages: readonly ChatMessage[], tools?: readonly unknown[]) {
    return this.inner.chat(messages, tools);
  }
  loglikelihood(requests: readonly LoglikelihoodRequest[]) {
    return this.inner.loglikelihood(requests);
  }
  loglikelihoodRolling(requests: readonly RollingRequest[]) {
    return this.inner.loglikelihoodRolling(requests);
  }
  generateUntil(requests: readonly GenerateRequest[]) {
    return this.inner.generateUntil(requests);
  }
  logits(): Promise<Float32Array> {
    return Promise.reject(
      new MissingCapabilityError(
        `Engine "${this.info().id}" gives top-${this.k} log-probabilities`,
      ),
    );
  }
  timeGeneration(request: TimingRequest) {
    return this.inner.timeGeneration(request);
  }
  dispose() {
    this.inner.dispose();
  }
}

Deno.test({
  name: "runTask: a task the engine cannot serve is skipped with the reason, the others run",
  ignore: missing(TINY),
  async fn() {
    const model = await stories();
    const topK = new TopKEngine(engineFor(model), 5);
    const dataset = datasetOf(sharedPath(TINY));
    const options = { context: 128, max_tokens: 512 };
    const kldCtx = contextFor(model, "kld", options, {
      engine: topK,
      dataset,
      reference: referenceOver(model),
    });
    assert.deepEqual(await runTask(kld, kldCtx), {
      skipped: 'kld needs full next-token distributions; engine "top_k(in_process/cpu)" gives ' +
        "the top 5 log-probabilities only",
    });
    // Without the check the task would have failed on the missing capability.
    await assert.rejects(kld.run(kldCtx), MissingCapabilityError);
    // On full logits it runs.
    const full = await runTask(kld, { ...kldCtx, engine: engineFor(model) });
    assert.ok("metrics" in full && full.metrics[0]!.metric === "kld");
    // Perplexity needs only log-likelihoods: the same numbers through either engine.
    const ppl = contextFor(model, "perplexity", options, { dataset });
    const onTopK = await runTask(perplexity, { ...ppl, engine: topK });
    const onFull = await runTask(perplexity, ppl);
    assert.ok("metrics" in onTopK && "metrics" in onFull);
    assert.deepEqual(onTopK.metrics, onFull.metrics);
  },
});
