/**
 * KL divergence of a cell's next-token distributions from a reference cell's (default: the same
 * model unquantized), with the statistics `llama-perplexity --kl-divergence` reports.
 *
 * The text is cut as the `llama.cpp` perplexity protocol cuts it (default; `gptq` also works), and
 * at every scored position:
 *
 * - KL(P_ref ‖ P_q) = Σᵢ p_ref,i · (ln p_ref,i − ln q_i), summed over tokens whose reference
 *   log-probability exceeds −16 (as llama.cpp does);
 * - top-1 agreement ("same top p"): argmax q = argmax p_ref;
 * - Δp = q(token) − p_ref(token) for the actual next token, summarised as its RMS;
 * - the NLL of the actual token under both, giving ln(PPL_q/PPL_ref) with llama.cpp's
 *   covariance-aware uncertainty `sqrt(se_q² + se_ref² − 2·cov(nll_q, nll_ref)/(N−1))`.
 *
 * Means come with llama.cpp's standard errors (`sqrt((mean(x²) − mean(x)²)/(N−1))`, reported only
 * for N > 10); percentiles interpolate linearly between sorted values at `f·(N−1)`.
 *
 * Reference distributions are computed once per reference cell, dataset and options, and cached
 * on disk in llama.cpp's `--kl-divergence-base` row layout: per scored token, two float32 (scale
 * and minimum log-probability) followed by one uint16 per vocabulary entry (padded to an even
 * count), `ln p = scale·u + min`, over the range [max − 16, max] of the logits — 2·V + 8 bytes per
 * token (1 KiB for a 512-token vocabulary; 62.5 KiB for 32 000). Unlike llama.cpp, the reference
 * log-probability of the actual next token is also kept exactly (float32): the row clamps anything
 * more than 16 nats below the top logit, which would understate the reference NLL of rare tokens
 * and bias ln(PPL_q/PPL_ref) (by +0.08 for stories260K against itself on TinyStories).
 *
 * @module
 */
import type { Metric, Task } from "./task.ts";
import type { Samples } from "../../core/row.ts";
import { argmaxRow, logSumExp, Z95 } from "./nll.ts";
import { readText } from "../../core/dataset.ts";
import { bosOf, checkContext, checkProtocol, textWindows } from "./perplexity.ts";
import { cachedReferenceBytes, DEFAULT_REFERENCE } from "./reference.ts";
import type { ScoredWindow } from "./windows.ts";
import { type Engine, MissingCapabilityError, unmetNeed } from "../engines/engine.ts";

/** Options and their defaults. */
export const KLD_OPTIONS = {
  context: 512,
  protocol: "llama.cpp",
  max_tokens: 0,
  reference: DEFAULT_REFERENCE,
};

/** Thrown when the kld task has no reference to compare against. */
export class MissingReferenceError extends Error {
  override name = "MissingReferenceError";
}

/** uint16 slots per stored row: the vocabulary padded to even, plus two float32. */
export function rowSlots(vocab: number): number {
  return 2 * Math.floor((vocab + 1) / 2) + 4;
}

/**
 * Stores the log-softmax of logits row `row` in llama.cpp's compact layout at `out[at ..]` (`at`
 * a multiple of {@linkcode rowSlots}).
 */
export function encodeLogProbs(
  logits: Float32Array,
  vocab: number,
  row: number,
  out: Uint16Array,
  at: number,
): void {
  const base = row * vocab;
  let max = logits[base]!;
  let min = logits[base]!;
  for (let i = 1; i < vocab; i++) {
    const v = logits[base + i]!;
    if (v > max) max = v;
    if (v < min) min = v;
  }
  min = Math.max(min, max - 16);
  const lse = logSumExp(logits, vocab, row) - max;
  const scale = Math.fround((max - min) / 65535);
  const header = new Float32Array(out.buffer, out.byteOffset + at * 2, 2);
  header[0] = scale;
  header[1] = min - max - lse;
  for (let i = 0; i < vocab; i++) {
    const v = logits[base + i]!;
    out[at + 4 + i] = scale > 0 && v > min ? Math.round((v - min) / scale) : 0;
  }
}

/** The scale and offset of a stored row: `ln p_i = scale · store[at + 4 + i] + min`. */
export function storedRow(store: Uint16Array, at: number): { scale: number; min: number } {
  const header = new Float32Array(store.buffer, store.byteOffset + at * 2, 2);
  return { scale: header[0]!, min: header[1]! };
}

/** Running sums of the KL statistics (llama.cpp's `kl_divergence_result`). */
export class KlStats {
  sumNll = 0;
  sumNll2 = 0;
  sumNllBase = 0;
  sumNllBase2 = 0;
  sumNllNllBase = 0;
  sumP = 0;
  sumP2 = 0;
  sumP4 = 0;
  sameTop = 0;
  count = 0;
  readonly kld: number[] = [];

  /**
   * Adds one position: logits row `row` of the scored model against the stored reference row at
   * `at`, for the actual next token `target` whose reference NLL is `nllBase`.
   */
  add(
    logits: Float32Array,
    vocab: number,
    row: number,
    store: Uint16Array,
    at: number,
    target: number,
    nllBase: number,
  ): { kld: number; sameTop: boolean; nll: number; nllBase: number; pDiff: number } {
    const base = row * vocab;
    const lse = logSumExp(logits, vocab, row);
    const nll = lse - logits[base + target]!;
    const { scale, min } = storedRow(store, at);
    let kld = 0;
    let topBase = 0;
    let topBaseLp = -Infinity;
    for (let i = 0; i < vocab; i++) {
      const lpBase = scale * store[at + 4 + i]! + min;
      if (lpBase > topBaseLp) {
        topBaseLp = lpBase;
        topBase = i;
      }
      if (lpBase > -16) kld += Math.exp(lpBase) * (lpBase - (logits[base + i]! - lse));
    }
    const sameTop = argmaxRow(logits, vocab, row) === topBase;
    const pDiff = Math.exp(-nll) - Math.exp(-nllBase);
    this.sumNll += nll;
    this.sumNll2 += nll * nll;
    this.sumNllBase += nllBase;
    this.sumNllBase2 += nllBase * nllBase;
    this.sumNllNllBase += nll * nllBase;
    this.sumP += pDiff;
    this.sumP2 += pDiff * pDiff;
    this.sumP4 += pDiff ** 4;
    if (sameTop) this.sameTop++;
    this.count++;
    this.kld.push(kld);
    return { kld, sameTop, nll, nllBase, pDiff };
  }
}

/**
 * llama.cpp's `mean_and_uncertainty`: the mean of N values from their sum and sum of squares, and
 * `sqrt((mean(x²) − mean²)/(N−1))` (null unless N > 10 and the variance is positive).
 */
export function meanAndUncertainty(sum: number, sum2: number, count: number) {
  const mean = sum / count;
  const variance = sum2 / count - mean * mean;
  return { mean, stderr: variance > 0 && count > 10 ? Math.sqrt(variance / (count - 1)) : null };
}

/** llama.cpp's `covariance` of two means (0 for fewer than 10 values). */
export function covarianceOfMeans(sa: number, sb: number, sab: number, count: number): number {
  if (count < 10) return 0;
  return (sab / count - (sa / count) * (sb / count)) / (count - 1);
}

/** The linearly interpolated percentile of sorted values at fraction `f` (llama.cpp, numpy). */
export function percentile(sorted: readonly number[], f: number): number {
  if (f <= 0) return sorted[0]!;
  if (f >= 1) return sorted[sorted.length - 1]!;
  const p = f * (sorted.length - 1);
  const i = Math.floor(p);
  const frac = p - i;
  return (1 - frac) * sorted[i]! + frac * sorted[Math.min(i + 1, sorted.length - 1)]!;
}

/**
 * Builds the reference store for `windows` with the reference cell's engine: the float32 NLL of
 * every scored token, then the uint16 rows (see the module documentation).
 */
export async function referenceStore(
  engine: Engine,
  vocab: number,
  windows: readonly ScoredWindow[],
  progress: (fraction: number) => void,
): Promise<Uint8Array> {
  const slots = rowSlots(vocab);
  const total = windows.reduce((a, w) => a + w.targets.length, 0);
  const bytes = new Uint8Array(total * 4 + total * slots * 2);
  const nlls = new Float32Array(bytes.buffer, 0, total);
  const store = new Uint16Array(bytes.buffer, total * 4, total * slots);
  let t = 0;
  for (const [w, window] of windows.entries()) {
    const logits = await engine.logits(window.input);
    for (let k = 0; k < window.targets.length; k++, t++) {
      const row = window.offset + k;
      encodeLogProbs(logits, vocab, row, store, t * slots);
      nlls[t] = logSumExp(logits, vocab, row) - logits[row * vocab + window.targets[k]!]!;
    }
    progress((w + 1) / windows.length);
  }
  return bytes;
}

/** The kld task. */
export const kld: Task = {
  name: "kld",
  description: "KL divergence, top-1 agreement, RMS Δp and PPL ratio against a reference cell",
  needsDataset: true,
  options: KLD_OPTIONS,
  needs: ["full_distributions"],
  async run(ctx) {
    const opts = { ...KLD_OPTIONS, ...ctx.task.options };
    const protocol = checkProtocol(opts.protocol, ["llama.cpp", "gptq"]) as "llama.cpp" | "gptq";
    const info = ctx.engine.info();
    const context = checkContext(opts.context, info.maxSeqLen, "KLD", info.trainedSeqLen);
    const ref = ctx.reference;
    if (!ref) {
      throw new MissingReferenceError(
        `Task "${ctx.task.id}" needs a reference cell; it is resolved by the suite runner`,
      );
    }
    const dataset = ctx.dataset!;
    const vocab = info.vocabSize;
    const windows = textWindows(
      protocol,
      ctx.engine.tokenize(await readText(dataset)),
      context,
      bosOf(info),
      Number(opts.max_tokens),
      ctx.limit,
      dataset.id,
    );
    let computedRef = false;
    const stored = (b: Uint8Array) =>
      b.length === windows.reduce((a, w) => a + w.targets.length, 0) * (4 + rowSlots(vocab) * 2);
    const bytes = await cachedReferenceBytes(ref, "logprobs.u16", async () => {
      computedRef = true;
      const engine = await ref.open();
      const refInfo = engine.info();
      const why = unmetNeed(kld.needs, refInfo);
      if (why !== undefined) throw new MissingCapabilityError(`Reference ${ref.id} ${why}`);
      if (refInfo.vocabSize !== vocab) {
        throw new MissingReferenceError(
          `Reference ${ref.id} has ${refInfo.vocabSize} tokens, the cell ${vocab}`,
        );
      }
      return await referenceStore(engine, vocab, windows, (f) => ctx.progress(f / 2));
    }, stored);
    const slots = rowSlots(vocab);
    const total = windows.reduce((a, w) => a + w.targets.length, 0);
    const expected = total * 4 + total * slots * 2;
    if (bytes.length !== expected) {
      throw new MissingReferenceError(
        `Cached reference for ${ref.id} holds ${bytes.length} bytes, expected ${expected}`,
      );
    }
    // Float32 values are read in place, so the bytes must start 4-byte aligned.
    const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    const nllBase = new Float32Array(aligned.buffer, aligned.byteOffset, total);
    const store = new Uint16Array(aligned.buffer, aligned.byteOffset + total * 4, total * slots);
    const stats = new KlStats();
    // Per-window means, token-weighted, so that each row's value is their weighted mean (or its
    // exponential) and `compare` can pair them.
    const perWindow = {
      kld: [] as number[],
      top: [] as number[],
      nll: [] as number[],
      nllRef: [] as number[],
      ratio: [] as number[],
    };
    const weights: number[] = [];
    let t = 0;
    for (const [w, window] of windows.entries()) {
      const logits = await ctx.engine.logits(window.input);
      let k1 = 0, top = 0, nll = 0, nllRef = 0;
      for (let k = 0; k < window.targets.length; k++, t++) {
        const r = stats.add(
          logits,
          vocab,
          window.offset + k,
          store,
          t * slots,
          window.targets[k]!,
          nllBase[t]!,
        );
        k1 += r.kld;
        top += r.sameTop ? 1 : 0;
        nll += r.nll;
        nllRef += r.nllBase;
      }
      const n = window.targets.length;
      perWindow.kld.push(k1 / n);
      perWindow.top.push(top / n);
      perWindow.nll.push(nll / n);
      perWindow.nllRef.push(nllRef / n);
      perWindow.ratio.push((nll - nllRef) / n);
      weights.push(n);
      const f = (w + 1) / windows.length;
      ctx.progress(computedRef ? 0.5 + f / 2 : f);
    }
    const detail = `kld protocol=${protocol} ctx=${context} ref=${ref.id} ` +
      `${protocol === "gptq" ? "windows" : "chunks"}=${windows.length}` +
      (protocol === "llama.cpp" ? ` first=${Math.floor(context / 2)}` : "") +
      ` ref_store=u16+f32nll`;
    return klMetrics(stats, detail, {
      kld: { kind: "window_kld", values: perWindow.kld, weights },
      top: { kind: "window_same_top", values: perWindow.top, weights },
      ratio: { kind: "window_nll_diff", values: perWindow.ratio, weights },
      nll: { kind: "window_nll", values: perWindow.nll, weights },
      nllRef: { kind: "window_nll", values: perWindow.nllRef, weights },
    });
  },
};

/** The rows of the kld task from accumulated statistics. */
export function klMetrics(
  s: KlStats,
  detail: string,
  samples: { kld: Samples; top: Samples; ratio: Samples; nll: Samples; nllRef: Samples },
): Metric[] {
  const n = s.count;
  const row = (
    metric: string,
    unit: string,
    value: number,
    stderr: number | null,
    higher: boolean,
    sample?: Samples,
  ): Metric => ({
    metric,
    value,
    unit,
    higher_is_better: higher,
    n,
    stderr,
    ci_low: stderr === null ? null : value - Z95 * stderr,
    ci_high: stderr === null ? null : value + Z95 * stderr,
    detail,
    samples: sample,
  });
  const kl = meanAndUncertainty(s.kld.reduce((a, b) => a + b, 0), sumSquares(s.kld), n);
  const sorted = [...s.kld].sort((a, b) => a - b);
  const q = meanAndUncertainty(s.sumNll, s.sumNll2, n);
  const base = meanAndUncertainty(s.sumNllBase, s.sumNllBase2, n);
  const cov = covarianceOfMeans(s.sumNll, s.sumNllBase, s.sumNllNllBase, n);
  const lnRatio = q.mean - base.mean;
  const lnRatioVar = (q.stderr ?? 0) ** 2 + (base.stderr ?? 0) ** 2 - 2 * cov;
  const lnRatioSe = q.stderr === null || base.stderr === null
    ? null
    : Math.sqrt(Math.max(0, lnRatioVar));
  const mse = meanAndUncertainty(s.sumP2, s.sumP4, n);
  const rms = Math.sqrt(mse.mean);
  const rmsSe = mse.stderr === null || rms === 0 ? null : (0.5 / rms) * mse.stderr;
  const top = s.sameTop / n;
  const topSe = n > 1 ? Math.sqrt((top * (1 - top)) / (n - 1)) : null;
  const exp = (x: number, se: number | null, metric: string, sample: Samples): Metric => ({
    ...row(metric, "perplexity", Math.exp(x), se === null ? null : Math.exp(x) * se, false, sample),
    ci_low: se === null ? null : Math.exp(x - Z95 * se),
    ci_high: se === null ? null : Math.exp(x + Z95 * se),
  });
  return [
    row("kld", "nats", kl.mean, kl.stderr, false, samples.kld),
    row("kld_p99", "nats", percentile(sorted, 0.99), null, false),
    row("kld_p95", "nats", percentile(sorted, 0.95), null, false),
    row("kld_median", "nats", percentile(sorted, 0.5), null, false),
    row("kld_max", "nats", sorted[sorted.length - 1]!, null, false),
    row("same_top_p", "fraction", top, topSe, true, samples.top),
    row("rms_dp", "probability", rms, rmsSe, false),
    row("ln_ppl_ratio", "nats/token", lnRatio, lnRatioSe, false, samples.ratio),
    { ...exp(lnRatio, lnRatioSe, "ppl_ratio", samples.ratio), unit: "ratio" },
    exp(q.mean, q.stderr, "ppl", samples.nll),
    exp(base.mean, base.stderr, "ppl_ref", samples.nllRef),
  ];
}

function sumSquares(values: readonly number[]): number {
  let s = 0;
  for (const v of values) s += v * v;
  return s;
}
