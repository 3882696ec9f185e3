/**
 * The `throughput` task: speed of the cell's kernels on this machine, as `llama-bench` measures it.
 *
 * One run: the KV cache is emptied, `prompt_tokens` tokens are run in one forward pass (prefill),
 * the most likely next token is chosen (time to first token = prefill + that choice), and then
 * `generate_tokens` tokens are decoded one forward pass at a time, each greedy choice fed back.
 * The prompt is the start of the dataset's text when one is given, else seeded random token ids
 * (BOS and EOS excluded). `warmup` runs are discarded; `repeats` runs are measured.
 *
 * Rows (each the median over the runs, per-run values in `samples`, `stderr` the standard
 * deviation over √runs, and [`ci_low`, `ci_high`] the fastest and slowest run — for the median a
 * distribution-free interval of coverage 1 − 2^(1−runs), 94 % for 5 runs):
 * `prefill_tokens_per_s`, `decode_tokens_per_s`, `ttft_ms`, `decode_gb_per_s` (bytes read per
 * decoded token × decode speed: every linear weight with its scales, the classifier, the norms and
 * one embedding row), and `model_bytes` (storage of all weights). Where the engine measures its
 * device's copy bandwidth (WebGPU), also `copy_gb_per_s` (a copy of as many bytes as a decoded
 * token reads: the weights above plus the keys and values its attention reads, averaged over the
 * decoded positions; bytes read + written per second) and `decode_bound_fraction` (decode tokens/s
 * ÷ the bound copy GB/s ÷ those bytes; 1.0: decoding as fast as the copy moves its bytes).
 *
 * @module
 */
import type { Metric, Task } from "./task.ts";
import { DatasetError, readText } from "../../core/dataset.ts";
import { randomInt, seededRandom } from "../../core/random.ts";
import { percentile } from "./kld.ts";
import { bosOf } from "./perplexity.ts";

/** Options and their defaults. */
export const THROUGHPUT_OPTIONS = {
  prompt_tokens: 128,
  generate_tokens: 32,
  warmup: 1,
  repeats: 5,
};

/** The throughput task. */
export const throughput: Task = {
  name: "throughput",
  description: "prefill and decode tokens/s, time to first token, effective memory bandwidth",
  needsDataset: false,
  options: THROUGHPUT_OPTIONS,
  needs: ["timing", "weight_bytes"],
  async run(ctx) {
    const opts = { ...THROUGHPUT_OPTIONS, ...ctx.task.options };
    const promptTokens = Number(opts.prompt_tokens);
    const generate = Number(opts.generate_tokens);
    const repeats = Number(opts.repeats);
    const warmup = Number(opts.warmup);
    const info = ctx.engine.info();
    if (!(promptTokens >= 1 && generate >= 1 && repeats >= 1 && warmup >= 0)) {
      throw new DatasetError(
        `throughput needs prompt_tokens ≥ 1, generate_tokens ≥ 1, repeats ≥ 1 and warmup ≥ 0`,
      );
    }
    if (promptTokens + generate > info.maxSeqLen) {
      throw new DatasetError(
        `prompt_tokens + generate_tokens = ${promptTokens + generate} exceeds the model's ` +
          `context ${info.maxSeqLen}`,
      );
    }
    let prompt: number[];
    if (ctx.dataset) {
      const bos = bosOf(info);
      prompt = [
        ...(bos === undefined ? [] : [bos]),
        ...ctx.engine.tokenize(await readText(ctx.dataset)),
      ]
        .slice(
          0,
          promptTokens,
        );
      if (prompt.length < promptTokens) {
        throw new DatasetError(
          `Dataset "${ctx.dataset.id}" has ${prompt.length} tokens, fewer than ${promptTokens}`,
        );
      }
    } else {
      const random = seededRandom(ctx.seed, "throughput");
      prompt = [];
      while (prompt.length < promptTokens) {
        const id = randomInt(random, info.vocabSize);
        if (id !== info.bosId && id !== info.eosId) prompt.push(id);
      }
    }
    const runs = { prefill: [] as number[], decode: [] as number[], ttft: [] as number[] };
    for (let r = 0; r < warmup + repeats; r++) {
      const t = await ctx.engine.timeGeneration({ prompt, newTokens: generate });
      if (r >= warmup) {
        runs.prefill.push(promptTokens / (t.prefillMs / 1000));
        runs.ttft.push(t.firstTokenMs);
        runs.decode.push(generate / (t.decodeMs / 1000));
      }
      ctx.progress((r + 1) / (warmup + repeats));
    }
    const bytes = info.weightBytes!;
    const detail = `throughput prompt_tokens=${promptTokens} generate_tokens=${generate} ` +
      `warmup=${warmup} repeats=${repeats} prompt=${ctx.dataset ? "dataset" : "random"} ` +
      `bytes_per_token=${bytes.perToken}`;
    const bandwidth = runs.decode.map((tps) => (tps * bytes.perToken) / 1e9);
    const bound: Metric[] = [];
    if (ctx.engine.copyBandwidth && info.kvBytesPerPosition !== undefined) {
      // The token decoded at position p attends over p + 1 cached positions.
      const kv = info.kvBytesPerPosition * (promptTokens + (generate + 1) / 2);
      const perToken = bytes.perToken + kv;
      const copy = await ctx.engine.copyBandwidth(perToken);
      const boundDetail = `${detail} kv_bytes_per_token=${kv}`;
      bound.push(
        {
          metric: "copy_gb_per_s",
          value: copy,
          unit: "GB/s",
          higher_is_better: true,
          n: null,
          stderr: null,
          ci_low: null,
          ci_high: null,
          detail: boundDetail,
        },
        timing(
          "decode_bound_fraction",
          "fraction",
          runs.decode.map((tps) => (tps * perToken) / (copy * 1e9)),
          true,
          generate,
          boundDetail,
        ),
      );
    }
    return [
      timing("prefill_tokens_per_s", "tokens/s", runs.prefill, true, promptTokens, detail),
      timing("decode_tokens_per_s", "tokens/s", runs.decode, true, generate, detail),
      timing("ttft_ms", "ms", runs.ttft, false, promptTokens, detail),
      timing("decode_gb_per_s", "GB/s", bandwidth, true, generate, detail),
      {
        metric: "model_bytes",
        value: bytes.total,
        unit: "bytes",
        higher_is_better: false,
        n: null,
        stderr: null,
        ci_low: null,
        ci_high: null,
        detail,
      },
      ...bound,
    ];
  },
};

function timing(
  metric: string,
  unit: string,
  values: number[],
  higher: boolean,
  n: number,
  detail: string,
): Metric {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const sd = values.length > 1
    ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1))
    : null;
  return {
    metric,
    value: percentile(sorted, 0.5),
    unit,
    higher_is_better: higher,
    n,
    stderr: sd === null ? null : sd / Math.sqrt(values.length),
    ci_low: sorted[0]!,
    ci_high: sorted[sorted.length - 1]!,
    detail,
    samples: { kind: `run_${metric}`, values },
  };
}
