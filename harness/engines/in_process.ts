/**
 * The in-process engine: a {@linkcode LlamaModel} loaded onto one of this program's backends (CPU
 * or WebGPU), answering every request with forward passes of its {@linkcode ModelRunner}. It has
 * every capability: full logits, generation, timing of its kernels, the weights' size.
 *
 * @module
 */
import type { ChatMessage, LlamaModel, Tokenizer } from "../../core/model.ts";
import type { ModelRunner } from "../../kernels/backend.ts";
import { backends } from "../../kernels/registry.ts";
import type {
  ChatPrompt,
  Engine,
  EngineInfo,
  GenerateRequest,
  Generation,
  GenerationTiming,
  LoglikelihoodRequest,
  LoglikelihoodResult,
  RollingRequest,
  RollingResult,
  TimingRequest,
  TokenWindow,
} from "./engine.ts";
import { chatPrompt } from "./chat.ts";
import { greedyGenerate, timeGeneration } from "./generate.ts";
import { modelBytes } from "./model_bytes.ts";
import { argmaxRow, tokenNll } from "../tasks/nll.ts";
import { rollingWindows } from "../tasks/windows.ts";

/** The id of the in-process engine on a backend (see {@linkcode EngineInfo.id}). */
export function inProcessEngineId(backend: string): string {
  return `in_process/${backend}`;
}

/**
 * The context a GGUF model runs with when its `context_length` is shorter (llama.cpp's usual
 * `-c 4096`): longer requests than the trained context run, with a warning, as llama.cpp runs them.
 */
export const EXTENDED_CONTEXT = 4096;

/** The context a runner for `config` is built for (see {@linkcode EXTENDED_CONTEXT}). */
export function runnerSeqLen(config: LlamaModel["config"]): number {
  return config.extendableContext ? Math.max(config.maxSeqLen, EXTENDED_CONTEXT) : config.maxSeqLen;
}

/** Most windows scored in one `forwardScoresMany` call (their scores are read back together). */
const SCORE_BATCH = 16;

/** Thrown for a log-likelihood request that scores nothing. */
export class EmptyContinuationError extends Error {
  override name = "EmptyContinuationError";
}

/**
 * lm-evaluation-harness's encoding of a (context, continuation) pair: the continuation is what the
 * whole text encodes to after the context's tokens; BOS goes first when the tokenizer adds one or
 * the context is empty.
 */
export function textWindow(
  tokenizer: Tokenizer,
  pair: { context: string; continuation: string },
): TokenWindow {
  const context = tokenizer.encode(pair.context);
  const continuation = tokenizer.encode(pair.context + pair.continuation).slice(context.length);
  if (continuation.length === 0) {
    throw new EmptyContinuationError(
      `Continuation ${JSON.stringify(pair.continuation)} after ${
        JSON.stringify(pair.context)
      } encodes to no tokens`,
    );
  }
  const prefix = tokenizer.addBos !== false || context.length === 0 ? [tokenizer.bosId] : [];
  const all = [...prefix, ...context, ...continuation];
  return {
    input: all.slice(0, -1),
    offset: prefix.length + context.length - 1,
    targets: continuation,
  };
}

/** An engine over a model and its runner on a backend of this process. */
export class InProcessEngine implements Engine {
  readonly #model: LlamaModel;
  readonly #runner: ModelRunner;
  readonly #info: EngineInfo;
  /** The runner's device copy bandwidth, where it measures one. */
  readonly copyBandwidth?: (bytes: number) => Promise<number>;

  /**
   * `backend` names the backend the runner belongs to (for the engine's id); `maxSeqLen` is the
   * context the runner was built for (default: the model's).
   */
  constructor(
    model: LlamaModel,
    runner: ModelRunner,
    backend: string,
    maxSeqLen = model.config.maxSeqLen,
  ) {
    this.#model = model;
    this.#runner = runner;
    const { config, tokenizer } = model;
    this.#info = {
      id: inProcessEngineId(backend),
      vocabSize: config.vocabSize,
      maxSeqLen,
      ...(maxSeqLen > config.maxSeqLen ? { trainedSeqLen: config.maxSeqLen } : {}),
      bosId: tokenizer.bosId,
      eosId: tokenizer.eosId,
      addBos: tokenizer.addBos,
      loglikelihood: true,
      distributions: { kind: "full" },
      generation: true,
      chatTemplate: tokenizer.chat !== undefined,
      timing: true,
      weightBytes: modelBytes(model),
      // The WebGPU runner lists the matrices it decoded to f32 on load.
      fallbacks: [...(runner.fallbackFormats ?? [])],
      ...(runner.kvCacheBytes === undefined ? {} : { kvCacheBytes: runner.kvCacheBytes }),
    };
    if (runner.copyBandwidth) {
      // Only WebGPU measures a copy. A float32 KV cache holds each position's keys and values
      // over all layers; a quantized one reads codes and sides for old positions and floats for
      // the residual window, bytes the bound leaves out (such cells get none).
      if (!model.runtime?.kvCache) {
        this.#info.kvBytesPerPosition = config.nLayers * 2 * config.nKvHeads * config.headDim * 4;
      }
      this.copyBandwidth = (bytes) => runner.copyBandwidth!(bytes);
    }
  }

  /** Loads `model` onto the named backend. */
  static async load(model: LlamaModel, backend: string): Promise<InProcessEngine> {
    const maxSeqLen = runnerSeqLen(model.config);
    const runner = maxSeqLen === model.config.maxSeqLen
      ? await backends.get(backend).load(model)
      : await backends.get(backend).load(model, { maxSeqLen });
    return new InProcessEngine(model, runner, backend, maxSeqLen);
  }

  info(): EngineInfo {
    return this.#info;
  }

  tokenize(text: string): number[] {
    return this.#model.tokenizer.encode(text);
  }

  detokenize(ids: readonly number[]): string {
    return this.#model.tokenizer.decode(ids);
  }

  chat(messages: readonly ChatMessage[], tools?: readonly unknown[]): ChatPrompt {
    return chatPrompt(this.#model.tokenizer, messages, tools);
  }

  async loglikelihood(requests: readonly LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    const windows = requests.map((request) =>
      "input" in request ? request : textWindow(this.#model.tokenizer, request)
    );
    const out: LoglikelihoodResult[] = [];
    for (const { nll, greedy } of await this.#scoreAll(windows)) {
      const tokenLogprobs = nll.map((v) => -v);
      out.push({
        logprob: tokenLogprobs.reduce((a, b) => a + b, 0),
        isGreedy: greedy.every((g) => g),
        tokenLogprobs,
      });
    }
    return out;
  }

  /**
   * {@linkcode #score} of each window (with the greedy flags): where the runner scores many
   * windows back to back (`forwardScoresMany`), up to {@linkcode SCORE_BATCH} to a call, so the
   * device does not wait for the host between windows; the numbers are those of one at a time.
   */
  async #scoreAll(
    windows: readonly TokenWindow[],
  ): Promise<{ nll: number[]; greedy: boolean[] }[]> {
    const runner = this.#runner;
    const out: { nll: number[]; greedy: boolean[] }[] = [];
    if (!runner.forwardScoresMany) {
      for (const window of windows) out.push(await this.#score(window, true));
      return out;
    }
    for (let start = 0; start < windows.length; start += SCORE_BATCH) {
      const batch = windows.slice(start, start + SCORE_BATCH);
      const rows = batch.map((w) => w.targets.map((_, k) => w.offset + k));
      const scores = await runner.forwardScoresMany(batch.map((w, i) => {
        const targets = new Int32Array(w.input.length).fill(-1);
        w.targets.forEach((target, k) => (targets[rows[i]![k]!] = target));
        return { tokens: w.input, targets };
      }));
      scores.forEach((s, i) => {
        const { targets } = batch[i]!;
        out.push({
          nll: rows[i]!.map((row) => s.nll[row]!),
          greedy: rows[i]!.map((row, k) => s.argmax[row] === targets[k]),
        });
      });
    }
    return out;
  }

  async loglikelihoodRolling(requests: readonly RollingRequest[]): Promise<RollingResult[]> {
    const { tokenizer } = this.#model;
    const out: RollingResult[] = [];
    for (const { text, maxLength } of requests) {
      const tokens = tokenizer.encode(text);
      let logprob = 0;
      let windows = 0;
      for (const window of rollingWindows(tokens, tokenizer.bosId, maxLength)) {
        for (const v of (await this.#score(window, false)).nll) logprob -= v;
        windows++;
      }
      out.push({ logprob, tokens: tokens.length, windows });
    }
    return out;
  }

  /**
   * The NLL of each target of a window from one forward pass from position 0, and (with
   * `wantGreedy`) whether each is its row's argmax: scored by the runner where it can
   * (`forwardScores`, no logits read back), else from the logits on the host.
   */
  async #score(
    window: TokenWindow,
    wantGreedy: boolean,
  ): Promise<{ nll: number[]; greedy: boolean[] }> {
    const vocab = this.#model.config.vocabSize;
    const rows = window.targets.map((_, k) => window.offset + k);
    this.#runner.reset();
    if (this.#runner.forwardScores) {
      const targets = new Int32Array(window.input.length).fill(-1);
      window.targets.forEach((target, k) => (targets[rows[k]!] = target));
      const scores = await this.#runner.forwardScores(window.input, 0, targets);
      return {
        nll: rows.map((row) => scores.nll[row]!),
        greedy: rows.map((row, k) => scores.argmax[row] === window.targets[k]),
      };
    }
    const logits = await this.#runner.forward(window.input, 0);
    return {
      nll: rows.map((row, k) => tokenNll(logits, vocab, row, window.targets[k]!)),
      greedy: wantGreedy
        ? rows.map((row, k) => argmaxRow(logits, vocab, row) === window.targets[k])
        : [],
    };
  }

  async generateUntil(requests: readonly GenerateRequest[]): Promise<Generation[]> {
    const out: Generation[] = [];
    for (const request of requests) {
      out.push(
        await greedyGenerate(
          this.#runner,
          this.#model.tokenizer,
          request,
          this.#info.maxSeqLen,
        ),
      );
    }
    return out;
  }

  logits(input: readonly number[]): Promise<Float32Array> {
    this.#runner.reset();
    return this.#runner.forward(input, 0);
  }

  timeGeneration(request: TimingRequest): Promise<GenerationTiming> {
    return timeGeneration(this.#runner, request);
  }

  dispose(): void {
    this.#runner.dispose();
  }
}
