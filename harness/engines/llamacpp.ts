/**
 * The `llamacpp` engine: a GGUF file run by llama.cpp in this process, through the npm package
 * `node-llama-cpp` (pinned in deno.json) and its prebuilt CPU build (the optional dependency
 * `@node-llama-cpp/linux-x64`, which picks the ggml CPU variant for this processor at load time).
 * A suite names it as a backend (`backends: [llamacpp]`); cells of GGUF models run with
 * `method: none`, `format: native` (the file as it is, as `llama-perplexity -m FILE` runs it), and
 * other cells are skipped with the reason ({@linkcode llamaCppUnsupported}).
 *
 * Full next-token distributions come from llama.cpp's context: every position of a window is
 * decoded with its logits kept, and llama.cpp's sampler returns the softmax of all of them
 * (float32, as its own `llama_get_logits_ith` gives them); the engine hands tasks their natural
 * logarithm (log-probabilities are logits up to a constant, which every task removes). Tokens are
 * llama.cpp's tokenizer's, chat prompts the file's `tokenizer.chat_template` rendered as
 * quantbench renders every template, and generation and timings run llama.cpp's own generation
 * loop (`LlamaContextSequence.evaluate` with its greedy sampler).
 *
 * The context is created with {@linkcode LLAMACPP_CONTEXT} tokens (or the model's trained
 * context, if longer), an f16 KV cache, flash attention off and {@linkcode LLAMACPP_THREADS}
 * threads; all of it, with the package and llama.cpp versions and the CPU build, is the engine's
 * id, so results of another setting never share a cache entry.
 *
 * @module
 */
import { join } from "node:path";
import type { ChatMessage, LlamaModel, Tokenizer } from "../../core/model.ts";
import type { Cell } from "../../core/suite_types.ts";
import type { ModelRunner } from "../../kernels/backend.ts";
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
} from "./engine.ts";
import { GenerationState } from "./generate.ts";
import { InProcessEngine } from "./in_process.ts";
import { modelBytes } from "./model_bytes.ts";
import { chatPrompt } from "./chat.ts";
import { ggufFormatUnsupported, ggufModel } from "../models/writers/gguf_map.ts";
import { writeGguf } from "../models/writers/gguf.ts";

/** The pinned node-llama-cpp version (deno.json's import). */
export const NODE_LLAMA_CPP_VERSION = "3.21.1";
/** Tokens of the llama.cpp context (llama.cpp's usual `-c 4096`); a longer trained context wins. */
export const LLAMACPP_CONTEXT = 4096;
/** CPU threads llama.cpp computes with (`-t`). */
export const LLAMACPP_THREADS = 2;
/** The KV cache type (llama.cpp's default, `-ctk f16 -ctv f16`). */
export const LLAMACPP_KV_TYPE = "f16";

/** The backend name a suite gives this engine. */
export const LLAMACPP_BACKEND = "llamacpp";

/** Thrown when llama.cpp cannot be loaded or cannot run a file. */
export class LlamaCppError extends Error {
  override name = "LlamaCppError";
}

// deno-lint-ignore no-explicit-any
type Nlc = any;

let llamaPromise: Promise<{ mod: Nlc; llama: Nlc }> | undefined;

/** node-llama-cpp and its CPU build, loaded once per process. */
function loadLlama(): Promise<{ mod: Nlc; llama: Nlc }> {
  llamaPromise ??= (async () => {
    let mod: Nlc;
    try {
      mod = await import("node-llama-cpp");
    } catch (e) {
      throw new LlamaCppError(
        `Cannot load npm:node-llama-cpp@${NODE_LLAMA_CPP_VERSION} (run with --allow-ffi; ` +
          `\`deno cache main.ts\` installs it)`,
        { cause: e },
      );
    }
    try {
      const llama = await mod.getLlama({
        gpu: false,
        build: "never",
        logLevel: mod.LlamaLogLevel.error,
        logger: () => {},
        maxThreads: LLAMACPP_THREADS,
      });
      return { mod, llama };
    } catch (e) {
      throw new LlamaCppError(
        `node-llama-cpp@${NODE_LLAMA_CPP_VERSION} found no prebuilt CPU binary for ` +
          `${Deno.build.os}-${Deno.build.arch} (the optional npm dependency ` +
          `@node-llama-cpp/${Deno.build.os}-${Deno.build.arch === "x86_64" ? "x64" : "arm64"})`,
        { cause: e },
      );
    }
  })();
  llamaPromise.catch(() => llamaPromise = undefined);
  return llamaPromise;
}

/** Why llama.cpp is unavailable here, or undefined when it loads. */
export async function llamaCppUnavailable(): Promise<string | undefined> {
  try {
    await loadLlama();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * The identity of the engine: package and llama.cpp versions, build, threads, KV cache type and
 * flash attention (the `ctx` part is the context size when it differs from the default).
 */
export function llamaCppEngineId(build = "cpu-prebuilt"): string {
  return `llamacpp/node-llama-cpp@${NODE_LLAMA_CPP_VERSION}/llama.cpp@${llamaCppRelease()}` +
    `/${build}/threads=${LLAMACPP_THREADS}/kv=${LLAMACPP_KV_TYPE}/fa=off`;
}

/** The llama.cpp release node-llama-cpp's prebuilt binaries were built from. */
function llamaCppRelease(): string {
  return LLAMA_CPP_RELEASE;
}

/**
 * The llama.cpp release of node-llama-cpp 3.21.1's prebuilt binaries
 * (`llama/llama.cpp.info.json` in the package: `ggml-org/llama.cpp` tag `v0.4.0`).
 */
export const LLAMA_CPP_RELEASE = "v0.4.0";

/**
 * Why a cell cannot run on llama.cpp, or undefined when it can: a GGUF file run as stored
 * (`method: none`, `format: native`), or any cell whose quantized weights have a ggml type that
 * decodes to the same numbers (it is exported to a GGUF file on the fly, as `deno task quantize`
 * writes it). Run-time activation or KV-cache quantization is quantbench's own: llama.cpp rounds
 * its own way.
 */
export function llamaCppUnsupported(
  cell: Pick<Cell, "model" | "method" | "format">,
): string | undefined {
  const runtime = Object.keys(cell.format.options).filter((k) => k !== "scale_dtype");
  if (runtime.length > 0) {
    return `llamacpp rounds activations and its KV cache its own way; format ` +
      `"${cell.format.id}" sets ${runtime.join(", ")} (quantbench's run-time quantization)`;
  }
  if (storedGguf(cell)) return undefined;
  if (cell.format.weights === "native") {
    return `llamacpp runs GGUF files; model "${cell.model.id}" is not one (${cell.model.path}): ` +
      `give it a format (f32, or one with a ggml type) to export it on the fly`;
  }
  const why = ggufFormatUnsupported(cell.format.weights, cell.format);
  return why === undefined
    ? undefined
    : `llamacpp runs GGUF files, and format "${cell.format.id}" has no ggml type: ${why}`;
}

/** Whether a cell is a GGUF file run as stored (no export needed). */
function storedGguf(cell: Pick<Cell, "model" | "method" | "format">): boolean {
  return /\.gguf$/i.test(cell.model.path) && cell.method.method === "none" &&
    cell.format.weights === "native";
}

/**
 * Opens a cell on llama.cpp: its GGUF file as stored, or its quantized `model` exported to a
 * temporary GGUF file (removed when the engine is disposed).
 */
export async function openLlamaCppCell(model: LlamaModel, cell: Cell): Promise<LlamaCppEngine> {
  const why = llamaCppUnsupported(cell);
  if (why) throw new LlamaCppError(why);
  if (storedGguf(cell)) return await LlamaCppEngine.open(cell.model.path, model);
  const dir = await Deno.makeTempDir({ prefix: "quantbench-llamacpp-" });
  const path = join(dir, "model.gguf");
  try {
    await writeGguf(ggufModel(model), path, {
      name: `${cell.model.id} ${cell.method.id} ${cell.format.id}`,
    });
    return await LlamaCppEngine.open(path, model, { onDispose: () => removeQuietly(dir) });
  } catch (e) {
    removeQuietly(dir);
    throw e;
  }
}

function removeQuietly(dir: string): void {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // Already gone: nothing to clean up.
  }
}

/** Options of {@linkcode LlamaCppEngine.open}. */
export interface LlamaCppOpenOptions {
  /** Context tokens (default {@linkcode LLAMACPP_CONTEXT}, or the trained context if longer). */
  contextSize?: number;
  /** Called once the engine has released the file (e.g. to remove a temporary export). */
  onDispose?: () => void;
}

/**
 * A {@linkcode ModelRunner} over a llama.cpp context sequence: `forward` decodes tokens into the
 * sequence's KV cache with every position's logits kept and returns them as log-probabilities.
 */
class LlamaCppRunner implements ModelRunner {
  readonly #sequence: Nlc;
  readonly #vocab: number;
  readonly #contextSize: number;
  #pos = 0;
  /** A `clearHistory` still under way (node-llama-cpp's is asynchronous). */
  #clearing: Promise<void> = Promise.resolve();

  constructor(sequence: Nlc, vocab: number, contextSize: number) {
    this.#sequence = sequence;
    this.#vocab = vocab;
    this.#contextSize = contextSize;
  }

  /** node-llama-cpp would shift the context (drop old tokens) past its end: refuse instead. */
  #fits(pos: number, count: number): void {
    if (pos + count > this.#contextSize) {
      throw new RangeError(
        `Context ${pos + count} exceeds the llama.cpp context of ${this.#contextSize} tokens`,
      );
    }
  }

  async forward(tokens: ArrayLike<number>, pos: number): Promise<Float32Array> {
    if (pos !== this.#pos) {
      throw new RangeError(`llama.cpp runner is at position ${this.#pos}, asked for ${pos}`);
    }
    this.#fits(pos, tokens.length);
    await this.#clearing;
    const V = this.#vocab;
    const input = Array.from(
      tokens,
      (t) => [t, { generateNext: { probabilities: true, options: { temperature: 0 } } }],
    );
    const results: Nlc[] = await this.#sequence.controlledEvaluate(input);
    this.#pos += tokens.length;
    const out = new Float32Array(tokens.length * V).fill(MIN_LOGPROB);
    for (let t = 0; t < tokens.length; t++) {
      const probabilities: Map<number, number> | undefined = results[t]?.next?.probabilities;
      if (!probabilities) {
        throw new LlamaCppError(`llama.cpp returned no distribution at position ${pos + t}`);
      }
      const row = t * V;
      for (const [id, p] of probabilities) {
        if (p > 0) out[row + id] = Math.log(p);
      }
    }
    return out;
  }

  /**
   * Greedy tokens after `prompt` from llama.cpp's own generation loop (its greedy sampler, one
   * decode call per token, EOS yielded like any token); the caller stops by returning.
   */
  async *greedy(prompt: readonly number[]): AsyncGenerator<number> {
    this.#fits(0, prompt.length);
    await this.#clearing;
    this.#pos = prompt.length;
    const tokens = this.#sequence.evaluate([...prompt], { temperature: 0, yieldEogToken: true });
    for await (const token of tokens) {
      yield token as number;
      this.#fits(this.#pos++, 1);
    }
  }

  reset(): void {
    // clearHistory is asynchronous in node-llama-cpp: the next evaluation waits for it.
    this.#clearing = this.#sequence.clearHistory();
    this.#pos = 0;
  }

  dispose(): void {}
}

/** ln of the smallest positive float32: where a probability that underflowed to 0 is put. */
const MIN_LOGPROB = Math.log(1.401298464324817e-45);

/**
 * llama.cpp's tokenizer in quantbench's {@linkcode Tokenizer} shape (the chat template is the
 * GGUF's own, rendered by quantbench's template renderer).
 */
function llamaCppTokenizer(model: Nlc, base: Tokenizer): Tokenizer {
  const special = (name: string) => {
    const id = model.tokens[name];
    return typeof id === "number" ? id : -1;
  };
  return {
    vocabSize: base.vocabSize,
    bosId: special("bos"),
    eosId: special("eos"),
    addBos: model.tokens.shouldPrependBosToken,
    addEos: base.addEos,
    chat: base.chat,
    vocab: base.vocab,
    encode: (text: string) => Array.from(model.tokenize(text, false) as number[]),
    decode: (ids: readonly number[]) => model.detokenize([...ids], false) as string,
  };
}

/** The llama.cpp engine over one GGUF file. */
export class LlamaCppEngine implements Engine {
  readonly #inner: InProcessEngine;
  readonly #runner: LlamaCppRunner;
  readonly #tokenizer: Tokenizer;
  readonly #info: EngineInfo;
  readonly #dispose: () => void;

  private constructor(
    inner: InProcessEngine,
    runner: LlamaCppRunner,
    tokenizer: Tokenizer,
    info: EngineInfo,
    dispose: () => void,
  ) {
    this.#inner = inner;
    this.#runner = runner;
    this.#tokenizer = tokenizer;
    this.#info = info;
    this.#dispose = dispose;
  }

  /**
   * Opens `path` in llama.cpp. `model` is the same file as quantbench loaded it (its tokenizer's
   * chat template, its size for `decode_gb_per_s`).
   */
  static async open(
    path: string,
    model: LlamaModel,
    options: LlamaCppOpenOptions = {},
  ): Promise<LlamaCppEngine> {
    const { llama } = await loadLlama();
    let nlcModel: Nlc;
    try {
      nlcModel = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    } catch (e) {
      throw new LlamaCppError(`llama.cpp cannot load GGUF file ${path}`, { cause: e });
    }
    const trained: number = nlcModel.trainContextSize;
    const contextSize = options.contextSize ?? Math.max(LLAMACPP_CONTEXT, trained);
    let context: Nlc;
    try {
      context = await nlcModel.createContext({
        contextSize,
        batchSize: Math.min(512, contextSize),
        threads: LLAMACPP_THREADS,
        flashAttention: false,
      });
    } catch (e) {
      await nlcModel.dispose();
      throw new LlamaCppError(`llama.cpp cannot create a context of ${contextSize} for ${path}`, {
        cause: e,
      });
    }
    const vocab = model.config.vocabSize;
    const runner = new LlamaCppRunner(context.getSequence(), vocab, context.contextSize);
    const tokenizer = llamaCppTokenizer(nlcModel, model.tokenizer);
    const viewed: LlamaModel = {
      ...model,
      config: { ...model.config, maxSeqLen: context.contextSize },
      tokenizer,
    };
    const inner = new InProcessEngine(viewed, runner, LLAMACPP_BACKEND);
    const build = String(llama.buildType ?? "prebuilt") === "prebuilt"
      ? "cpu-prebuilt"
      : "cpu-local";
    const info: EngineInfo = {
      ...inner.info(),
      id: llamaCppEngineId(build) + (contextSize === LLAMACPP_CONTEXT ? "" : `/ctx=${contextSize}`),
      maxSeqLen: context.contextSize,
      trainedSeqLen: trained,
      weightBytes: modelBytes(model),
      fallbacks: [],
      details: {
        engine: "llamacpp",
        node_llama_cpp: NODE_LLAMA_CPP_VERSION,
        llama_cpp: LLAMA_CPP_RELEASE,
        build,
        cpu: String(llama.systemInfo ?? "").trim(),
        threads: LLAMACPP_THREADS,
        context: context.contextSize,
        batch: context.batchSize,
        kv_type: LLAMACPP_KV_TYPE,
        flash_attention: false,
      },
    };
    const dispose = () => {
      void context.dispose().then(() => nlcModel.dispose()).finally(() => options.onDispose?.());
    };
    return new LlamaCppEngine(inner, runner, tokenizer, info, dispose);
  }

  info(): EngineInfo {
    return this.#info;
  }

  tokenize(text: string): number[] {
    return this.#tokenizer.encode(text);
  }

  detokenize(ids: readonly number[]): string {
    return this.#tokenizer.decode(ids);
  }

  chat(messages: readonly ChatMessage[], tools?: readonly unknown[]): ChatPrompt {
    return chatPrompt(this.#tokenizer, messages, tools);
  }

  loglikelihood(requests: readonly LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    return this.#inner.loglikelihood(requests);
  }

  loglikelihoodRolling(requests: readonly RollingRequest[]): Promise<RollingResult[]> {
    return this.#inner.loglikelihoodRolling(requests);
  }

  async generateUntil(requests: readonly GenerateRequest[]): Promise<Generation[]> {
    const out: Generation[] = [];
    for (const request of requests) out.push(await this.#generate(request));
    return out;
  }

  /** Greedy generation on llama.cpp's loop, with the in-process engine's stopping rules. */
  async #generate(request: GenerateRequest): Promise<Generation> {
    const { prompt } = request;
    const state = new GenerationState(
      this.#tokenizer,
      request,
      this.#info.maxSeqLen,
      this.#info.eosId,
    );
    this.#runner.reset();
    const t0 = performance.now();
    const tokens = this.#runner.greedy(prompt);
    try {
      let step = await tokens.next();
      // The first token is sampled inside the prompt's decode call.
      const prefillMs = performance.now() - t0;
      let pos = prompt.length;
      let decodeMs = 0;
      let decodeSteps = 0;
      let stopReason: Generation["stopReason"] | undefined;
      for (;;) {
        if (step.done) throw new LlamaCppError("llama.cpp ended generation without a token");
        stopReason = state.accept(step.value, pos);
        if (stopReason !== undefined) break;
        const t = performance.now();
        step = await tokens.next();
        pos++;
        decodeMs += performance.now() - t;
        decodeSteps++;
      }
      return {
        ids: state.ids,
        text: state.text,
        stopReason: stopReason!,
        promptTokens: prompt.length,
        prefillMs,
        firstTokenMs: prefillMs,
        decodeMs,
        decodeSteps,
      };
    } finally {
      await tokens.return(undefined);
    }
  }

  logits(input: readonly number[]): Promise<Float32Array> {
    return this.#inner.logits(input);
  }

  /**
   * A `llama-bench`-style run on llama.cpp's greedy sampler: one decode call for the prompt, then
   * one per new token (no distribution is copied out, as llama-bench copies none).
   */
  async timeGeneration(request: TimingRequest): Promise<GenerationTiming> {
    const { prompt, newTokens } = request;
    this.#runner.reset();
    const t0 = performance.now();
    const tokens = this.#runner.greedy(prompt);
    try {
      await tokens.next();
      const t1 = performance.now();
      for (let g = 0; g < newTokens; g++) await tokens.next();
      const t2 = performance.now();
      // Sampling happens inside the decode call here, so the first token's time is the prefill's.
      return { prefillMs: t1 - t0, firstTokenMs: t1 - t0, decodeMs: t2 - t1 };
    } finally {
      await tokens.return(undefined);
    }
  }

  dispose(): void {
    this.#dispose();
  }
}
