/**
 * The OpenAI API's wire format as `deno task serve` speaks it: request bodies of `/v1/completions`
 * and `/v1/chat/completions` checked and read into plain settings (an unsupported or malformed
 * field is a {@linkcode ProtocolError} with the HTTP status to answer), error bodies, and
 * server-sent events.
 *
 * Decoding is greedy only: `temperature` must be 0 (or absent), `top_p` 1, `n` 1; other sampling
 * is refused with a 400 that says so. vLLM's `return_tokens_as_token_ids` (tokens are then written
 * `token_id:<id>`) and `prompt_logprobs` are understood.
 *
 * @module
 */
import type { ChatMessage } from "../../core/model.ts";

/** A request the server refuses, with the HTTP status and the OpenAI error fields to answer. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
  /** HTTP status. */
  readonly status: number;
  /** The request field at fault, if one is. */
  readonly param: string | null;
  /** OpenAI's error code (e.g. `model_not_found`). */
  readonly code: string | null;

  constructor(
    status: number,
    message: string,
    param: string | null = null,
    code: string | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.status = status;
    this.param = param;
    this.code = code;
  }
}

/** The settings of a `/v1/completions` request. */
export interface CompletionRequest {
  model: string;
  /** Text (encoded with BOS as the model adds it) or token ids (used as they are). */
  prompt: string | number[];
  maxTokens: number;
  echo: boolean;
  /** Top log-probabilities per token (0 = the chosen token's only); undefined: none. */
  logprobs?: number;
  stop: string[];
  stream: boolean;
  /** vLLM's `return_tokens_as_token_ids`. */
  tokenIds: boolean;
  /** vLLM's `prompt_logprobs`: the top N per prompt position, by token id. */
  promptLogprobs?: number;
}

/** The settings of a `/v1/chat/completions` request. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  /** Tool definitions as sent (OpenAI's `{type: "function", function: {…}}`), passed to the template. */
  tools?: unknown[];
  /** `none` turns tool-call parsing off. */
  toolChoice: "auto" | "none" | "required";
  maxTokens: number;
  stop: string[];
  stream: boolean;
  logprobs: boolean;
  topLogprobs: number;
  /** `json_object`/`json_schema` end generation after the first complete JSON value. */
  responseFormat: "text" | "json_object" | "json_schema";
  tokenIds: boolean;
}

/** The most top log-probabilities a request may ask for per token. */
export const MAX_TOP_LOGPROBS = 20;

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function bad(message: string, param: string): ProtocolError {
  return new ProtocolError(400, message, param, "invalid_request_error");
}

function body(value: unknown): Json {
  if (!isRecord(value)) throw bad("The request body must be a JSON object", "body");
  return value;
}

function model(b: Json): string {
  if (typeof b.model !== "string" || b.model === "") {
    throw bad(`"model" must be a non-empty string, got ${JSON.stringify(b.model)}`, "model");
  }
  return b.model;
}

function optionalInt(b: Json, key: string, min: number, max: number): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw bad(`"${key}" must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`, key);
  }
  return v;
}

function bool(b: Json, key: string): boolean {
  const v = b[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw bad(`"${key}" must be true or false`, key);
  return v;
}

function stopList(b: Json): string[] {
  const v = b.stop;
  if (v === undefined || v === null) return [];
  if (typeof v === "string") return v === "" ? [] : [v];
  if (Array.isArray(v) && v.every((s) => typeof s === "string")) {
    return (v as string[]).filter((s) => s !== "");
  }
  throw bad(`"stop" must be a string or a list of strings, got ${JSON.stringify(v)}`, "stop");
}

/** Refuses sampling settings other than greedy decoding. */
function greedyOnly(b: Json): void {
  const refuse = (key: string, value: unknown, want: string) => {
    throw bad(
      `This server decodes greedily only: "${key}" must be ${want}, got ${JSON.stringify(value)}`,
      key,
    );
  };
  if (b.temperature !== undefined && b.temperature !== null && b.temperature !== 0) {
    refuse("temperature", b.temperature, "0 (or absent)");
  }
  if (b.top_p !== undefined && b.top_p !== null && b.top_p !== 1) {
    refuse("top_p", b.top_p, "1 (or absent)");
  }
  if (b.n !== undefined && b.n !== null && b.n !== 1) refuse("n", b.n, "1 (or absent)");
  if (b.best_of !== undefined && b.best_of !== null && b.best_of !== 1) {
    refuse("best_of", b.best_of, "1 (or absent)");
  }
  for (const key of ["presence_penalty", "frequency_penalty"]) {
    if (b[key] !== undefined && b[key] !== null && b[key] !== 0) refuse(key, b[key], "0");
  }
}

/** Reads a `/v1/completions` body. */
export function parseCompletionRequest(value: unknown): CompletionRequest {
  const b = body(value);
  greedyOnly(b);
  let prompt: string | number[];
  if (typeof b.prompt === "string") prompt = b.prompt;
  else if (Array.isArray(b.prompt) && b.prompt.length === 1 && typeof b.prompt[0] === "string") {
    prompt = b.prompt[0];
  } else if (
    Array.isArray(b.prompt) && b.prompt.length > 0 &&
    b.prompt.every((t) => typeof t === "number" && Number.isInteger(t) && t >= 0)
  ) prompt = b.prompt as number[];
  else if (
    Array.isArray(b.prompt) && b.prompt.length === 1 && Array.isArray(b.prompt[0]) &&
    b.prompt[0].every((t: unknown) => typeof t === "number" && Number.isInteger(t) && t >= 0)
  ) prompt = b.prompt[0] as number[];
  else {
    throw bad(
      `"prompt" must be a string or a non-empty list of token ids (one prompt per request), got ` +
        JSON.stringify(b.prompt)?.slice(0, 80),
      "prompt",
    );
  }
  const logprobs = optionalInt(b, "logprobs", 0, MAX_TOP_LOGPROBS);
  return {
    model: model(b),
    prompt,
    maxTokens: optionalInt(b, "max_tokens", 0, 1 << 20) ?? 16,
    echo: bool(b, "echo"),
    logprobs,
    stop: stopList(b),
    stream: bool(b, "stream"),
    tokenIds: bool(b, "return_tokens_as_token_ids"),
    promptLogprobs: optionalInt(b, "prompt_logprobs", 0, MAX_TOP_LOGPROBS),
  };
}

function message(m: unknown, i: number): ChatMessage {
  const where = `messages[${i}]`;
  if (!isRecord(m) || typeof m.role !== "string") {
    throw bad(`${where} must be an object with a "role"`, where);
  }
  let content = m.content;
  if (Array.isArray(content)) {
    // Content parts: only text is understood.
    content = content.map((part, j) => {
      if (isRecord(part) && part.type === "text" && typeof part.text === "string") return part.text;
      throw bad(`${where}.content[${j}] is not a text part; this server reads text only`, where);
    }).join("");
  }
  if (content !== undefined && content !== null && typeof content !== "string") {
    throw bad(`${where}.content must be a string`, where);
  }
  const out: ChatMessage = { ...m, role: m.role };
  if (typeof content === "string") out.content = content;
  else delete out.content;
  return out;
}

/** Reads a `/v1/chat/completions` body. */
export function parseChatRequest(value: unknown): ChatRequest {
  const b = body(value);
  greedyOnly(b);
  if (!Array.isArray(b.messages) || b.messages.length === 0) {
    throw bad(`"messages" must be a non-empty list`, "messages");
  }
  const messages = b.messages.map(message);
  let tools: unknown[] | undefined;
  if (b.tools !== undefined && b.tools !== null) {
    if (!Array.isArray(b.tools)) throw bad(`"tools" must be a list`, "tools");
    tools = b.tools.length > 0 ? b.tools : undefined;
  }
  let toolChoice: ChatRequest["toolChoice"] = "auto";
  if (b.tool_choice === "none" || b.tool_choice === "required") toolChoice = b.tool_choice;
  else if (b.tool_choice !== undefined && b.tool_choice !== null && b.tool_choice !== "auto") {
    throw bad(`"tool_choice" must be "auto", "none" or "required"`, "tool_choice");
  }
  let responseFormat: ChatRequest["responseFormat"] = "text";
  if (b.response_format !== undefined && b.response_format !== null) {
    const type = isRecord(b.response_format) ? b.response_format.type : undefined;
    if (type !== "text" && type !== "json_object" && type !== "json_schema") {
      throw bad(
        `"response_format.type" must be "text", "json_object" or "json_schema", got ` +
          JSON.stringify(type),
        "response_format",
      );
    }
    responseFormat = type;
  }
  const maxTokens = optionalInt(b, "max_completion_tokens", 1, 1 << 20) ??
    optionalInt(b, "max_tokens", 1, 1 << 20) ?? 256;
  return {
    model: model(b),
    messages,
    tools,
    toolChoice,
    maxTokens,
    stop: stopList(b),
    stream: bool(b, "stream"),
    logprobs: bool(b, "logprobs"),
    topLogprobs: optionalInt(b, "top_logprobs", 0, MAX_TOP_LOGPROBS) ?? 0,
    responseFormat,
    tokenIds: bool(b, "return_tokens_as_token_ids"),
  };
}

/** OpenAI's error body. */
export function errorBody(
  status: number,
  message: string,
  param: string | null = null,
  code?: string | null,
) {
  const type = status === 429
    ? "rate_limit_exceeded"
    : status >= 500
    ? "server_error"
    : "invalid_request_error";
  return { error: { message, type, param, code: code ?? null } };
}

/** One server-sent event carrying `data` as JSON (or the literal `[DONE]`). */
export function sseEvent(data: unknown): string {
  return `data: ${data === "[DONE]" ? "[DONE]" : JSON.stringify(data)}\n\n`;
}
