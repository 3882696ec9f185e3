/**
 * The seam between tasks and whatever computes model outputs, modelled on lm-evaluation-harness's
 * `LM` class: tasks ask for log-likelihoods (`loglikelihood`, `loglikelihoodRolling`), greedy
 * generations (`generateUntil`), full next-token distributions (`logits`), timed generation
 * (`timeGeneration`) and tokenization (`tokenize`, `detokenize`, `chat`), and never see a model or
 * a backend. {@linkcode EngineInfo} says what an engine can do; a task declares what it
 * {@linkcode Need}s, and a cell whose engine lacks it is skipped with {@linkcode unmetNeed}'s
 * reason. An engine asked for something it cannot do throws {@linkcode MissingCapabilityError}.
 *
 * Every request starts from an empty context (no state carries over between calls).
 *
 * @module
 */
import type { ChatMessage } from "../../core/model.ts";

/**
 * A token-level log-likelihood request: `input` is fed from position 0 and the distribution after
 * `input[offset + k]` scores `targets[k]`. lm-evaluation-harness's (context, continuation) is
 * `input = (context ++ continuation)[:-1]`, `offset = |context| − 1`, `targets = continuation`;
 * a window may also feed tokens after its last scored position (as fixed-size perplexity windows
 * do), so that the model call is the same as the protocol's.
 */
export interface TokenWindow {
  input: number[];
  offset: number;
  targets: number[];
}

/** lm-evaluation-harness's string request: the log-probability of `continuation` after `context`. */
export interface TextPair {
  context: string;
  continuation: string;
}

/** A log-likelihood request: tokens ({@linkcode TokenWindow}) or text ({@linkcode TextPair}). */
export type LoglikelihoodRequest = TokenWindow | TextPair;

/** The answer to one {@linkcode LoglikelihoodRequest}. */
export interface LoglikelihoodResult {
  /** Σ of `tokenLogprobs` (nats). */
  logprob: number;
  /** Whether every target is the most likely token at its position (the first on ties). */
  isGreedy: boolean;
  /** ln p of each target token given what precedes it. */
  tokenLogprobs: number[];
}

/**
 * A `loglikelihood_rolling` request: a whole document scored token by token, every token once, in
 * windows of at most `maxLength` tokens (lm-evaluation-harness's rolling windows with the BOS
 * token as prefix).
 */
export interface RollingRequest {
  text: string;
  maxLength: number;
}

/** The answer to one {@linkcode RollingRequest}. */
export interface RollingResult {
  /** Σ ln p over the document's tokens, accumulated token by token. */
  logprob: number;
  /** Tokens scored (the document's token count). */
  tokens: number;
  /** Model calls made. */
  windows: number;
}

/** A greedy generation request (`generate_until`). */
export interface GenerateRequest {
  /** Prompt token ids (e.g. from {@linkcode Engine.chat}); must not be empty. */
  prompt: readonly number[];
  /** At most this many new tokens. */
  maxTokens: number;
  /**
   * Strings that end generation, as lm-evaluation-harness's `until`: generation stops once the
   * text contains one, and the returned text is cut before the first occurrence.
   */
  until?: readonly string[];
  /** Called with the text so far after each new token; returning true ends generation. */
  stop?: (text: string) => boolean;
  /** Token ids that end generation (not included); default: the tokenizer's EOS. */
  stopIds?: readonly number[];
}

/** What one generation produced, with its timings. */
export interface Generation {
  ids: number[];
  text: string;
  stopReason: "eos" | "until" | "stop" | "max_tokens" | "context";
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

/**
 * A timed run as `llama-bench` makes one: the prompt in one pass, the greedy first token, then
 * `newTokens` single-token passes, each greedy choice fed back (EOS does not stop it).
 */
export interface TimingRequest {
  prompt: readonly number[];
  newTokens: number;
}

/** Milliseconds of a {@linkcode TimingRequest}'s phases. */
export interface GenerationTiming {
  /** The prompt's forward pass. */
  prefillMs: number;
  /** From the start until the first new token was chosen. */
  firstTokenMs: number;
  /** The `newTokens` single-token passes. */
  decodeMs: number;
}

/** A rendered chat prompt and how it was made. */
export interface ChatPrompt {
  text: string;
  ids: number[];
  /** `template` (the model's) or `fallback` (see `chat.ts`). */
  source: "template" | "fallback";
}

/** What an engine is and can do. */
export interface EngineInfo {
  /**
   * Identifies the engine and what it runs (e.g. `in_process/cpu`), for details and for keys of
   * cached results.
   */
  id: string;
  vocabSize: number;
  /** The longest context the engine accepts. */
  maxSeqLen: number;
  /**
   * The context the model was trained for, where the engine accepts longer ones (as llama.cpp
   * runs a GGUF past its `context_length`): a longer request runs with a warning.
   */
  trainedSeqLen?: number;
  bosId: number;
  eosId: number;
  /** Whether sequences start with BOS (absent: unknown, taken as yes). */
  addBos?: boolean;
  /** Whether {@linkcode Engine.loglikelihood} and `loglikelihoodRolling` work. */
  loglikelihood: boolean;
  /**
   * The next-token distributions it gives: every logit ({@linkcode Engine.logits}), or only the
   * top `k` log-probabilities per position (as completion APIs do).
   */
  distributions: { kind: "full" } | { kind: "top_k"; k: number };
  /** Whether {@linkcode Engine.generateUntil} works (greedy decoding). */
  generation: boolean;
  /** Whether {@linkcode Engine.chat} renders the model's own template (else the fallback format). */
  chatTemplate: boolean;
  /** Whether {@linkcode Engine.timeGeneration} measures this machine's kernels. */
  timing: boolean;
  /** Bytes of the weights: all of them, and those one decoded token reads; absent when unknown. */
  weightBytes?: { total: number; perToken: number };
  /**
   * Bytes of keys and values one cached position holds over all layers, given where the engine
   * also measures its device's copy bandwidth ({@linkcode Engine.copyBandwidth}).
   */
  kvBytesPerPosition?: number;
  /**
   * Bytes the engine's KV cache buffers take over all layers at its `maxSeqLen`, as allocated
   * (`ModelRunner.kvCacheBytes`); absent where unknown.
   */
  kvCacheBytes?: number;
  /** Weight formats this engine runs decoded to f32 (no kernel for them here), by name. */
  fallbacks: string[];
  /** The engine's identity field by field (versions, build, threads …), for results.json. */
  details?: Record<string, string | number | boolean>;
}

/** Something a task needs of its engine. */
export type Need =
  | "loglikelihood"
  | "full_distributions"
  | "generation"
  | "timing"
  | "weight_bytes";

/** Thrown when an engine is asked for something it cannot do. */
export class MissingCapabilityError extends Error {
  override name = "MissingCapabilityError";
}

/** Thrown when a prompt leaves no room to generate within the model's context. */
export class ContextOverflowError extends Error {
  override name = "ContextOverflowError";
}

/** A way to obtain model outputs. Requests are answered in order, one result per request. */
export interface Engine {
  info(): EngineInfo;
  /** Encodes text without special tokens. */
  tokenize(text: string): number[];
  detokenize(ids: readonly number[]): string;
  /** Renders messages (and tools) for generation and encodes them. */
  chat(messages: readonly ChatMessage[], tools?: readonly unknown[]): ChatPrompt;
  loglikelihood(requests: readonly LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]>;
  loglikelihoodRolling(requests: readonly RollingRequest[]): Promise<RollingResult[]>;
  /** Greedy generations; a prompt with no room left throws {@linkcode ContextOverflowError}. */
  generateUntil(requests: readonly GenerateRequest[]): Promise<Generation[]>;
  /** Logits `[input.length][vocabSize]` of `input` fed from position 0. */
  logits(input: readonly number[]): Promise<Float32Array>;
  timeGeneration(request: TimingRequest): Promise<GenerationTiming>;
  /**
   * GB/s (bytes read + written) of a copy of `bytes` on the engine's device, measured now (the
   * bandwidth bound of decoding); absent where the engine cannot measure it.
   */
  copyBandwidth?(bytes: number): Promise<number>;
  /** Frees resources. */
  dispose(): void;
}

/**
 * Why an engine cannot serve a task's needs, or undefined when it can.
 *
 * @example
 * ```ts
 * unmetNeed(["full_distributions"], engine.info());
 * // 'needs full next-token distributions; engine "top_k(in_process/cpu)" gives the top 5 …'
 * ```
 */
export function unmetNeed(needs: readonly Need[], info: EngineInfo): string | undefined {
  const engine = `engine "${info.id}"`;
  for (const need of needs) {
    if (need === "full_distributions" && info.distributions.kind !== "full") {
      return `needs full next-token distributions; ${engine} gives the top ` +
        `${info.distributions.k} log-probabilities only`;
    }
    if (need === "loglikelihood" && !info.loglikelihood) {
      return `needs log-likelihoods; ${engine} gives none`;
    }
    if (need === "generation" && !info.generation) return `needs generation; ${engine} has none`;
    if (need === "timing" && !info.timing) {
      return `needs timed generation; ${engine} does not time its kernels`;
    }
    if (need === "weight_bytes" && info.weightBytes === undefined) {
      return `needs the weights' size; ${engine} does not know it`;
    }
  }
  return undefined;
}
