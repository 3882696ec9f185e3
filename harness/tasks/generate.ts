/**
 * Greedy generation with the KV cache: one forward pass over the prompt (prefill), then one pass
 * per new token (decode), each time taking the most likely next token (the first on ties).
 *
 * @module
 */
import type { ModelRunner } from "../../kernels/backend.ts";
import type { Tokenizer } from "../../core/model.ts";
import { argmaxRow } from "./nll.ts";

/** Thrown when a prompt leaves no room to generate within the model's context. */
export class ContextOverflowError extends Error {
  override name = "ContextOverflowError";
}

/** How to generate. */
export interface GenerateOptions {
  /** At most this many new tokens. */
  maxTokens: number;
  /** The model's context length; generation stops when it is full. */
  maxSeqLen: number;
  /** Token ids that end generation (not included in the output); default: the tokenizer's EOS. */
  stopIds?: readonly number[];
  /** Called with the text so far after each new token; returning true ends generation. */
  stop?: (text: string) => boolean;
}

/** What generation produced, with its timings. */
export interface Generation {
  ids: number[];
  text: string;
  stopReason: "eos" | "stop" | "max_tokens" | "context";
  promptTokens: number;
  /** Milliseconds of the prompt's forward pass. */
  prefillMs: number;
  /** Milliseconds from the start until the first new token was chosen. */
  firstTokenMs: number;
  /** Milliseconds of the single-token forward passes after the first token. */
  decodeMs: number;
  /** Single-token forward passes made (generated tokens after the first). */
  decodeSteps: number;
}

/** Generates greedily from `prompt` (which must not be empty). */
export async function greedyGenerate(
  runner: ModelRunner,
  tokenizer: Tokenizer,
  prompt: readonly number[],
  options: GenerateOptions,
): Promise<Generation> {
  if (prompt.length === 0) throw new RangeError("Generation needs a non-empty prompt");
  if (prompt.length >= options.maxSeqLen) {
    throw new ContextOverflowError(
      `Prompt of ${prompt.length} tokens leaves no room in the context of ${options.maxSeqLen}`,
    );
  }
  const stopIds = new Set(options.stopIds ?? [tokenizer.eosId]);
  const t0 = performance.now();
  runner.reset();
  let logits = await runner.forward(prompt, 0);
  const prefillMs = performance.now() - t0;
  let next = argmaxRow(logits, logits.length / prompt.length, prompt.length - 1);
  const firstTokenMs = performance.now() - t0;
  const ids: number[] = [];
  let text = "";
  let pos = prompt.length;
  let decodeMs = 0;
  let decodeSteps = 0;
  let stopReason: Generation["stopReason"];
  for (;;) {
    if (stopIds.has(next)) {
      stopReason = "eos";
      break;
    }
    ids.push(next);
    text = tokenizer.decode(ids);
    if (options.stop?.(text)) {
      stopReason = "stop";
      break;
    }
    if (ids.length >= options.maxTokens) {
      stopReason = "max_tokens";
      break;
    }
    if (pos >= options.maxSeqLen) {
      stopReason = "context";
      break;
    }
    const t = performance.now();
    logits = await runner.forward([next], pos++);
    next = argmaxRow(logits, logits.length, 0);
    decodeMs += performance.now() - t;
    decodeSteps++;
  }
  return {
    ids,
    text,
    stopReason,
    promptTokens: prompt.length,
    prefillMs,
    firstTokenMs,
    decodeMs,
    decodeSteps,
  };
}
