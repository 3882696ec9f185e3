/**
 * The `openai` engine: a model served by any OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp's
 * server, TGI, `deno task serve`), asked over HTTP. Tokenization and the chat template are the
 * local model folder's (they must match the server's model); prompts go to the server as token
 * ids, so both sides score the same tokens.
 *
 * - Log-likelihoods: `/v1/completions` with `echo` and `logprobs` (`max_tokens: 1`, temperature 0),
 *   as lm-evaluation-harness's `local-completions` asks; with `prompt_logprobs: true`, vLLM's
 *   `prompt_logprobs` instead. Only the top `top_logprobs` alternatives come back per position,
 *   so {@linkcode EngineInfo.distributions} is `top_k` and tasks needing full distributions (kld)
 *   are skipped with the reason.
 * - Generation: prompts made by {@linkcode OpenAIEngine.chat} go to `/v1/chat/completions` with
 *   their messages and `tools` (the answer's text, or its tool calls as a JSON list, is what the
 *   task decodes); other prompts to `/v1/completions`. Decoding is greedy (temperature 0); a
 *   task's `stop` test is applied to the returned tokens here, token by token, as in process.
 * - Every response is cached on disk under `<cache dir>/openai/`, keyed by the URL and request
 *   body, so a killed run resumes without asking again. At most `max_concurrency` requests run at
 *   once, each limited to `timeout_s`; 429 and 5xx answers and dropped connections are retried
 *   `retries` times with exponential backoff (honouring `Retry-After`).
 * - The API key is read from the environment variable `api_key_env` names, and never written to
 *   results, the cache, logs or error messages.
 *
 * @module
 */
import { join } from "node:path";
import type { ChatMessage, LlamaModel } from "../../core/model.ts";
import { writeFileAtomic } from "../../core/atomic.ts";
import type { EngineSpec } from "../../core/suite_types.ts";
import {
  type ChatPrompt,
  ContextOverflowError,
  type Engine,
  type EngineInfo,
  type GenerateRequest,
  type Generation,
  type GenerationTiming,
  type LoglikelihoodRequest,
  type LoglikelihoodResult,
  MissingCapabilityError,
  type RollingRequest,
  type RollingResult,
  type TokenWindow,
} from "./engine.ts";
import { chatPrompt } from "./chat.ts";
import { textWindow } from "./in_process.ts";
import { rollingWindows } from "../tasks/windows.ts";

/** Thrown when the server cannot be reached or answers with an error or a malformed body. */
export class OpenAIEngineError extends Error {
  override name = "OpenAIEngineError";
}

/** Settings of the `openai` engine (a suite's `engines:` entry, in camel case, defaults filled). */
export interface OpenAIEngineOptions {
  /** The API's base URL, e.g. `http://127.0.0.1:8000/v1`. */
  baseUrl: string;
  /** The model name the server serves. */
  model: string;
  /** The environment variable holding the API key (none: no `Authorization` header). */
  apiKeyEnv?: string;
  /** Requests in flight at once. */
  maxConcurrency: number;
  /** Milliseconds one request may take. */
  timeoutMs: number;
  /** Retries after a 429, a 5xx or a dropped connection. */
  retries: number;
  /** Milliseconds before the first retry (doubling each time). */
  retryBaseMs: number;
  /**
   * Top log-probabilities the server gives per position (its limit; vLLM's default is 20): what
   * {@linkcode EngineInfo.distributions} declares. Scoring asks for one (enough for `isGreedy`).
   */
  topLogprobs: number;
  /** Ask vLLM's `prompt_logprobs` instead of `echo` + `logprobs`. */
  promptLogprobs: boolean;
  /** Send chat prompts to `/v1/chat/completions` (false: everything as token ids to completions). */
  chat: boolean;
  /** The model's context length, when the local config's is not the server's. */
  maxSeqLen?: number;
  /** Where responses are cached (`<dir>/openai/…`); none: not cached. */
  cacheDir?: string;
}

/** The defaults of the optional settings. */
export const OPENAI_ENGINE_DEFAULTS = {
  max_concurrency: 4,
  timeout_s: 600,
  retries: 4,
  retry_base_ms: 500,
  top_logprobs: 5,
  prompt_logprobs: false,
  chat: true,
} as const;

/** The options a suite's `engines:` entry of kind `openai` may hold. */
export const OPENAI_ENGINE_KEYS = [
  "base_url",
  "model",
  "api_key_env",
  "max_seq_len",
  ...Object.keys(OPENAI_ENGINE_DEFAULTS),
] as const;

/** Reads a suite's engine entry (already checked by the loader) into options. */
export function openAIOptions(spec: EngineSpec, cacheDir?: string): OpenAIEngineOptions {
  const o = { ...OPENAI_ENGINE_DEFAULTS, ...spec.options } as Record<string, unknown>;
  return {
    baseUrl: String(o.base_url).replace(/\/+$/, ""),
    model: String(o.model),
    apiKeyEnv: o.api_key_env === undefined ? undefined : String(o.api_key_env),
    maxConcurrency: Number(o.max_concurrency),
    timeoutMs: Number(o.timeout_s) * 1000,
    retries: Number(o.retries),
    retryBaseMs: Number(o.retry_base_ms),
    topLogprobs: Number(o.top_logprobs),
    promptLogprobs: Boolean(o.prompt_logprobs),
    chat: Boolean(o.chat),
    maxSeqLen: o.max_seq_len === undefined ? undefined : Number(o.max_seq_len),
    cacheDir,
  };
}

/** The engine's id: the served model at its URL (a part of result cache keys; no key in it). */
export function openAIEngineId(baseUrl: string, model: string): string {
  return `openai/${model}@${baseUrl.replace(/\/+$/, "")}`;
}

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A counting semaphore. */
class Limiter {
  #free: number;
  #waiting: (() => void)[] = [];
  constructor(n: number) {
    this.#free = Math.max(1, n);
  }
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/** An engine over an OpenAI-compatible server (see the module documentation). */
export class OpenAIEngine implements Engine {
  readonly #model: LlamaModel;
  readonly #options: OpenAIEngineOptions;
  readonly #info: EngineInfo;
  readonly #limiter: Limiter;
  readonly #apiKey: string | undefined;
  /** Chat prompts made by {@linkcode chat}, by their token ids, for the chat endpoint. */
  readonly #chats = new Map<string, { messages: ChatMessage[]; tools?: unknown[] }>();
  #checked: Promise<void> | undefined;

  /** `model` supplies the tokenizer, chat template and configuration. */
  constructor(model: LlamaModel, options: OpenAIEngineOptions) {
    this.#model = model;
    this.#options = options;
    this.#limiter = new Limiter(options.maxConcurrency);
    if (options.apiKeyEnv !== undefined) {
      const key = Deno.env.get(options.apiKeyEnv);
      if (key === undefined || key === "") {
        throw new OpenAIEngineError(
          `The environment variable ${options.apiKeyEnv} (api_key_env) is not set; set it to the ` +
            `API key of ${options.baseUrl}`,
        );
      }
      this.#apiKey = key;
    }
    const { config, tokenizer } = model;
    this.#info = {
      id: openAIEngineId(options.baseUrl, options.model),
      vocabSize: config.vocabSize,
      maxSeqLen: options.maxSeqLen ?? config.maxSeqLen,
      bosId: tokenizer.bosId,
      eosId: tokenizer.eosId,
      addBos: tokenizer.addBos,
      loglikelihood: true,
      distributions: { kind: "top_k", k: options.topLogprobs },
      generation: true,
      chatTemplate: tokenizer.chat !== undefined,
      timing: false,
      fallbacks: [],
    };
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
    const prompt = chatPrompt(this.#model.tokenizer, messages, tools);
    this.#chats.set(prompt.ids.join(","), {
      messages: messages.map((m) => ({ ...m })),
      tools: tools && tools.length > 0 ? [...tools] : undefined,
    });
    return prompt;
  }

  loglikelihood(requests: readonly LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    return Promise.all(requests.map((request) =>
      this.#scoreWindow(
        "input" in request ? request : textWindow(this.#model.tokenizer, request),
      )
    ));
  }

  async loglikelihoodRolling(requests: readonly RollingRequest[]): Promise<RollingResult[]> {
    const { tokenizer } = this.#model;
    const out: RollingResult[] = [];
    for (const { text, maxLength } of requests) {
      const tokens = tokenizer.encode(text);
      const windows = [...rollingWindows(tokens, tokenizer.bosId, maxLength)];
      const scored = await Promise.all(windows.map((w) => this.#scoreWindow(w)));
      let logprob = 0;
      for (const s of scored) for (const lp of s.tokenLogprobs) logprob += lp;
      out.push({ logprob, tokens: tokens.length, windows: windows.length });
    }
    return out;
  }

  /** Scores a window through the prompt's log-probabilities. */
  async #scoreWindow(window: TokenWindow): Promise<LoglikelihoodResult> {
    const { input, offset, targets } = window;
    // Position offset + 1 + k of the prompt holds target k: the window's input up to its first
    // scored position, then the targets (which must continue the input where they overlap).
    for (let k = 0; k + offset + 1 < input.length && k < targets.length - 1; k++) {
      if (input[offset + 1 + k] !== targets[k]) {
        throw new MissingCapabilityError(
          `The openai engine scores targets that continue the input only; target ${k} ` +
            `(${targets[k]}) differs from input token ${offset + 1 + k} (${input[offset + 1 + k]})`,
        );
      }
    }
    const prompt = [...input.slice(0, offset + 1), ...targets];
    if (prompt.length > this.#info.maxSeqLen) {
      throw new ContextOverflowError(
        `A window of ${prompt.length} tokens exceeds the context of ${this.#info.maxSeqLen}`,
      );
    }
    // One alternative per position says whether the target is the most likely token.
    const k = 1;
    const body: Json = {
      model: this.#options.model,
      prompt,
      max_tokens: 1,
      temperature: 0,
      ...(this.#options.promptLogprobs
        ? { prompt_logprobs: k }
        : { echo: true, logprobs: k, return_tokens_as_token_ids: true }),
    };
    const response = await this.#post("/completions", body);
    const choice = firstChoice(response, "/completions");
    const positions = this.#options.promptLogprobs
      ? vllmPromptLogprobs(choice, prompt)
      : echoLogprobs(choice, prompt);
    const tokenLogprobs: number[] = [];
    let isGreedy = true;
    for (let j = offset + 1; j < prompt.length; j++) {
      const { logprob, top } = positions[j]!;
      tokenLogprobs.push(logprob);
      if (top.length > 0 && logprob < Math.max(...top)) isGreedy = false;
    }
    return { logprob: tokenLogprobs.reduce((a, b) => a + b, 0), isGreedy, tokenLogprobs };
  }

  async generateUntil(requests: readonly GenerateRequest[]): Promise<Generation[]> {
    return await Promise.all(requests.map((r) => this.#generate(r)));
  }

  async #generate(request: GenerateRequest): Promise<Generation> {
    const { prompt } = request;
    if (prompt.length === 0) throw new RangeError("Generation needs a non-empty prompt");
    const maxSeqLen = this.#info.maxSeqLen;
    if (prompt.length >= maxSeqLen) {
      throw new ContextOverflowError(
        `Prompt of ${prompt.length} tokens leaves no room in the context of ${maxSeqLen}`,
      );
    }
    const maxTokens = Math.min(request.maxTokens, maxSeqLen - prompt.length);
    const until = request.until?.filter((s) => s !== "") ?? [];
    const chat = this.#options.chat ? this.#chats.get(prompt.join(",")) : undefined;
    const t0 = performance.now();
    let text: string;
    let ids: number[] | undefined;
    let finish: string | undefined;
    let stopString: unknown;
    if (chat) {
      const response = await this.#post("/chat/completions", {
        model: this.#options.model,
        messages: chat.messages,
        ...(chat.tools ? { tools: chat.tools.map(openAITool) } : {}),
        max_tokens: maxTokens,
        temperature: 0,
        ...(until.length > 0 ? { stop: until } : {}),
        logprobs: true,
        return_tokens_as_token_ids: true,
      });
      const choice = firstChoice(response, "/chat/completions");
      const message = choice.message;
      if (!isRecord(message)) {
        throw malformed("/chat/completions", "its choice has no message");
      }
      const content = typeof message.content === "string" ? message.content : "";
      const calls = Array.isArray(message.tool_calls) ? message.tool_calls : [];
      // The server's text when it kept it, else its parsed tool calls as a JSON list of
      // {"name", "arguments"} (which the tool_use task decodes).
      text = content !== "" || calls.length === 0 ? content : JSON.stringify(calls.map(callJson));
      ids = content !== "" || calls.length === 0
        ? tokenIdsOf(
          isRecord(choice.logprobs) ? choice.logprobs.content : undefined,
          (t) => isRecord(t) ? t.token : undefined,
        )
        : undefined;
      finish = typeof choice.finish_reason === "string" ? choice.finish_reason : undefined;
      stopString = choice.stop_reason;
    } else {
      const response = await this.#post("/completions", {
        model: this.#options.model,
        prompt: [...prompt],
        max_tokens: maxTokens,
        temperature: 0,
        ...(until.length > 0 ? { stop: until } : {}),
        logprobs: 1,
        return_tokens_as_token_ids: true,
      });
      const choice = firstChoice(response, "/completions");
      if (typeof choice.text !== "string") {
        throw malformed("/completions", "its choice has no text");
      }
      text = choice.text;
      ids = tokenIdsOf(
        isRecord(choice.logprobs) ? choice.logprobs.tokens : undefined,
        (t) => t,
      );
      finish = typeof choice.finish_reason === "string" ? choice.finish_reason : undefined;
      stopString = choice.stop_reason;
    }
    ids ??= this.tokenize(text);
    let stopReason: Generation["stopReason"] = finish === "length"
      ? (maxTokens < request.maxTokens ? "context" : "max_tokens")
      : typeof stopString === "string" && until.includes(stopString)
      ? "until"
      : "eos";
    // The task's own stop ids and stop test, applied token by token as in process.
    const stopIds = request.stopIds ? new Set(request.stopIds) : undefined;
    if (stopIds || request.stop) {
      for (let j = 0; j < ids.length; j++) {
        if (stopIds?.has(ids[j]!)) {
          ids = ids.slice(0, j);
          text = this.detokenize(ids);
          stopReason = "eos";
          break;
        }
        const so_far = this.detokenize(ids.slice(0, j + 1));
        if (request.stop?.(so_far)) {
          ids = ids.slice(0, j + 1);
          text = so_far;
          stopReason = "stop";
          break;
        }
      }
    }
    const ms = performance.now() - t0;
    return {
      ids,
      text,
      stopReason,
      promptTokens: prompt.length,
      // The server's phases are not observable from here: the whole request counts as prefill.
      prefillMs: ms,
      firstTokenMs: ms,
      decodeMs: 0,
      decodeSteps: 0,
    };
  }

  logits(): Promise<Float32Array> {
    return Promise.reject(
      new MissingCapabilityError(
        `Engine "${this.#info.id}" gives the top ${this.#options.topLogprobs} ` +
          `log-probabilities per position only, not full logits`,
      ),
    );
  }

  timeGeneration(): Promise<GenerationTiming> {
    return Promise.reject(
      new MissingCapabilityError(`Engine "${this.#info.id}" does not time its kernels`),
    );
  }

  dispose(): void {
    this.#chats.clear();
  }

  /** Posts `body` to `path`, through the on-disk cache, the concurrency bound and retries. */
  async #post(path: string, body: Json): Promise<Json> {
    const url = this.#options.baseUrl + path;
    const key = await sha256(JSON.stringify({ url, body }));
    const file = this.#options.cacheDir
      ? join(this.#options.cacheDir, "openai", key.slice(0, 2), `${key}.json`)
      : undefined;
    if (file) {
      try {
        return JSON.parse(await Deno.readTextFile(file)) as Json;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound) && !(e instanceof SyntaxError)) throw e;
      }
    }
    await (this.#checked ??= this.#checkModel());
    const json = await this.#limiter.run(() => this.#request("POST", url, body));
    if (file) await writeFileAtomic(file, JSON.stringify(json));
    return json;
  }

  /** Checks once that the server serves the model (its `/models` list). */
  async #checkModel(): Promise<void> {
    const url = `${this.#options.baseUrl}/models`;
    const json = await this.#request("GET", url);
    const data = Array.isArray(json.data) ? json.data : undefined;
    if (!data) throw malformed("/models", 'it has no "data" list');
    const served = data.map((m) => isRecord(m) ? String(m.id) : "?");
    if (!served.includes(this.#options.model)) {
      throw new OpenAIEngineError(
        `The server at ${this.#options.baseUrl} does not serve model "${this.#options.model}" ` +
          `(it serves: ${served.map((s) => `"${s}"`).join(", ") || "nothing"}); set the suite's ` +
          `engine "model" to one of those`,
      );
    }
  }

  /** One HTTP exchange with retries; the answer's JSON body. */
  async #request(method: string, url: string, body?: Json): Promise<Json> {
    const { retries, retryBaseMs, timeoutMs } = this.#options;
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.#apiKey !== undefined) headers.authorization = `Bearer ${this.#apiKey}`;
    let last = "";
    for (let attempt = 0;; attempt++) {
      let wait = retryBaseMs * 2 ** attempt;
      try {
        const response = await fetch(url, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
        });
        const text = await response.text();
        if (response.ok) {
          try {
            const json = JSON.parse(text);
            if (isRecord(json)) return json;
          } catch {
            // reported below
          }
          throw new OpenAIEngineError(
            `${method} ${url} answered with a body that is not a JSON object: ` +
              `${JSON.stringify(this.#redact(text.slice(0, 200)))}${text.length > 200 ? "…" : ""}`,
          );
        }
        last = `HTTP ${response.status}: ${this.#redact(errorMessage(text))}`;
        const retryable = response.status === 429 || response.status >= 500;
        if (!retryable || attempt >= retries) {
          throw new OpenAIEngineError(
            `${method} ${url} failed with ${last}` +
              (retryable ? ` (after ${attempt + 1} attempts)` : ""),
          );
        }
        const after = Number(response.headers.get("retry-after"));
        if (Number.isFinite(after) && after > 0) wait = Math.max(wait, after * 1000);
      } catch (e) {
        if (e instanceof OpenAIEngineError) throw e;
        const reason = e instanceof DOMException && e.name === "TimeoutError"
          ? `no answer within ${timeoutMs / 1000} s`
          : this.#redact((e as Error).message);
        last = reason;
        if (attempt >= retries) {
          throw new OpenAIEngineError(
            `Cannot reach the OpenAI-compatible server at ${url} (${reason}, after ` +
              `${attempt + 1} attempts); is it running, and is the suite's base_url right?`,
            { cause: e },
          );
        }
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 30_000)));
    }
  }

  /** `text` with the API key blanked out. */
  #redact(text: string): string {
    return this.#apiKey ? text.replaceAll(this.#apiKey, "***") : text;
  }
}

/** Opens the `openai` engine for a cell (the suite's engine entry gives its settings). */
export function openOpenAIEngine(
  model: LlamaModel,
  spec: EngineSpec | undefined,
  cacheDir?: string,
): OpenAIEngine {
  if (!spec) {
    throw new OpenAIEngineError(
      `The openai engine needs settings: add an "engines:" entry for the backend with base_url ` +
        `and model`,
    );
  }
  return new OpenAIEngine(model, openAIOptions(spec, cacheDir));
}

function malformed(path: string, what: string): OpenAIEngineError {
  return new OpenAIEngineError(`Malformed answer from ${path}: ${what}`);
}

function firstChoice(response: Json, path: string): Json {
  const choices = response.choices;
  if (!Array.isArray(choices) || !isRecord(choices[0])) {
    throw malformed(path, 'it has no "choices"');
  }
  return choices[0];
}

interface PositionLogprob {
  logprob: number;
  /** The top alternatives' log-probabilities. */
  top: number[];
}

/** Per-position log-probabilities of an echoed prompt (`logprobs.token_logprobs`). */
function echoLogprobs(choice: Json, prompt: readonly number[]): PositionLogprob[] {
  const lp = choice.logprobs;
  if (!isRecord(lp) || !Array.isArray(lp.token_logprobs)) {
    throw new OpenAIEngineError(
      `The server gave no log-probabilities for the prompt (no "logprobs.token_logprobs" in its ` +
        `/completions answer); it must support "echo" with "logprobs" (vLLM does; set ` +
        `prompt_logprobs: true for vLLM's own field)`,
    );
  }
  const values = lp.token_logprobs;
  if (values.length < prompt.length) {
    throw malformed(
      "/completions",
      `${values.length} token log-probabilities for a prompt of ${prompt.length} tokens`,
    );
  }
  const tokens = Array.isArray(lp.tokens) ? lp.tokens : [];
  const tops = Array.isArray(lp.top_logprobs) ? lp.top_logprobs : [];
  const out: PositionLogprob[] = [];
  for (let j = 0; j < prompt.length; j++) {
    const token = tokens[j];
    if (typeof token === "string" && token.startsWith("token_id:")) {
      if (Number(token.slice(9)) !== prompt[j]) {
        throw malformed("/completions", `echoed token ${j} is ${token}, sent ${prompt[j]}`);
      }
    }
    const v = values[j];
    if (j > 0 && typeof v !== "number") {
      throw malformed("/completions", `token log-probability ${j} is ${JSON.stringify(v)}`);
    }
    const top = isRecord(tops[j])
      ? Object.values(tops[j]).filter((x) => typeof x === "number")
      : [];
    out.push({ logprob: j === 0 ? 0 : v as number, top: top as number[] });
  }
  return out;
}

/** Per-position log-probabilities from vLLM's `prompt_logprobs` (`[null, {id: {logprob}}…]`). */
function vllmPromptLogprobs(choice: Json, prompt: readonly number[]): PositionLogprob[] {
  const list = choice.prompt_logprobs;
  if (!Array.isArray(list)) {
    throw new OpenAIEngineError(
      `The server gave no "prompt_logprobs" in its /completions answer; it is vLLM's field ` +
        `(set prompt_logprobs: false to ask for "echo" with "logprobs" instead)`,
    );
  }
  if (list.length < prompt.length) {
    throw malformed("/completions", `${list.length} prompt_logprobs for ${prompt.length} tokens`);
  }
  return prompt.map((id, j) => {
    if (j === 0) return { logprob: 0, top: [] };
    const entry = list[j];
    const mine = isRecord(entry) ? entry[String(id)] : undefined;
    if (!isRecord(mine) || typeof mine.logprob !== "number") {
      throw malformed("/completions", `prompt_logprobs[${j}] has no entry for token ${id}`);
    }
    const top = Object.values(entry as Json).map((e) => isRecord(e) ? Number(e.logprob) : NaN)
      .filter(Number.isFinite);
    return { logprob: mine.logprob, top };
  });
}

/** Token ids from tokens written `token_id:<id>`, or undefined when any is not. */
function tokenIdsOf(list: unknown, token: (item: unknown) => unknown): number[] | undefined {
  if (!Array.isArray(list)) return undefined;
  const ids: number[] = [];
  for (const item of list) {
    const t = token(item);
    if (typeof t !== "string" || !t.startsWith("token_id:")) return undefined;
    const id = Number(t.slice(9));
    if (!Number.isInteger(id)) return undefined;
    ids.push(id);
  }
  return ids;
}

/** A tool definition as the chat API takes it (`{type: "function", function: {…}}`). */
function openAITool(tool: unknown): unknown {
  return isRecord(tool) && tool.type === "function" ? tool : { type: "function", function: tool };
}

/** An API tool call as `{"name", "arguments"}` (arguments parsed when they are JSON). */
function callJson(call: unknown): unknown {
  const fn = isRecord(call) && isRecord(call.function) ? call.function : {};
  let args: unknown = fn.arguments;
  if (typeof args === "string") {
    try {
      args = JSON.parse(args);
    } catch {
      // kept as the string the server gave
    }
  }
  return { name: fn.name, arguments: args };
}

/** The message of an OpenAI error body, else the body's start. */
function errorMessage(text: string): string {
  try {
    const json = JSON.parse(text);
    if (isRecord(json) && isRecord(json.error) && typeof json.error.message === "string") {
      return json.error.message;
    }
    if (isRecord(json) && typeof json.message === "string") return json.message;
  } catch {
    // not JSON
  }
  return text.slice(0, 200) || "(empty body)";
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
