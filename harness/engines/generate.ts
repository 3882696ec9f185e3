/**
 * Greedy generation with the KV cache: one forward pass over the prompt (prefill), then one pass
 * per new token (decode), each time taking the most likely next token (the first on ties). A
 * runner that decodes greedily on its device (`ModelRunner.decodeGreedy`) is asked for chunks of
 * tokens at once; the stopping rules then run over the chunk, and the KV cache is cut back to
 * the tokens kept, so tokens, text and stop reason are those of the token-by-token loop.
 *
 * @module
 */
import type { ModelRunner } from "../../kernels/backend.ts";
import type { Tokenizer } from "../../core/model.ts";
import {
  ContextOverflowError,
  type GenerateRequest,
  type Generation,
  type GenerationTiming,
  type TimingRequest,
} from "./engine.ts";
import { argmaxRow } from "../tasks/nll.ts";

/**
 * Tokens per `decodeGreedy` call while generating: past a stop, the rest of a chunk is wasted
 * work, so chunks stay short. (Timing, with no stopping rules, decodes all its tokens in one call.)
 */
export const GENERATE_CHUNK = 16;

/** Generates greedily from `request.prompt` within a context of `maxSeqLen` tokens. */
export async function greedyGenerate(
  runner: ModelRunner,
  tokenizer: Tokenizer,
  request: GenerateRequest,
  maxSeqLen: number,
): Promise<Generation> {
  const { prompt } = request;
  const state = new GenerationState(tokenizer, request, maxSeqLen, tokenizer.eosId);
  const t0 = performance.now();
  runner.reset();
  let logits = await prefillLast(runner, prompt);
  const prefillMs = performance.now() - t0;
  let next = argmaxRow(logits, logits.length, 0);
  const firstTokenMs = performance.now() - t0;
  let pos = prompt.length;
  let decodeMs = 0;
  let decodeSteps = 0;
  let stopReason = state.accept(next, pos);
  while (stopReason === undefined) {
    const t = performance.now();
    if (runner.decodeGreedy && runner.truncate) {
      // `next` was accepted, so a token is still wanted and position `pos` is in the context.
      const n = Math.min(GENERATE_CHUNK, request.maxTokens - state.ids.length, maxSeqLen - pos);
      const ids = await runner.decodeGreedy(next, pos, n);
      decodeMs += performance.now() - t;
      let used = 0;
      while (used < n && stopReason === undefined) {
        next = ids[used++]!;
        stopReason = state.accept(next, pos + used);
      }
      pos += used;
      decodeSteps += used;
      if (used < n) runner.truncate(pos);
    } else {
      logits = await runner.forward([next], pos++);
      next = argmaxRow(logits, logits.length, 0);
      decodeMs += performance.now() - t;
      decodeSteps++;
      stopReason = state.accept(next, pos);
    }
  }
  return {
    ids: state.ids,
    text: state.text,
    stopReason,
    promptTokens: prompt.length,
    prefillMs,
    firstTokenMs,
    decodeMs,
    decodeSteps,
  };
}

/**
 * A greedy generation's tokens and text so far, and its stopping rules, shared by every engine
 * that generates token by token: the prompt must leave room in the context; each new token ends
 * the generation at an end id (not kept), at the first `until` string (the text cut before it),
 * when `stop` says so, at `maxTokens`, or when the context is full, in that order.
 */
export class GenerationState {
  readonly ids: number[] = [];
  text = "";
  readonly #tokenizer: Tokenizer;
  readonly #request: GenerateRequest;
  readonly #maxSeqLen: number;
  readonly #stopIds: Set<number>;

  constructor(tokenizer: Tokenizer, request: GenerateRequest, maxSeqLen: number, eosId: number) {
    const { prompt } = request;
    if (prompt.length === 0) throw new RangeError("Generation needs a non-empty prompt");
    if (prompt.length >= maxSeqLen) {
      throw new ContextOverflowError(
        `Prompt of ${prompt.length} tokens leaves no room in the context of ${maxSeqLen}`,
      );
    }
    this.#tokenizer = tokenizer;
    this.#request = request;
    this.#maxSeqLen = maxSeqLen;
    this.#stopIds = new Set(request.stopIds ?? [eosId]);
  }

  /**
   * Takes the greedy token `next`, which would be decoded at position `pos`; returns why the
   * generation stops there, or undefined to go on.
   */
  accept(next: number, pos: number): Generation["stopReason"] | undefined {
    if (this.#stopIds.has(next)) return "eos";
    this.ids.push(next);
    this.text = this.#tokenizer.decode(this.ids);
    const cut = untilCut(this.text, this.#request.until);
    if (cut >= 0) {
      this.text = this.text.slice(0, cut);
      return "until";
    }
    if (this.#request.stop?.(this.text)) return "stop";
    if (this.ids.length >= this.#request.maxTokens) return "max_tokens";
    if (pos >= this.#maxSeqLen) return "context";
    return undefined;
  }
}

/** Where the first of the `until` strings starts in `text`, or −1 when none occurs. */
export function untilCut(text: string, until: readonly string[] | undefined): number {
  let cut = -1;
  for (const s of until ?? []) {
    const at = text.indexOf(s);
    if (at >= 0 && (cut < 0 || at < cut)) cut = at;
  }
  return cut;
}

/**
 * The last row's logits of a prompt's forward pass from position 0: a prefill computes every row,
 * but only the next token is wanted, so only that row is read back where the runner can.
 */
async function prefillLast(runner: ModelRunner, prompt: readonly number[]): Promise<Float32Array> {
  if (runner.forwardLast) return await runner.forwardLast(prompt, 0);
  const logits = await runner.forward(prompt, 0);
  const vocab = logits.length / prompt.length;
  return logits.subarray((prompt.length - 1) * vocab);
}

/** Times a `llama-bench`-style run (see {@linkcode TimingRequest}). */
export async function timeGeneration(
  runner: ModelRunner,
  request: TimingRequest,
): Promise<GenerationTiming> {
  const { prompt, newTokens } = request;
  runner.reset();
  const t0 = performance.now();
  let logits = await prefillLast(runner, prompt);
  const t1 = performance.now();
  let next = argmaxRow(logits, logits.length, 0);
  const t2 = performance.now();
  if (runner.decodeGreedy) {
    await runner.decodeGreedy(next, prompt.length, newTokens);
  } else {
    for (let g = 0; g < newTokens; g++) {
      logits = await runner.forward([next], prompt.length + g);
      next = argmaxRow(logits, logits.length, 0);
    }
  }
  const t3 = performance.now();
  return { prefillMs: t1 - t0, firstTokenMs: t2 - t0, decodeMs: t3 - t2 };
}
