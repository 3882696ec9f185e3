/**
 * An OpenAI-compatible HTTP server over one {@linkcode Engine} (`deno task serve`): `/v1/models`,
 * `/v1/completions` (echo, log-probabilities with top alternatives and text offsets, `max_tokens`,
 * `stop`) and `/v1/chat/completions` (the model's chat template, `tools` with tool calls decoded as
 * the tool_use task decodes them, `response_format` JSON, `stream: true` as server-sent events).
 *
 * Requests are answered one at a time, in arrival order; at most `maxQueue` may wait or run, and
 * one beyond that is answered 429. Decoding is greedy only (see `openai_protocol.ts`).
 *
 * @module
 */
import type { ChatMessage } from "../../core/model.ts";
import { ContextOverflowError, type Engine, type Generation } from "../engines/engine.ts";
import { tokenNll } from "../tasks/nll.ts";
import { decodeToolCalls } from "../tasks/tool_call_parse.ts";
import { PyTuple, type PyValue } from "../tasks/py_value.ts";
import { stopAtJson } from "../tasks/json_validity.ts";
import {
  type ChatRequest,
  type CompletionRequest,
  errorBody,
  parseChatRequest,
  parseCompletionRequest,
  ProtocolError,
  sseEvent,
} from "./openai_protocol.ts";

/** How to serve. */
export interface ServeOptions {
  /** The name clients give as `model`. */
  modelName: string;
  /** Default 127.0.0.1 (loopback only). */
  hostname?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Requests that may run or wait at once; more are answered 429. Default 16. */
  maxQueue?: number;
  /** Called once listening. */
  onListen?: (url: string) => void;
}

/** A running server. */
export interface CellServer {
  /** Base URL, e.g. `http://127.0.0.1:8000/v1`. */
  url: string;
  /** Stops accepting requests, lets running ones finish, and resolves when closed. */
  shutdown(): Promise<void>;
  /** Resolves when the server has closed. */
  finished: Promise<void>;
}

interface Piece {
  id: number;
  text: string;
}

/** Serves `engine` (see the module documentation). */
export function serveEngine(engine: Engine, options: ServeOptions): CellServer {
  const info = engine.info();
  const maxQueue = options.maxQueue ?? 16;
  let pending = 0;
  let chain: Promise<unknown> = Promise.resolve();
  const created = Math.floor(Date.now() / 1000);
  let counter = 0;

  /** Runs `work` after everything queued before it. */
  function serial<T>(work: () => Promise<T>): Promise<T> {
    const run = chain.then(work, work);
    chain = run.catch(() => {});
    return run;
  }

  function checkModel(name: string): void {
    if (name !== options.modelName) {
      throw new ProtocolError(
        404,
        `The model "${name}" does not exist; this server serves "${options.modelName}"`,
        "model",
        "model_not_found",
      );
    }
  }

  function checkIds(ids: readonly number[]): void {
    for (const id of ids) {
      if (id >= info.vocabSize) {
        throw new ProtocolError(
          400,
          `Token id ${id} is outside the vocabulary of ${info.vocabSize}`,
          "prompt",
        );
      }
    }
    if (ids.length > info.maxSeqLen) {
      throw new ProtocolError(
        400,
        `The prompt has ${ids.length} tokens; the model's context is ${info.maxSeqLen}`,
        "prompt",
        "context_length_exceeded",
      );
    }
  }

  /** Text of each token of `ids`, decoded after up to 8 tokens before it. */
  function pieces(ids: readonly number[], from = 0): Piece[] {
    const out: Piece[] = [];
    for (let j = from; j < ids.length; j++) {
      out.push({ id: ids[j]!, text: pieceText(ids, j, ids[j]!) });
    }
    return out;
  }

  function pieceText(ids: readonly number[], j: number, id: number): string {
    const before = ids.slice(Math.max(0, j - 8), j);
    const head = engine.detokenize(before);
    return engine.detokenize([...before, id]).slice(head.length);
  }

  function tokenName(ids: readonly number[], j: number, id: number, tokenIds: boolean): string {
    return tokenIds ? `token_id:${id}` : pieceText(ids, j, id);
  }

  /** Log-probabilities of `all[from..]` and the top `k` at each position. */
  async function scoreTokens(all: readonly number[], from: number, k: number, tokenIds: boolean) {
    const vocab = info.vocabSize;
    const logits = await engine.logits(all);
    const lps: (number | null)[] = [];
    const tops: (Record<string, number> | null)[] = [];
    for (let j = from; j < all.length; j++) {
      if (j === 0) {
        lps.push(null);
        tops.push(null);
        continue;
      }
      const row = j - 1;
      const lse = tokenNll(logits, vocab, row, 0) + logits[row * vocab]!;
      lps.push(-tokenNll(logits, vocab, row, all[j]!));
      const top: Record<string, number> = {};
      if (k > 0) {
        const order = topIndices(logits, row * vocab, vocab, k);
        for (const t of order) top[tokenName(all, j, t, tokenIds)] = logits[row * vocab + t]! - lse;
      }
      tops.push(top);
    }
    return { lps, tops };
  }

  /**
   * vLLM's `prompt_logprobs`: per prompt position (null first) the prompt token and the top `k`,
   * by token id, each `{logprob, rank, decoded_token}`.
   */
  async function promptLogprobs(ids: readonly number[], k: number) {
    const vocab = info.vocabSize;
    const logits = await engine.logits(ids);
    const out: (Record<string, unknown> | null)[] = [null];
    for (let j = 1; j < ids.length; j++) {
      const row = j - 1;
      const lse = tokenNll(logits, vocab, row, 0) + logits[row * vocab]!;
      const entry: Record<string, unknown> = {};
      const order = topIndices(logits, row * vocab, vocab, k);
      const chosen = -tokenNll(logits, vocab, row, ids[j]!);
      let rank = 1;
      for (let t = 0; t < vocab; t++) if (logits[row * vocab + t]! - lse > chosen) rank++;
      entry[String(ids[j])] = { logprob: chosen, rank, decoded_token: pieceText(ids, j, ids[j]!) };
      for (const [r, t] of order.entries()) {
        entry[String(t)] ??= {
          logprob: logits[row * vocab + t]! - lse,
          rank: r + 1,
          decoded_token: pieceText(ids, j, t),
        };
      }
      out.push(entry);
    }
    return out;
  }

  async function generate(
    prompt: number[],
    maxTokens: number,
    until: string[],
    stop?: (text: string) => boolean,
  ): Promise<Generation | undefined> {
    if (maxTokens === 0) return undefined;
    try {
      const [gen] = await engine.generateUntil([{ prompt, maxTokens, until, stop }]);
      return gen;
    } catch (e) {
      if (e instanceof ContextOverflowError) {
        throw new ProtocolError(400, e.message, "prompt", "context_length_exceeded", { cause: e });
      }
      throw e;
    }
  }

  function finishReason(gen: Generation | undefined): string {
    return gen === undefined || gen.stopReason === "max_tokens" || gen.stopReason === "context"
      ? "length"
      : "stop";
  }

  async function completions(req: CompletionRequest): Promise<Response> {
    checkModel(req.model);
    const promptIds = typeof req.prompt === "string"
      ? [...(info.addBos === false ? [] : [info.bosId]), ...engine.tokenize(req.prompt)]
      : req.prompt;
    checkIds(promptIds);
    const gen = await generate(promptIds, req.maxTokens, req.stop);
    const genIds = gen?.ids ?? [];
    const genText = gen?.text ?? "";
    const promptText = typeof req.prompt === "string" ? req.prompt : engine.detokenize(promptIds);
    const text = req.echo ? promptText + genText : genText;
    let logprobs = null;
    if (req.logprobs !== undefined) {
      const all = [...promptIds, ...genIds];
      const from = req.echo ? 0 : promptIds.length;
      const { lps, tops } = await scoreTokens(all, from, req.logprobs, req.tokenIds);
      const ps = pieces(all, from);
      const offsets: number[] = [];
      let at = 0;
      for (const p of ps) {
        offsets.push(at);
        at += p.text.length;
      }
      logprobs = {
        tokens: ps.map((p, j) => req.tokenIds ? `token_id:${all[from + j]}` : p.text),
        token_logprobs: lps,
        top_logprobs: tops,
        text_offset: offsets,
      };
    }
    const id = `cmpl-${++counter}`;
    const choice = {
      index: 0,
      text,
      logprobs,
      finish_reason: finishReason(gen),
      stop_reason: gen?.stopReason === "until" ? untilMatched(engine, gen, req.stop) : null,
      ...(req.promptLogprobs === undefined
        ? {}
        : { prompt_logprobs: await promptLogprobs(promptIds, req.promptLogprobs) }),
    };
    const usage = {
      prompt_tokens: promptIds.length,
      completion_tokens: genIds.length,
      total_tokens: promptIds.length + genIds.length,
    };
    const response = {
      id,
      object: "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: options.modelName,
      choices: [choice],
      usage,
    };
    if (!req.stream) return Response.json(response);
    return sseResponse([response, "[DONE]"]);
  }

  async function chatCompletions(req: ChatRequest): Promise<Response> {
    checkModel(req.model);
    const prompt = engine.chat(req.messages, req.tools);
    checkIds(prompt.ids);
    const id = `chatcmpl-${++counter}`;
    const head = {
      id,
      object: "chat.completion.chunk",
      created: Math.floor(Date.now() / 1000),
      model: options.modelName,
    };
    const json = req.responseFormat !== "text";
    const run = async (onText?: (text: string) => void) => {
      const gen = await generate(prompt.ids, req.maxTokens, req.stop, (text) => {
        onText?.(text);
        return json && stopAtJson(text);
      });
      return gen!;
    };
    const toolCallsOf = (text: string) => {
      if (!req.tools || req.toolChoice === "none") return undefined;
      const decoded = decodeToolCalls(text);
      if (!decoded.ok || decoded.calls.length === 0) return undefined;
      return decoded.calls.map((call, i) => {
        const [name, args] = Object.entries(call)[0]!;
        return {
          id: `call_${counter}_${i}`,
          type: "function" as const,
          function: { name, arguments: JSON.stringify(pyToJson(args)) },
        };
      });
    };
    const logprobsOf = async (gen: Generation) => {
      if (!req.logprobs) return null;
      const all = [...prompt.ids, ...gen.ids];
      const { lps, tops } = await scoreTokens(
        all,
        prompt.ids.length,
        req.topLogprobs,
        req.tokenIds,
      );
      const ps = pieces(all, prompt.ids.length);
      return {
        content: ps.map((p, j) => ({
          token: req.tokenIds ? `token_id:${p.id}` : p.text,
          logprob: lps[j],
          bytes: [...new TextEncoder().encode(p.text)],
          top_logprobs: Object.entries(tops[j] ?? {}).map(([token, logprob]) => ({
            token,
            logprob,
            bytes: [...new TextEncoder().encode(token)],
          })),
        })),
      };
    };
    const usage = (gen: Generation) => ({
      prompt_tokens: prompt.ids.length,
      completion_tokens: gen.ids.length,
      total_tokens: prompt.ids.length + gen.ids.length,
    });
    if (!req.stream) {
      const gen = await run();
      const toolCalls = toolCallsOf(gen.text);
      return Response.json({
        id,
        object: "chat.completion",
        created: head.created,
        model: options.modelName,
        choices: [{
          index: 0,
          // The raw text stays in `content` beside parsed tool calls (as vLLM may give it), so a
          // client can decode it its own way.
          message: {
            role: "assistant",
            content: gen.text,
            ...(toolCalls ? { tool_calls: toolCalls } : {}),
          },
          logprobs: await logprobsOf(gen),
          finish_reason: toolCalls ? "tool_calls" : finishReason(gen),
        }],
        usage: usage(gen),
      });
    }
    // Streamed: text goes out as it is generated (held back while `stop` strings could still cut
    // it), then tool calls and the finish reason.
    const encoder = new TextEncoder();
    let sent = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        start: (controller) => {
          const send = (data: unknown) => controller.enqueue(encoder.encode(sseEvent(data)));
          send({
            ...head,
            choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }],
          });
          const live = req.stop.length === 0;
          const flush = (text: string) => {
            if (text.length > sent) {
              send({
                ...head,
                choices: [{ index: 0, delta: { content: text.slice(sent) }, finish_reason: null }],
              });
              sent = text.length;
            }
          };
          serial(() => run(live ? flush : undefined)).then((gen) => {
            flush(gen.text);
            const toolCalls = toolCallsOf(gen.text);
            if (toolCalls) {
              send({
                ...head,
                choices: [{
                  index: 0,
                  delta: { tool_calls: toolCalls.map((c, index) => ({ index, ...c })) },
                  finish_reason: null,
                }],
              });
            }
            send({
              ...head,
              choices: [{
                index: 0,
                delta: {},
                finish_reason: toolCalls ? "tool_calls" : finishReason(gen),
              }],
              usage: usage(gen),
            });
            send("[DONE]");
          }, (e) => {
            send(errorBody(500, (e as Error).message));
          }).finally(() => {
            pending--;
            controller.close();
          });
        },
      }),
      { headers: sseHeaders },
    );
  }

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.replace(/\/+$/, "");
    if (request.method === "GET" && (path === "/v1/models" || path === "/models")) {
      return Response.json({
        object: "list",
        data: [{ id: options.modelName, object: "model", created, owned_by: "quantbench" }],
      });
    }
    if (request.method === "GET" && path === "/health") return new Response("ok");
    const isCompletion = path === "/v1/completions" || path === "/completions";
    const isChat = path === "/v1/chat/completions" || path === "/chat/completions";
    if (!isCompletion && !isChat) {
      throw new ProtocolError(404, `No route ${request.method} ${url.pathname}`, null, "not_found");
    }
    if (request.method !== "POST") {
      throw new ProtocolError(405, `${url.pathname} takes POST, not ${request.method}`);
    }
    let parsed: unknown;
    try {
      parsed = await request.json();
    } catch (e) {
      throw new ProtocolError(
        400,
        `The request body is not valid JSON: ${(e as Error).message}`,
        "body",
        null,
        { cause: e },
      );
    }
    if (pending >= maxQueue) {
      throw new ProtocolError(
        429,
        `The server is busy (${pending} requests queued, at most ${maxQueue}); retry later`,
      );
    }
    pending++;
    // A chat stream, once under way, counts as pending until it ends (see chatCompletions).
    let streaming = false;
    try {
      if (isCompletion) {
        const req = parseCompletionRequest(parsed);
        return await serial(() => completions(req));
      }
      const req = parseChatRequest(parsed);
      const response = await (req.stream ? chatCompletions(req) : serial(() =>
        chatCompletions(req)
      ));
      streaming = req.stream;
      return response;
    } finally {
      if (!streaming) pending--;
    }
  }

  let resolveUrl = "";
  const server = Deno.serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 8000,
    onListen: ({ hostname, port }) => {
      const host = hostname.includes(":") ? `[${hostname}]` : hostname;
      resolveUrl = `http://${host}:${port}/v1`;
      options.onListen?.(resolveUrl);
    },
  }, async (request) => {
    try {
      return await handle(request);
    } catch (e) {
      if (e instanceof ProtocolError) {
        return Response.json(errorBody(e.status, e.message, e.param, e.code), {
          status: e.status,
          headers: e.status === 429 ? { "retry-after": "1" } : undefined,
        });
      }
      return Response.json(errorBody(500, `Internal error: ${(e as Error).message}`), {
        status: 500,
      });
    }
  });
  const addr = server.addr as Deno.NetAddr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return {
    url: resolveUrl || `http://${host}:${addr.port}/v1`,
    shutdown: () => server.shutdown(),
    finished: server.finished,
  };
}

const sseHeaders = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache",
};

function sseResponse(events: unknown[]): Response {
  return new Response(events.map(sseEvent).join(""), { headers: sseHeaders });
}

/** Which `stop` string ended a generation (the one its untrimmed text has where it was cut). */
function untilMatched(engine: Engine, gen: Generation, stops: readonly string[]): string | null {
  const full = engine.detokenize(gen.ids);
  return stops.find((s) => full.startsWith(s, gen.text.length)) ?? null;
}

/** Indices of the `k` largest of `logits[base .. base + n)`, largest first (lower index on ties). */
function topIndices(logits: Float32Array, base: number, n: number, k: number): number[] {
  const top: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = logits[base + i]!;
    if (top.length === k && v <= logits[base + top[k - 1]!]!) continue;
    let at = top.length === k ? k - 1 : top.length;
    if (top.length < k) top.push(i);
    while (at > 0 && logits[base + top[at - 1]!]! < v) {
      top[at] = top[at - 1]!;
      at--;
    }
    top[at] = i;
  }
  return top;
}

/** A Python value (from the tool-call decoder) as JSON (ints as numbers, tuples as lists). */
function pyToJson(v: PyValue): unknown {
  if (typeof v === "bigint") return Number(v);
  if (v instanceof PyTuple) return v.items.map(pyToJson);
  if (Array.isArray(v)) return v.map(pyToJson);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v as Record<string, PyValue>).map(([k, x]) => [k, pyToJson(x)]),
    );
  }
  return v;
}

/** Messages as the chat template takes them (re-exported for tests). */
export type { ChatMessage };
