/**
 * Perplexity, `gptq` protocol (as the GPTQ and AWQ papers evaluate): the whole text is tokenized
 * once without BOS, cut into non-overlapping windows of `context` tokens (the tail that does not
 * fill a window is dropped), and tokens 1..n−1 of each window are scored given the tokens before
 * them in the same window.
 *
 * @module
 */
import type { Metric, Task } from "./task.ts";
import { meanAndStderr, tokenNll } from "./nll.ts";
import { DatasetError, readText } from "./dataset.ts";

/** Options and their defaults. */
export const PERPLEXITY_OPTIONS = { context: 512, protocol: "gptq", max_tokens: 0 };

/** Known protocols (more come with the scoring issue). */
const PROTOCOLS = ["gptq"];

/** The perplexity task. */
export const perplexity: Task = {
  name: "perplexity",
  description: "token perplexity over non-overlapping windows (gptq protocol)",
  needsDataset: true,
  options: PERPLEXITY_OPTIONS,
  async run(ctx) {
    const opts = { ...PERPLEXITY_OPTIONS, ...ctx.task.options };
    const context = Number(opts.context);
    const maxTokens = Number(opts.max_tokens);
    if (!PROTOCOLS.includes(String(opts.protocol))) {
      throw new DatasetError(
        `Perplexity protocol "${opts.protocol}" is not supported; known: ${PROTOCOLS.join(", ")}`,
      );
    }
    if (!(Number.isInteger(context) && context >= 2)) {
      throw new DatasetError(`Perplexity context must be an integer ≥ 2, got ${opts.context}`);
    }
    if (context > ctx.model.config.maxSeqLen) {
      throw new DatasetError(
        `Perplexity context ${context} exceeds the model's maximum ${ctx.model.config.maxSeqLen}`,
      );
    }
    const dataset = ctx.dataset!;
    let ids = ctx.model.tokenizer.encode(await readText(dataset));
    if (maxTokens > 0) ids = ids.slice(0, maxTokens);
    let windows = Math.floor(ids.length / context);
    if (ctx.limit !== undefined) windows = Math.min(windows, ctx.limit);
    if (windows === 0) {
      throw new DatasetError(
        `Dataset "${dataset.id}" has ${ids.length} tokens, fewer than one window of ${context}`,
      );
    }
    const vocab = ctx.model.config.vocabSize;
    const windowNll: number[] = [];
    let total = 0;
    for (let w = 0; w < windows; w++) {
      const window = ids.slice(w * context, (w + 1) * context);
      ctx.runner.reset();
      const logits = await ctx.runner.forward(window, 0);
      let sum = 0;
      for (let t = 0; t + 1 < context; t++) sum += tokenNll(logits, vocab, t, window[t + 1]!);
      windowNll.push(sum / (context - 1));
      total += sum;
      ctx.progress((w + 1) / windows);
    }
    const scored = windows * (context - 1);
    const nll = total / scored;
    const { stderr } = meanAndStderr(windowNll);
    const detail = `ppl protocol=gptq ctx=${context} bos=false unit=token windows=${windows}`;
    const samples = {
      kind: "window_nll",
      values: windowNll,
      weights: windowNll.map(() => context - 1),
    };
    const z = 1.959963984540054;
    const ppl: Metric = {
      metric: "ppl",
      value: Math.exp(nll),
      unit: "perplexity",
      higher_is_better: false,
      n: scored,
      stderr: stderr === null ? null : Math.exp(nll) * stderr,
      ci_low: stderr === null ? null : Math.exp(nll - z * stderr),
      ci_high: stderr === null ? null : Math.exp(nll + z * stderr),
      detail,
      samples,
    };
    const nllMetric: Metric = {
      metric: "nll",
      value: nll,
      unit: "nats/token",
      higher_is_better: false,
      n: scored,
      stderr,
      ci_low: stderr === null ? null : nll - z * stderr,
      ci_high: stderr === null ? null : nll + z * stderr,
      detail,
      samples,
    };
    return [ppl, nllMetric];
  },
};
