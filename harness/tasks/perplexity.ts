/**
 * Perplexity under three protocols (see `windows.ts` for how each cuts the text):
 *
 * - `gptq` (default, as the GPTQ and AWQ papers evaluate): the whole text tokenized once without
 *   BOS, non-overlapping windows of `context` tokens, tokens 1..n−1 of each window scored. `stderr`
 *   is the standard error over windows (for `ppl` by the delta method).
 * - `llama.cpp` (as `llama-perplexity`): BOS first, `context`-token chunks whose first token is
 *   replaced by BOS (both only when the tokenizer adds BOS), the second half of each chunk scored;
 *   it needs at least 2·`context` tokens.
 *   `stderr` is llama.cpp's "PPL = … +/- …": `sqrt((mean(nll²) − mean(nll)²)/(N − 1))` over the N
 *   scored tokens, times PPL for `ppl`.
 * - `rolling` (as lm-evaluation-harness `loglikelihood_rolling`): each document (the dataset split
 *   on its `separator`) is scored on its own, every token once, with BOS as the prefix token and
 *   windows of at most `context` tokens. Reports token perplexity `ppl` and `nll`, and
 *   lm-evaluation-harness's `word_perplexity` (words = `re.split(r"\s+", doc)` pieces),
 *   `byte_perplexity` (UTF-8 bytes) and `bits_per_byte`, each a ratio of sums over documents;
 *   `stderr` comes from the per-document ratio estimator (delta method).
 *
 * Every row keeps per-sample values (`samples`): per window for `gptq` and `llama.cpp`, per
 * document for `rolling`, as NLL per unit with the unit count as weight, so the row's log-domain
 * value is the weighted mean of the samples. `--limit` caps windows, chunks or documents.
 *
 * With `speed: true` (`gptq` and `llama.cpp`) a third row, `tokens_per_s`, gives the tokens the
 * windows feed through the model per second of the engine's `loglikelihood` calls, the first batch
 * of windows left out as warm-up (weight uploads, pipeline compilation), as PyTorch is timed after
 * a warm-up pass; with one batch only, that batch is timed (the detail says so). It is off by
 * default because a time differs from run to run, unlike the other rows.
 *
 * @module
 */
import type { Metric, Task } from "./task.ts";
import type { Samples } from "../../core/row.ts";
import type { Tokenizer } from "../../core/model.ts";
import type { Engine } from "../engines/engine.ts";
import { meanAndStderr, Z95 } from "./nll.ts";
import { DatasetError, readDocuments, readText } from "../../core/dataset.ts";
import { gptqWindows, llamaCppChunks, type ScoredWindow } from "./windows.ts";

/** Options and their defaults. */
export const PERPLEXITY_OPTIONS = { context: 512, protocol: "gptq", max_tokens: 0, speed: false };

/** Known protocols. */
export const PROTOCOLS = ["gptq", "llama.cpp", "rolling"] as const;

/** One of {@linkcode PROTOCOLS}. */
export type Protocol = typeof PROTOCOLS[number];

/** Checks a protocol name. */
export function checkProtocol(name: unknown, allowed: readonly string[] = PROTOCOLS): Protocol {
  if (!allowed.includes(String(name))) {
    throw new DatasetError(
      `Perplexity protocol "${name}" is not supported; known: ${allowed.join(", ")}`,
    );
  }
  return name as Protocol;
}

/**
 * Checks a context length against the model: beyond `maxSeqLen` it is refused; beyond the
 * context the model was trained for (`trainedSeqLen`, a GGUF's `context_length`) it runs with a
 * warning, as llama.cpp runs it.
 */
export function checkContext(
  value: unknown,
  maxSeqLen: number,
  what = "Perplexity",
  trainedSeqLen?: number,
): number {
  const context = Number(value);
  if (!(Number.isInteger(context) && context >= 2)) {
    throw new DatasetError(`${what} context must be an integer ≥ 2, got ${value}`);
  }
  if (context > maxSeqLen) {
    throw new DatasetError(`${what} context ${context} exceeds the model's maximum ${maxSeqLen}`);
  }
  if (trainedSeqLen !== undefined && context > trainedSeqLen) {
    console.warn(
      `warning: ${what} context ${context} exceeds the model's trained context ${trainedSeqLen} ` +
        `(GGUF context_length); it runs anyway, as llama.cpp runs it`,
    );
  }
  return context;
}

/**
 * The BOS a tokenizer (or an engine's info) puts first, or undefined when its configuration adds
 * none.
 */
export function bosOf(tokenizer: Pick<Tokenizer, "bosId" | "addBos">): number | undefined {
  return tokenizer.addBos === false ? undefined : tokenizer.bosId;
}

/** Windows of the perplexity task sent to the engine in one `loglikelihood` call. */
const WINDOW_BATCH = 8;

/** Runs one window and returns the NLL (nats) of each target. */
export async function windowNlls(engine: Engine, window: ScoredWindow): Promise<number[]> {
  const [result] = await engine.loglikelihood([window]);
  return result!.tokenLogprobs.map((lp) => -lp);
}

/**
 * The windows of a text under the `gptq` or `llama.cpp` protocol (at most `limit`), after cutting
 * the token stream to `maxTokens` (0 = all). `bosId` is the BOS the llama.cpp protocol adds, or
 * undefined for a tokenizer that adds none ({@linkcode bosOf}).
 */
export function textWindows(
  protocol: "gptq" | "llama.cpp",
  ids: number[],
  context: number,
  bosId: number | undefined,
  maxTokens: number,
  limit: number | undefined,
  label: string,
): ScoredWindow[] {
  let stream = protocol === "llama.cpp" && bosId !== undefined ? [bosId, ...ids] : ids;
  if (maxTokens > 0) stream = stream.slice(0, maxTokens);
  if (protocol === "llama.cpp" && stream.length < 2 * context) {
    throw new DatasetError(
      `Dataset "${label}" has ${stream.length} tokens; the llama.cpp protocol needs at least ` +
        `2 × context = ${2 * context}`,
    );
  }
  let windows = protocol === "gptq"
    ? gptqWindows(stream, context)
    : llamaCppChunks(stream, context, bosId);
  if (limit !== undefined) windows = windows.slice(0, limit);
  if (windows.length === 0) {
    throw new DatasetError(
      `Dataset "${label}" has ${stream.length} tokens, fewer than one window of ${context}`,
    );
  }
  return windows;
}

/** The perplexity task. */
export const perplexity: Task = {
  name: "perplexity",
  description: "perplexity under the gptq, llama.cpp or rolling (lm-evaluation-harness) protocol",
  needsDataset: true,
  options: PERPLEXITY_OPTIONS,
  needs: ["loglikelihood"],
  async run(ctx) {
    const opts = { ...PERPLEXITY_OPTIONS, ...ctx.task.options };
    const protocol = checkProtocol(opts.protocol);
    const info = ctx.engine.info();
    const context = checkContext(opts.context, info.maxSeqLen, "Perplexity", info.trainedSeqLen);
    const maxTokens = Number(opts.max_tokens);
    const dataset = ctx.dataset!;
    if (protocol === "rolling") return await rolling(ctx, context);
    const ids = ctx.engine.tokenize(await readText(dataset));
    const windows = textWindows(
      protocol,
      ids,
      context,
      bosOf(info),
      maxTokens,
      ctx.limit,
      dataset.id,
    );
    const windowNll: number[] = [];
    const weights: number[] = [];
    let total = 0;
    let total2 = 0;
    // Windows go to the engine a batch at a time, so a device can run them back to back.
    const timing = { tokens: 0, seconds: 0, batches: 0 };
    const nllsOf = async function* () {
      for (let start = 0; start < windows.length; start += WINDOW_BATCH) {
        const batch = windows.slice(start, start + WINDOW_BATCH);
        const began = performance.now();
        const results = await ctx.engine.loglikelihood(batch);
        // The first batch is warm-up unless it is the only one.
        if (start > 0 || windows.length <= WINDOW_BATCH) {
          timing.seconds += (performance.now() - began) / 1000;
          timing.tokens += batch.reduce((n, w) => n + w.input.length, 0);
          timing.batches++;
        }
        for (const r of results) yield r.tokenLogprobs.map((lp) => -lp);
      }
    };
    let w = 0;
    for await (const nlls of nllsOf()) {
      let sum = 0;
      for (const v of nlls) {
        sum += v;
        total2 += v * v;
      }
      windowNll.push(sum / nlls.length);
      weights.push(nlls.length);
      total += sum;
      ctx.progress(++w / windows.length);
    }
    const scored = weights.reduce((a, b) => a + b, 0);
    const nll = total / scored;
    const samples: Samples = { kind: "window_nll", values: windowNll, weights };
    let stderr: number | null;
    let detail: string;
    if (protocol === "gptq") {
      stderr = meanAndStderr(windowNll).stderr;
      detail = `ppl protocol=gptq ctx=${context} bos=false unit=token windows=${windows.length}`;
    } else {
      const variance = total2 / scored - nll * nll;
      stderr = variance > 0 && scored > 1 ? Math.sqrt(variance / (scored - 1)) : null;
      detail = `ppl protocol=llama.cpp ctx=${context} bos=${bosOf(info) !== undefined} ` +
        `unit=token ` +
        `chunks=${windows.length} first=${Math.floor(context / 2)}`;
    }
    const rows = [
      logDomainMetric("ppl", "perplexity", nll, stderr, scored, detail, samples, true),
      logDomainMetric("nll", "nats/token", nll, stderr, scored, detail, samples, false),
    ];
    if (opts.speed === true) rows.push(speedMetric(timing, windows.length, detail));
    return rows;
  },
};

/** The `tokens_per_s` row of `speed: true` (see the module notes). */
function speedMetric(
  timing: { tokens: number; seconds: number; batches: number },
  windows: number,
  detail: string,
): Metric {
  const warm = windows > WINDOW_BATCH
    ? `first ${WINDOW_BATCH} windows untimed (warm-up)`
    : "one batch, warm-up included";
  return {
    metric: "tokens_per_s",
    value: timing.seconds > 0 ? timing.tokens / timing.seconds : 0,
    unit: "tokens/s",
    higher_is_better: true,
    n: timing.tokens,
    stderr: null,
    ci_low: null,
    ci_high: null,
    detail: `${detail} timed=${timing.batches} batches of ${WINDOW_BATCH}, ${warm}`,
  };
}

/**
 * A metric whose log-domain value is `x` with standard error `se`: reported as `exp(x)` (with the
 * delta-method standard error and the exponentiated interval) when `exponentiate`, else as `x`.
 */
export function logDomainMetric(
  metric: string,
  unit: string,
  x: number,
  se: number | null,
  n: number,
  detail: string,
  samples: Samples | undefined,
  exponentiate: boolean,
  scale = 1,
): Metric {
  const f = (v: number) => exponentiate ? Math.exp(v) : v * scale;
  return {
    metric,
    value: f(x),
    unit,
    higher_is_better: false,
    n,
    stderr: se === null ? null : exponentiate ? Math.exp(x) * se : se * scale,
    ci_low: se === null ? null : f(x - Z95 * se),
    ci_high: se === null ? null : f(x + Z95 * se),
    detail,
    samples,
  };
}

/** Words as lm-evaluation-harness counts them: `len(re.split(r"\s+", doc))`. */
export function countWords(doc: string): number {
  return doc.split(/\s+/).length;
}

/** The `rolling` protocol. */
async function rolling(ctx: Parameters<Task["run"]>[0], context: number): Promise<Metric[]> {
  const dataset = ctx.dataset!;
  let docs = await readDocuments(dataset);
  if (ctx.limit !== undefined) docs = docs.slice(0, ctx.limit);
  if (docs.length === 0) throw new DatasetError(`Dataset "${dataset.id}" has no documents`);
  const loglik: number[] = [];
  const units = { token: [] as number[], word: [] as number[], byte: [] as number[] };
  let windowCount = 0;
  const encoder = new TextEncoder();
  for (const [d, doc] of docs.entries()) {
    const [scored] = await ctx.engine.loglikelihoodRolling([{ text: doc, maxLength: context }]);
    windowCount += scored!.windows;
    loglik.push(scored!.logprob);
    units.token.push(scored!.tokens);
    units.word.push(countWords(doc));
    units.byte.push(encoder.encode(doc).length);
    ctx.progress((d + 1) / docs.length);
  }
  const detail = (unit: string) =>
    `ppl protocol=rolling ctx=${context} bos=true unit=${unit} docs=${docs.length} ` +
    `windows=${windowCount}`;
  const ratio = (unit: "token" | "word" | "byte") => {
    const w = units[unit];
    const { value, stderr } = ratioOfSums(loglik.map((l) => -l), w);
    const samples: Samples = {
      kind: `doc_nll_per_${unit}`,
      values: loglik.map((l, i) => -l / w[i]!),
      weights: w,
    };
    return { value, stderr, samples, n: w.reduce((a, b) => a + b, 0) };
  };
  const tok = ratio("token"), word = ratio("word"), byte = ratio("byte");
  return [
    logDomainMetric(
      "ppl",
      "perplexity",
      tok.value,
      tok.stderr,
      tok.n,
      detail("token"),
      tok.samples,
      true,
    ),
    logDomainMetric(
      "nll",
      "nats/token",
      tok.value,
      tok.stderr,
      tok.n,
      detail("token"),
      tok.samples,
      false,
    ),
    logDomainMetric(
      "word_perplexity",
      "perplexity",
      word.value,
      word.stderr,
      word.n,
      detail("word"),
      word.samples,
      true,
    ),
    logDomainMetric(
      "byte_perplexity",
      "perplexity",
      byte.value,
      byte.stderr,
      byte.n,
      detail("byte"),
      byte.samples,
      true,
    ),
    logDomainMetric(
      "bits_per_byte",
      "bits/byte",
      byte.value,
      byte.stderr,
      byte.n,
      detail("byte"),
      byte.samples,
      false,
      1 / Math.LN2,
    ),
  ];
}

/**
 * Σa/Σb over samples with the delta-method standard error of a ratio estimator:
 * `sqrt(n/(n−1) · Σ(aᵢ − R·bᵢ)²) / Σb` (null for fewer than two samples).
 */
export function ratioOfSums(a: readonly number[], b: readonly number[]) {
  const sa = a.reduce((x, y) => x + y, 0);
  const sb = b.reduce((x, y) => x + y, 0);
  const value = sa / sb;
  const n = a.length;
  if (n < 2) return { value, stderr: null };
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (a[i]! - value * b[i]!) ** 2;
  return { value, stderr: Math.sqrt((n / (n - 1)) * ss) / sb };
}
