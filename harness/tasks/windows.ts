/**
 * How a token stream is cut into model calls for scoring, one function per protocol:
 *
 * - `gptq` ({@linkcode gptqWindows}): non-overlapping windows of `context` tokens, no BOS, tokens
 *   1..n−1 of each window scored (GPTQ/AWQ papers).
 * - `llama.cpp` ({@linkcode llamaCppChunks}): as `llama-perplexity`: the text is tokenized with
 *   BOS first, cut into `n_ctx`-token chunks (the tail dropped); the first token of every chunk is
 *   replaced by BOS for the model call (both only for tokenizers that add BOS, llama.cpp's
 *   `add_bos`), and only the second half is scored: the logits of positions
 *   `first = ⌊n_ctx/2⌋ … n_ctx−2` predict tokens `first+1 … n_ctx−1`.
 * - `rolling` ({@linkcode rollingWindows}): lm-evaluation-harness `loglikelihood_rolling`
 *   (`get_rolling_token_windows` + `make_disjoint_window`): every token of a document is predicted
 *   exactly once; the first window is the prefix token (BOS) followed by up to `max_seq_len − 1`
 *   tokens, later windows predict up to `max_seq_len − context_len + 1` new tokens each with at
 *   least `context_len` tokens of context.
 *
 * @module
 */
import type { TokenWindow } from "../engines/engine.ts";

/**
 * One model call: `input` is fed from position 0 and logit row `offset + k` is scored against
 * `targets[k]` (an engine's token-level log-likelihood request).
 */
export type ScoredWindow = TokenWindow;

/** `gptq` windows of `ids` (no BOS added); the incomplete tail is dropped. */
export function gptqWindows(ids: readonly number[], context: number): ScoredWindow[] {
  const out: ScoredWindow[] = [];
  for (let w = 0; (w + 1) * context <= ids.length; w++) {
    const input = ids.slice(w * context, (w + 1) * context);
    out.push({ input, offset: 0, targets: input.slice(1) });
  }
  return out;
}

/**
 * `llama.cpp` chunks of `ids`, which must already start with BOS when the tokenizer adds one
 * (llama.cpp tokenizes the whole text with `add_special`); `bosId` then replaces each chunk's first
 * input token (undefined: a tokenizer that adds no BOS, chunks fed as they are). The incomplete
 * tail is dropped.
 */
export function llamaCppChunks(
  ids: readonly number[],
  context: number,
  bosId: number | undefined,
): ScoredWindow[] {
  const first = Math.floor(context / 2);
  const out: ScoredWindow[] = [];
  for (let c = 0; (c + 1) * context <= ids.length; c++) {
    const chunk = ids.slice(c * context, (c + 1) * context);
    const input = bosId === undefined ? chunk : [bosId, ...chunk.slice(1)];
    out.push({ input, offset: first, targets: chunk.slice(first + 1) });
  }
  return out;
}

/**
 * lm-evaluation-harness rolling windows over a document's tokens (no BOS in `tokens`), already made
 * disjoint: each window's input is its context followed by all targets but the last.
 */
export function rollingWindows(
  tokens: readonly number[],
  prefixToken: number,
  maxSeqLen: number,
  contextLen = 1,
): ScoredWindow[] {
  if (!(contextLen >= 1 && contextLen <= maxSeqLen)) {
    throw new RangeError(`Rolling context_len ${contextLen} must lie in 1..${maxSeqLen}`);
  }
  const out: ScoredWindow[] = [];
  if (tokens.length === 0) return out;
  const predLen = maxSeqLen - contextLen + 1;
  const firstLen = Math.min(maxSeqLen, tokens.length);
  out.push(disjoint([prefixToken, ...tokens.slice(0, firstLen - 1)], tokens.slice(0, firstLen)));
  let predicted = firstLen;
  while (predicted < tokens.length) {
    const windowPredLen = Math.min(tokens.length - predicted, predLen);
    const end = predicted + windowPredLen;
    out.push(disjoint(tokens.slice(end - maxSeqLen - 1, end - 1), tokens.slice(predicted, end)));
    predicted += windowPredLen;
  }
  return out;
}

/** `make_disjoint_window`: the context keeps what precedes the targets. */
function disjoint(input: number[], targets: number[]): ScoredWindow {
  const context = input.slice(0, input.length - (targets.length - 1));
  return { input: [...context, ...targets.slice(0, -1)], offset: context.length - 1, targets };
}
