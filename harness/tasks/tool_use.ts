/**
 * The `tool_use` task: does the model call the right tools with the right arguments? Scored with
 * the Berkeley Function-Calling Leaderboard's AST rules (`bfcl_checker.ts`).
 *
 * Dataset: BFCL's layout — JSON Lines of `{id, question, function}` (`question[0]` is the
 * conversation, `function` the tool definitions), with the possible answers `{id, ground_truth}`
 * in `possible_answer/<same file name>` beside it — or the same lines with `ground_truth` inline
 * (and optionally `category`). The category is `category`, else the id without its trailing
 * number (`simple_python_3` → `simple_python`); it selects the checker: `parallel…` order-free,
 * `multiple…` one call among several tools, `irrelevance` (success when no call is made), other
 * categories exactly one call. Strata for `limit`: the category.
 *
 * The tools go to the model through its chat template as `tools` (`tool_format: bfcl` passes the
 * dataset's definitions as they are, as the fixture models were trained; `openai` wraps each as
 * `{"type": "function", "function": …}` with JSON Schema types), and the greedy answer (at most
 * `max_new_tokens`) is decoded from `<tool_call>` tags, JSON or Python call syntax
 * (`tool_call_parse.ts`).
 *
 * Rows: `accuracy` over all samples, `accuracy:<category>` per category when there are several,
 * and `failures`, whose codes are BFCL's error types (`ast_decoder:decoder_failed`,
 * `simple_function_checker:missing_required`, `type_error:simple`, `value_error:string`,
 * `parallel_function_checker_no_order:wrong_count`, `irrelevance_error:decoder_success`, …) plus
 * `context_overflow`.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import type { Metric, Task } from "./task.ts";
import type { DatasetSpec } from "../../core/suite_types.ts";
import type { ChatMessage } from "../../core/model.ts";
import { DatasetError } from "../../core/dataset.ts";
import { astChecker, type FunctionDoc, type PossibleAnswer } from "./bfcl_checker.ts";
import { decodeToolCalls } from "./tool_call_parse.ts";
import { isDict, parsePyJson, pyRepr, pyToJson, type PyValue } from "./py_value.ts";
import { effectiveLimit, stratifiedSubset } from "../../core/random.ts";
import { ContextOverflowError } from "../engines/engine.ts";
import { failureMetric, proportionMetric } from "./proportion.ts";

/** Options and their defaults. */
export const TOOL_USE_OPTIONS = { max_new_tokens: 256, limit: 0, tool_format: "bfcl" };

/** One question. */
export interface ToolSample {
  id: string;
  category: string;
  messages: ChatMessage[];
  functions: FunctionDoc[];
  /** Possible answers, one per expected call (empty for irrelevance). */
  answers: PossibleAnswer[];
}

/** The score of one answer. */
export interface ToolScore {
  id: string;
  category: string;
  correct: number;
  /** `ok` or BFCL's error type. */
  code: string;
  message: string;
}

/** Reads a tool_use dataset (see the module documentation). */
export async function loadToolSamples(
  dataset: Pick<DatasetSpec, "id" | "path">,
): Promise<ToolSample[]> {
  const read = async (path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (e) {
      throw new DatasetError(`Dataset "${dataset.id}": cannot read ${path}`, { cause: e });
    }
  };
  const lines = parseLines(await read(dataset.path), dataset.id);
  const answerPath = join(dirname(dataset.path), "possible_answer", basename(dataset.path));
  let answers: Map<string, PyValue> | undefined;
  const samples: ToolSample[] = [];
  for (const { value, line } of lines) {
    const where = `Dataset "${dataset.id}" line ${line}`;
    if (!isDict(value) || !Array.isArray(value.function)) {
      throw new DatasetError(`${where}: expected an object with "question" and "function"`);
    }
    const id = value.id === undefined ? `line_${line}` : String(value.id);
    const category = typeof value.category === "string"
      ? value.category
      : id.replace(/_[\d-]+$/, "");
    let truth = value.ground_truth;
    if (truth === undefined && !isIrrelevance(category)) {
      answers ??= await readAnswers(answerPath, dataset.id, read);
      truth = answers.get(id);
      if (truth === undefined) throw new DatasetError(`${where}: no possible answer for "${id}"`);
    }
    const question = toPlain(value.question) as unknown[];
    const turn = Array.isArray(question?.[0]) ? question[0] : question;
    if (!Array.isArray(turn)) throw new DatasetError(`${where}: "question" is not a conversation`);
    samples.push({
      id,
      category,
      messages: turn as ChatMessage[],
      functions: toPlain(value.function) as FunctionDoc[],
      answers: (Array.isArray(truth) ? truth : []) as PossibleAnswer[],
    });
  }
  return samples;
}

function parseLines(text: string, label: string): { value: PyValue; line: number }[] {
  const out = [];
  for (const [i, raw] of text.split("\n").entries()) {
    if (raw.trim() === "") continue;
    try {
      out.push({ value: parsePyJson(raw), line: i + 1 });
    } catch (e) {
      throw new DatasetError(`Dataset "${label}" line ${i + 1} is not valid JSON`, { cause: e });
    }
  }
  return out;
}

async function readAnswers(
  path: string,
  label: string,
  read: (path: string) => Promise<string>,
): Promise<Map<string, PyValue>> {
  const map = new Map<string, PyValue>();
  for (const { value } of parseLines(await read(path), `${label} possible answers`)) {
    if (isDict(value) && value.id !== undefined) map.set(String(value.id), value.ground_truth!);
  }
  return map;
}

/** A parsed value as plain JSON data (ints as numbers), for prompts and function definitions. */
function toPlain(v: PyValue | undefined): unknown {
  return v === undefined ? undefined : JSON.parse(pyToJson(v));
}

function isIrrelevance(category: string): boolean {
  return category.includes("irrelevance");
}

/** Whether a category expects at least one call and nothing more (BFCL `live_relevance`). */
function isRelevanceOnly(category: string): boolean {
  return category.includes("relevance") && !isIrrelevance(category);
}

/** Scores one answer with BFCL's rules. */
export function scoreToolOutput(sample: ToolSample, output: string): ToolScore {
  const base = { id: sample.id, category: sample.category };
  const decoded = decodeToolCalls(output);
  const called = decoded.ok && decoded.calls.length > 0;
  if (isIrrelevance(sample.category) || isRelevanceOnly(sample.category)) {
    const correct = isIrrelevance(sample.category) ? !called : called;
    const code = correct
      ? "ok"
      : isIrrelevance(sample.category)
      ? "irrelevance_error:decoder_success"
      : "relevance_error:decoder_failed";
    return { ...base, correct: correct ? 1 : 0, code, message: "" };
  }
  if (!decoded.ok) return { ...base, correct: 0, code: decoded.code, message: decoded.message };
  const result = astChecker(sample.functions, decoded.calls, sample.answers, sample.category);
  return {
    ...base,
    correct: result.valid ? 1 : 0,
    code: result.valid ? "ok" : result.errorType,
    message: result.error.join(" "),
  };
}

/**
 * An answer made from a sample's possible answers, written as JSON calls or as Python calls:
 * parameters the function requires take their first acceptable value other than `""`; other
 * parameters (and dict keys) whose options include `""` (optional) are left out; the rest take
 * their first acceptable value. Scoring it must give 100 %.
 */
export function groundTruthOutput(sample: ToolSample, format: "json" | "python"): string {
  const pick = (options: readonly PyValue[], required = false): PyValue | undefined =>
    required ? options.find((o) => o !== "") : options.includes("") ? undefined : options[0];
  const value = (v: PyValue): PyValue =>
    isDict(v)
      ? Object.fromEntries(
        Object.entries(v).flatMap(([k, o]) => {
          const chosen = Array.isArray(o) ? pick(o) : o;
          return chosen === undefined ? [] : [[k, value(chosen)]];
        }),
      )
      : Array.isArray(v)
      ? v.map(value)
      : v;
  const calls = sample.answers.map((answer) => {
    const [name, params] = Object.entries(answer)[0]!;
    const required = sample.functions.find((f) => f.name === name)?.parameters.required ?? [];
    const args: Record<string, PyValue> = {};
    for (const [k, options] of Object.entries(params)) {
      const chosen = pick(options, required.includes(k));
      if (chosen !== undefined) args[k] = value(chosen);
    }
    return { name, args };
  });
  if (format === "json") {
    return `[${
      calls.map((c) => `{"name": ${JSON.stringify(c.name)}, "arguments": ${pyToJson(c.args)}}`)
        .join(", ")
    }]`;
  }
  return `[${
    calls.map((c) =>
      `${c.name}(${Object.entries(c.args).map(([k, v]) => `${k}=${pyRepr(v)}`).join(", ")})`
    ).join(", ")
  }]`;
}

/** JSON Schema types for BFCL's parameter types (`tool_format: openai`). */
const OPENAI_TYPES: Record<string, string> = {
  dict: "object",
  float: "number",
  tuple: "array",
  any: "string",
};

function openaiSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(openaiSchema);
  if (typeof node !== "object" || node === null) return node;
  return Object.fromEntries(
    Object.entries(node).map(([k, v]) => [
      k,
      k === "type" && typeof v === "string" ? OPENAI_TYPES[v] ?? v : openaiSchema(v),
    ]),
  );
}

/** The tools as the chat template receives them. */
export function toolsFor(functions: readonly FunctionDoc[], format: string): unknown[] {
  if (format === "bfcl") return [...functions];
  if (format === "openai") {
    return functions.map((f) => ({
      type: "function",
      function: { ...f, parameters: openaiSchema(f.parameters) },
    }));
  }
  throw new DatasetError(`tool_format "${format}" is not supported; known: bfcl, openai`);
}

/** The rows of the tool_use task from per-sample scores. */
export function toolMetrics(scores: readonly ToolScore[], detail: string): Metric[] {
  const ids = scores.map((s) => s.id);
  const rows = [proportionMetric("accuracy", scores.map((s) => s.correct), ids, detail)];
  const categories = [...new Set(scores.map((s) => s.category))];
  if (categories.length > 1) {
    for (const c of categories) {
      const these = scores.filter((s) => s.category === c);
      rows.push(
        proportionMetric(
          `accuracy:${c}`,
          these.map((s) => s.correct),
          these.map((s) => s.id),
          detail,
        ),
      );
    }
  }
  rows.push(failureMetric(scores.map((s) => s.code), ids, ["ok"], detail));
  return rows;
}

/** The tool_use task. */
export const toolUse: Task = {
  name: "tool_use",
  description: "tool-call accuracy by BFCL's AST rules (simple, multiple, parallel, irrelevance)",
  needsDataset: true,
  options: TOOL_USE_OPTIONS,
  needs: ["generation"],
  async run(ctx) {
    const opts = { ...TOOL_USE_OPTIONS, ...ctx.task.options };
    const all = await loadToolSamples(ctx.dataset!);
    const samples = stratifiedSubset(
      all,
      effectiveLimit(opts.limit, ctx.limit),
      (s) => s.category,
      ctx.seed,
    );
    if (samples.length === 0) throw new DatasetError(`Dataset "${ctx.dataset!.id}" is empty`);
    const scores: ToolScore[] = [];
    let source = "";
    for (const [i, sample] of samples.entries()) {
      ctx.progress(i / samples.length);
      const prompt = ctx.engine.chat(
        sample.messages,
        toolsFor(sample.functions, String(opts.tool_format)),
      );
      source = prompt.source;
      try {
        const [gen] = await ctx.engine.generateUntil([{
          prompt: prompt.ids,
          maxTokens: Number(opts.max_new_tokens),
        }]);
        scores.push(scoreToolOutput(sample, gen!.text));
      } catch (e) {
        if (!(e instanceof ContextOverflowError)) throw e;
        scores.push({
          id: sample.id,
          category: sample.category,
          correct: 0,
          code: "context_overflow",
          message: e.message,
        });
      }
    }
    const detail = `tool_use chat=${source} tool_format=${opts.tool_format} ` +
      `max_new_tokens=${opts.max_new_tokens} samples=${samples.length}/${all.length} ` +
      `seed=${ctx.seed}`;
    return toolMetrics(scores, detail);
  },
};
