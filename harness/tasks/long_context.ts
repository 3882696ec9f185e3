/**
 * The `long_context` task: how quality holds up as the context grows, next to the reference cell.
 *
 * - Perplexity by context length: for each of `lengths`, up to `windows` chunks of that many tokens
 *   of natural text, scored as the `llama.cpp` protocol scores them (BOS first, second half
 *   scored), so every scored token has at least half a window of context. The text is the `text`
 *   option's dataset, else the suite's first text dataset, else the task's own text dataset (the
 *   haystack); never a question set's synthetic contexts. With none, there are no `ppl@L` rows.
 *   `detail` names it (`ppl_text=ID`).
 * - Needle retrieval by length × depth. With a text dataset (the haystack, e.g. Paul Graham's
 *   essays) or none (the passkey filler of Mohtashami & Jaggi, 2023: "The grass is green. The sky
 *   is blue. …" repeated), a needle "The pass key is NNNNN. Remember it. NNNNN is the pass key." is
 *   placed at each of `depths` (fraction of the haystack before it, snapped to a nearby sentence
 *   start, else a word start)
 *   in a haystack cut so the chat prompt, ending with "What is the pass key?", takes about
 *   `length − max_new_tokens` tokens; `trials` seeded passkeys per cell. With a JSON Lines dataset,
 *   its samples are the questions: `{id?, prompt | context + question, answer, difficulty?:
 *   {target_tokens, depth}}` (or `length`, `depth` fields); questions longer than the model's
 *   context are left out. An answer is correct
 *   when the generated text contains the answer.
 * - Regression against the reference cell (`reference`, default `none`/`f32`, computed once and
 *   cached): `ppl_ratio@L` = PPL/PPL_ref over the same windows (standard error from the paired
 *   per-window differences) and `retrieval_delta@L` = accuracy − reference accuracy (paired).
 *
 * Lengths beyond the model's context are skipped (and named in `detail`).
 *
 * @module
 */
import type { Metric, Task, TaskContext } from "./task.ts";
import type { Samples } from "../../core/row.ts";
import type { DatasetSpec } from "../../core/suite_types.ts";
import { DatasetError, readJsonl, readText } from "../../core/dataset.ts";
import { meanAndStderr, Z95 } from "./nll.ts";
import { llamaCppChunks } from "./windows.ts";
import { bosOf, logDomainMetric, windowNlls } from "./perplexity.ts";
import { cachedReferenceJson, DEFAULT_REFERENCE } from "./reference.ts";
import {
  ContextOverflowError,
  type Engine,
  MissingCapabilityError,
  unmetNeed,
} from "../engines/engine.ts";
import { effectiveLimit, randomInt, seededRandom, stratifiedSubset } from "../../core/random.ts";
import { proportionMetric } from "./proportion.ts";

/** Options and their defaults. */
export const LONG_CONTEXT_OPTIONS = {
  lengths: [256, 512, 1024],
  depths: [0.1, 0.5, 0.9],
  trials: 2,
  windows: 4,
  max_new_tokens: 16,
  limit: 0,
  reference: DEFAULT_REFERENCE,
  /** Id of the text dataset perplexity is measured on; "" = the suite's first text dataset. */
  text: "",
};

/**
 * The text dataset long_context measures perplexity on (see the module documentation), or
 * undefined when the suite has none.
 */
export function perplexityDataset(
  datasets: Readonly<Record<string, DatasetSpec>>,
  options: Record<string, unknown>,
  own: DatasetSpec | undefined,
): DatasetSpec | undefined {
  const named = typeof options.text === "string" && options.text !== ""
    ? datasets[options.text]
    : undefined;
  if (named) return named;
  return Object.values(datasets).find((d) => d.kind === "text") ??
    (own?.kind === "text" ? own : undefined);
}

/** The passkey filler (Mohtashami & Jaggi, 2023). */
export const PASSKEY_FILLER =
  "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

const QUESTION = "What is the pass key?";

/** One retrieval question. */
export interface RetrievalItem {
  id: string;
  length: number;
  depth: number;
  prompt: string;
  answer: string;
}

/** What the task measures on one model (the cell's or the reference's). */
export interface LongContextResult {
  /** Per length: mean NLL of each window's scored half. */
  ppl: { length: number; windowNll: number[] }[];
  /** Per question: 1 when the answer was found. */
  retrieval: { id: string; length: number; depth: number; correct: number }[];
}

/** Checks and reads the options. */
function options(ctx: TaskContext) {
  const o = { ...LONG_CONTEXT_OPTIONS, ...ctx.task.options };
  const numbers = (v: unknown, what: string) => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && x > 0)) {
      throw new DatasetError(`long_context ${what} must be a list of positive numbers, got ${v}`);
    }
    return v as number[];
  };
  const lengths = numbers(o.lengths, "lengths");
  if (!lengths.every(Number.isInteger)) {
    throw new DatasetError("long_context lengths must be integers");
  }
  const depths = numbers(o.depths, "depths");
  if (!depths.every((d) => d <= 1)) {
    throw new DatasetError("long_context depths must lie in (0, 1]");
  }
  return {
    lengths,
    depths,
    trials: Number(o.trials),
    windows: Number(o.windows),
    maxNewTokens: Number(o.max_new_tokens),
    limit: effectiveLimit(o.limit, ctx.limit),
  };
}

/** The perplexity text and retrieval questions of the task's data source. */
async function source(
  ctx: TaskContext,
  opts: ReturnType<typeof options>,
  lengths: number[],
): Promise<{ items: RetrievalItem[]; kind: string }> {
  const dataset = ctx.dataset;
  if (dataset?.kind === "jsonl") {
    const items: RetrievalItem[] = [];
    for (const { value, line } of await readJsonl(dataset)) {
      const v = value as Record<string, unknown>;
      const d = (v.difficulty ?? {}) as Record<string, unknown>;
      const length = Number(d.target_tokens ?? v.length);
      const depth = Number(d.depth ?? v.depth);
      const context = typeof v.context === "string" ? v.context : "";
      const prompt = typeof v.prompt === "string"
        ? v.prompt
        : `${context}\n\n${typeof v.question === "string" ? v.question : ""}`;
      if (typeof v.answer !== "string" || !(length > 0) || !(depth >= 0)) {
        throw new DatasetError(
          `Dataset "${dataset.id}" line ${line}: expected "answer" and a length and depth`,
        );
      }
      items.push({ id: String(v.id ?? `line_${line}`), length, depth, prompt, answer: v.answer });
    }
    // The questions' own lengths count here: those of the task's `lengths` are kept (so the
    // retrieval rows line up with the perplexity rows), those beyond the model's context left out.
    const max = ctx.engine.info().maxSeqLen;
    const kept = stratifiedSubset(
      items.filter((i) => i.length <= max && lengths.includes(i.length)),
      opts.limit,
      (i) => `${i.length}/${i.depth}`,
      ctx.seed,
    );
    return { items: kept, kind: "jsonl" };
  }
  const haystack = dataset ? await readText(dataset) : PASSKEY_FILLER;
  const items = passkeyItems(ctx.engine, haystack, lengths, opts, ctx.seed);
  return {
    items: stratifiedSubset(items, opts.limit, (i) => `${i.length}/${i.depth}`, ctx.seed),
    kind: dataset ? "text" : "generated",
  };
}

/** Passkey questions over a haystack (see the module documentation). */
export function passkeyItems(
  engine: Pick<Engine, "chat">,
  haystack: string,
  lengths: readonly number[],
  opts: { depths: number[]; trials: number; maxNewTokens: number },
  seed: number,
): RetrievalItem[] {
  const items: RetrievalItem[] = [];
  for (const length of lengths) {
    for (const depth of opts.depths) {
      for (let t = 0; t < opts.trials; t++) {
        const random = seededRandom(seed, `passkey:${length}:${depth}:${t}`);
        const key = String(10000 + randomInt(random, 90000));
        const start = haystack.length > 1 ? randomInt(random, Math.floor(haystack.length / 2)) : 0;
        const prompt = fitPrompt(engine, haystack, start, depth, key, length - opts.maxNewTokens);
        items.push({ id: `passkey_${length}_${depth}_${t}`, length, depth, prompt, answer: key });
      }
    }
  }
  return items;
}

/** The user message with `chars` haystack characters from `start` and the needle at `depth`. */
function passkeyMessage(
  haystack: string,
  start: number,
  chars: number,
  depth: number,
  key: string,
) {
  let filler = "";
  while (filler.length < start + chars) filler += haystack;
  filler = filler.slice(start, start + chars);
  // Snap to the start of a sentence near the depth, else of a word.
  let at = Math.floor(depth * filler.length);
  const sentence = filler.lastIndexOf(". ", at);
  const word = filler.lastIndexOf(" ", at);
  at = sentence >= 0 && at - sentence < 0.1 * filler.length + 2 ? sentence + 2 : word + 1;
  const needle = `The pass key is ${key}. Remember it. ${key} is the pass key. `;
  return `${filler.slice(0, at)}${needle}${filler.slice(at)}\n\n${QUESTION}`;
}

/** The longest haystack cut whose chat prompt takes at most `target` tokens. */
function fitPrompt(
  engine: Pick<Engine, "chat">,
  haystack: string,
  start: number,
  depth: number,
  key: string,
  target: number,
): string {
  const tokens = (chars: number) =>
    engine.chat([{
      role: "user",
      content: passkeyMessage(haystack, start, chars, depth, key),
    }]).ids.length;
  let lo = 0;
  let hi = Math.max(16, target * 8);
  while (tokens(hi) <= target && hi < 1 << 24) hi *= 2;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (tokens(mid) <= target) lo = mid;
    else hi = mid;
  }
  return passkeyMessage(haystack, start, lo, depth, key);
}

/** Measures one model, through its engine. */
export async function measureLongContext(
  engine: Engine,
  text: string,
  items: readonly RetrievalItem[],
  lengths: readonly number[],
  opts: { windows: number; maxNewTokens: number },
  progress: (fraction: number) => void,
): Promise<LongContextResult> {
  const pplLengths = text === "" ? [] : lengths;
  const longest = Math.max(...lengths);
  // Tokenize only as much text as the windows need (generously: 8 characters per token).
  let stream = text;
  while (text !== "" && stream.length < (opts.windows + 1) * longest * 8) stream += "\n\n" + text;
  const bos = bosOf(engine.info());
  const head = text === ""
    ? []
    : engine.tokenize(stream.slice(0, (opts.windows + 1) * longest * 8));
  const ids = bos === undefined ? head : [bos, ...head];
  const steps = pplLengths.length * opts.windows + items.length;
  let done = 0;
  const ppl: LongContextResult["ppl"] = [];
  for (const length of pplLengths) {
    const windows = llamaCppChunks(ids, length, bos).slice(0, opts.windows);
    if (windows.length === 0) {
      throw new DatasetError(
        `The text has ${ids.length} tokens, fewer than one window of ${length}`,
      );
    }
    const windowNll: number[] = [];
    for (const w of windows) {
      const nlls = await windowNlls(engine, w);
      windowNll.push(nlls.reduce((a, b) => a + b, 0) / nlls.length);
      progress(++done / steps);
    }
    ppl.push({ length, windowNll });
  }
  const retrieval: LongContextResult["retrieval"] = [];
  for (const item of items) {
    let correct = 0;
    try {
      const prompt = engine.chat([{ role: "user", content: item.prompt }]);
      const [gen] = await engine.generateUntil([{
        prompt: prompt.ids,
        maxTokens: opts.maxNewTokens,
        stop: (t) => t.includes(item.answer),
      }]);
      correct = gen!.text.includes(item.answer) ? 1 : 0;
    } catch (e) {
      if (!(e instanceof ContextOverflowError)) throw e;
    }
    retrieval.push({ id: item.id, length: item.length, depth: item.depth, correct });
    progress(++done / steps);
  }
  return { ppl, retrieval };
}

/** The long_context task. */
export const longContext: Task = {
  name: "long_context",
  description: "perplexity and needle retrieval by context length, against the reference cell",
  needsDataset: false,
  options: LONG_CONTEXT_OPTIONS,
  needs: ["loglikelihood", "generation"],
  async run(ctx) {
    const opts = options(ctx);
    const max = ctx.engine.info().maxSeqLen;
    const lengths = opts.lengths.filter((l) => l <= max);
    const skipped = opts.lengths.filter((l) => l > max);
    if (lengths.length === 0) {
      throw new DatasetError(
        `Every long_context length (${opts.lengths.join(", ")}) exceeds the model's context ${max}`,
      );
    }
    const src = await source(ctx, opts, lengths);
    const pplData = perplexityDataset(ctx.datasets ?? {}, ctx.task.options, ctx.dataset);
    const pplText = pplData ? await readText(pplData) : "";
    const ref = ctx.reference;
    const own = await measureLongContext(
      ctx.engine,
      pplText,
      src.items,
      lengths,
      opts,
      (f) => ctx.progress(ref && !ref.isSelf ? f / 2 : f),
    );
    const base = !ref ? undefined : ref.isSelf ? own : await cachedReferenceJson(
      ref,
      "long_context",
      async () => {
        const engine = await ref.open();
        const why = unmetNeed(longContext.needs, engine.info());
        if (why !== undefined) throw new MissingCapabilityError(`Reference ${ref.id} ${why}`);
        return await measureLongContext(
          engine,
          pplText,
          src.items,
          lengths,
          opts,
          (f) => ctx.progress(0.5 + f / 2),
        );
      },
    );
    const detail = `long_context source=${src.kind} ppl_text=${pplData?.id ?? "none"} ` +
      `ppl_protocol=llama.cpp windows<=${opts.windows} ` +
      `max_new_tokens=${opts.maxNewTokens} seed=${ctx.seed}` +
      (ref ? ` ref=${ref.id}` : "") +
      (skipped.length > 0 ? ` skipped_lengths=${skipped.join(",")}>${max}` : "");
    return longContextMetrics(own, base, detail);
  },
};

/** The rows of the task. */
export function longContextMetrics(
  own: LongContextResult,
  base: LongContextResult | undefined,
  detail: string,
): Metric[] {
  const rows: Metric[] = [];
  for (const { length, windowNll } of own.ppl) {
    const { mean, stderr } = meanAndStderr(windowNll);
    const samples: Samples = { kind: "window_nll", values: windowNll };
    rows.push(
      logDomainMetric(
        `ppl@${length}`,
        "perplexity",
        mean,
        stderr,
        windowNll.length,
        detail,
        samples,
        true,
      ),
    );
    const refNll = base?.ppl.find((p) => p.length === length)?.windowNll;
    if (refNll && refNll.length === windowNll.length) {
      const diff = windowNll.map((v, i) => v - refNll[i]!);
      const d = meanAndStderr(diff);
      rows.push({
        ...logDomainMetric(`ppl_ratio@${length}`, "ratio", d.mean, d.stderr, diff.length, detail, {
          kind: "window_nll_diff",
          values: diff,
        }, true),
      });
    }
  }
  const lengths = [...new Set(own.retrieval.map((r) => r.length))].sort((a, b) => a - b);
  for (const length of lengths) {
    const these = own.retrieval.filter((r) => r.length === length);
    rows.push(
      proportionMetric(
        `retrieval@${length}`,
        these.map((r) => r.correct),
        these.map((r) => r.id),
        detail,
      ),
    );
    const depths = [...new Set(these.map((r) => r.depth))].sort((a, b) => a - b);
    for (const depth of depths) {
      const cell = these.filter((r) => r.depth === depth);
      rows.push(
        proportionMetric(
          `retrieval@${length}:d=${depth}`,
          cell.map((r) => r.correct),
          cell.map((r) => r.id),
          detail,
        ),
      );
    }
    if (base) {
      const byId = new Map(base.retrieval.map((r) => [r.id, r.correct]));
      const paired = these.filter((r) => byId.has(r.id));
      const diff = paired.map((r) => r.correct - byId.get(r.id)!);
      if (diff.length > 0) {
        const { mean, stderr } = meanAndStderr(diff);
        rows.push({
          metric: `retrieval_delta@${length}`,
          value: mean,
          unit: "fraction",
          higher_is_better: true,
          n: diff.length,
          stderr,
          ci_low: stderr === null ? null : mean - Z95 * stderr,
          ci_high: stderr === null ? null : mean + Z95 * stderr,
          detail,
          samples: { kind: "correct_diff", values: diff, ids: paired.map((r) => r.id) },
        });
      }
    }
  }
  return rows;
}
