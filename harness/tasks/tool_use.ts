/**
 * The `tool_use` task: does the model call the right tools with the right arguments? Scored with
 * the Berkeley Function-Calling Leaderboard's AST rules (`bfcl_checker.ts`).
 *
 * Dataset: BFCL's layout — JSON Lines of `{id, question, function}` (`question[0]` is the
 * conversation, `function` the tool definitions), with the possible answers `{id, ground_truth}`
 * in `possible_answer/<same file name>` beside it — or the same lines with `ground_truth` inline
 * (and optionally `category`). The category is, as in BFCL, the file name's
 * (`BFCL_v4_parallel.json` → `parallel`), else the `category` field, else the id without its
 * trailing number (`simple_python_3` → `simple_python`); questions with none are single-call
 * questions, with a warning. It selects the checker: `parallel…` order-free, `multiple…` one call
 * among several tools, `irrelevance` (success when no call is made), `live_relevance` (success
 * when a call is made; neither has possible answers), other categories exactly one call; `…java…`
 * and `…javascript…` categories use BFCL's Java/JavaScript type rules. Data the checker cannot
 * use (an answer naming a missing function, an unknown type) is an error naming file, line and
 * id. Strata for `limit`: the category.
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
import {
  DatasetError,
  datasetLabel,
  EncodingError,
  parseJsonl,
  readJsonl,
  readUtf8,
} from "../../core/dataset.ts";
import {
  astChecker,
  BfclDataError,
  type BfclLanguage,
  categoryLanguage,
  type FunctionDoc,
  KNOWN_TYPES,
  type PossibleAnswer,
} from "./bfcl_checker.ts";
import { NESTED_CONVERSION_TYPES } from "./bfcl_literals.ts";
import { type DecodedCalls, decodeToolCalls } from "./tool_call_parse.ts";
import {
  isDict,
  parsePyJson,
  type PyCall,
  type PyDict,
  pyRepr,
  pyToJson,
  type PyValue,
} from "./py_value.ts";
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

/** Where a question's category came from (BFCL's order: the file name first). */
export type CategorySource = "file" | "field" | "id" | "none";

/**
 * BFCL's `extract_test_category`: the category a file name gives (`BFCL_v4_parallel.json`,
 * `BFCL_v3_simple_result.json` → `parallel`, `simple`), or undefined.
 */
export function categoryFromFileName(path: string): string | undefined {
  return /^BFCL_v\d+_([\p{L}\p{N}_]+?)(?:_score|_result)?\.jsonl?$/u.exec(basename(path))?.[1];
}

/** BFCL's `extract_test_category_from_id`: `simple_python_3` → `simple_python`, else undefined. */
export function categoryFromId(id: string): string | undefined {
  const head = id.split(":")[0]!;
  return /_[\d-]+$/.test(head) ? head.replace(/_[\d-]+$/, "") : undefined;
}

/**
 * Reads a tool_use dataset (see the module documentation). Problems with the data (an answer
 * naming a function the question lacks, a type BFCL's checker does not know) are
 * {@linkcode DatasetError}s naming the file, line and id; questions with no category are scored
 * as single-call questions and reported through `warn`.
 */
export async function loadToolSamples(
  dataset: Pick<DatasetSpec, "id" | "path">,
  warn: (message: string) => void = (m) => console.warn(m),
): Promise<ToolSample[]> {
  const label = datasetLabel(dataset);
  const lines = await readJsonl(dataset, parsePyJson);
  const answerPath = join(dirname(dataset.path), "possible_answer", basename(dataset.path));
  const fileCategory = categoryFromFileName(dataset.path);
  let answers: Map<string, PyValue> | undefined;
  const samples: ToolSample[] = [];
  const uncategorised: string[] = [];
  const seen = new Set<string>();
  for (const { value: raw, line } of lines) {
    const value = raw as PyValue;
    const where = `${label} line ${line}`;
    if (!isDict(value) || !Array.isArray(value.function)) {
      throw new DatasetError(`${where}: expected an object with "question" and "function"`);
    }
    const id = value.id === undefined ? `line_${line}` : String(value.id);
    if (seen.has(id)) throw new DatasetError(`${where}: id "${id}" appears twice`);
    seen.add(id);
    const fieldCategory = typeof value.category === "string" ? value.category : undefined;
    const idCategory = value.id === undefined ? undefined : categoryFromId(id);
    const category = fileCategory ?? fieldCategory ?? idCategory ?? "simple";
    if (category === "simple" && !fileCategory && !fieldCategory && !idCategory) {
      uncategorised.push(id);
    }
    let truth = value.ground_truth;
    if (truth === undefined && !isRelevanceCategory(category)) {
      answers ??= await readAnswers(answerPath, label);
      truth = answers.get(id);
      if (truth === undefined) {
        throw new DatasetError(`${where}: no possible answer for "${id}" in ${answerPath}`);
      }
    }
    const question = toPlain(value.question) as unknown[];
    const turn = Array.isArray(question?.[0]) ? question[0] : question;
    if (!Array.isArray(turn)) throw new DatasetError(`${where}: "question" is not a conversation`);
    const sample: ToolSample = {
      id,
      category,
      messages: turn as ChatMessage[],
      functions: toPlain(value.function) as FunctionDoc[],
      answers: (Array.isArray(truth) ? truth : []) as PossibleAnswer[],
    };
    const problem = sampleProblem(sample, truth);
    if (problem) throw new DatasetError(`${where} (id "${id}"): ${problem}`);
    samples.push(sample);
  }
  if (uncategorised.length > 0) {
    warn(
      `${label}: ${uncategorised.length} question(s) have no category (no BFCL file name such as ` +
        `BFCL_v4_parallel.json, no "category" field, no id such as "parallel_3"), e.g. ` +
        `"${uncategorised[0]}"; they are scored as single-call ("simple") questions`,
    );
  }
  return samples;
}

/** What is wrong with a question's data for BFCL's checker, or undefined. */
function sampleProblem(sample: ToolSample, truth: PyValue | undefined): string | undefined {
  const language = categoryLanguage(sample.category);
  const known = KNOWN_TYPES[language];
  const isMessage = (m: unknown) =>
    typeof m === "object" && m !== null && typeof (m as ChatMessage).role === "string" &&
    typeof (m as ChatMessage).content === "string";
  if (!sample.messages.every(isMessage)) {
    return `"question" must hold messages {"role": "…", "content": "…"}`;
  }
  for (const f of sample.functions) {
    const params = (f as { parameters?: { properties?: unknown; required?: unknown } })
      ?.parameters;
    const props = params?.properties;
    if (
      typeof f?.name !== "string" || typeof props !== "object" || props === null ||
      Array.isArray(props)
    ) {
      return `every function needs a "name" and "parameters": {"properties": {…}}`;
    }
    const required = params!.required;
    if (
      required !== undefined &&
      !(Array.isArray(required) && required.every((r) => typeof r === "string"))
    ) {
      return `"required" of "${f.name}" must be a list of parameter names`;
    }
    for (
      const [param, d] of Object.entries(
        props as Record<string, { type?: unknown; items?: { type?: unknown } }>,
      )
    ) {
      if (typeof d !== "object" || d === null || Array.isArray(d)) {
        return `parameter "${param}" of "${f.name}" must be an object with a "type"`;
      }
      const type = d.type;
      if (typeof type !== "string" || !known.includes(type)) {
        return `parameter "${param}" of "${f.name}" has type ${JSON.stringify(type)}, which ` +
          `BFCL's ${language} checker does not know (known: ${known.join(", ")})`;
      }
      const item = typeof d.items === "object" && d.items !== null ? d.items.type : d.items;
      if (item !== undefined && (typeof item !== "string" || !known.includes(item))) {
        return `parameter "${param}" of "${f.name}" has item type ${JSON.stringify(item)}, ` +
          `which BFCL's ${language} checker does not know`;
      }
      if (language !== "python" && NESTED_CONVERSION_TYPES.includes(type) && item === undefined) {
        return `parameter "${param}" of "${f.name}" is a ${type} without "items": {"type": …}`;
      }
    }
  }
  if (isRelevanceCategory(sample.category)) return undefined;
  if (!Array.isArray(truth) || truth.length === 0) {
    return `"ground_truth" must be a non-empty list of {function name: {parameter: [values]}}`;
  }
  for (const answer of truth) {
    const entries = isDict(answer) ? Object.entries(answer) : [];
    if (entries.length !== 1 || !isDict(entries[0]![1])) {
      return `a possible answer is ${pyRepr(answer)}, not {function name: {parameter: [values]}}`;
    }
    const [name, params] = entries[0]!;
    if (!sample.functions.some((f) => f.name === name)) {
      return `the possible answer names "${name}", which no function of the question has`;
    }
    for (const [param, options] of Object.entries(params as PyDict)) {
      if (!Array.isArray(options)) {
        return `the possible answer for "${param}" of "${name}" is not a list of values`;
      }
    }
  }
  return undefined;
}

async function readAnswers(path: string, label: string): Promise<Map<string, PyValue>> {
  const answerLabel = `Possible answers of ${label}`;
  let text: string;
  try {
    text = await readUtf8(path, answerLabel);
  } catch (e) {
    if (e instanceof EncodingError) throw e;
    throw new DatasetError(
      `${label}: cannot read its possible answers ${path} (BFCL's layout: possible_answer/<same ` +
        `file name> beside the questions), or give each line a "ground_truth"`,
      { cause: e },
    );
  }
  const map = new Map<string, PyValue>();
  for (const { value } of parseJsonl(text, `${answerLabel} ${path}`, parsePyJson)) {
    const v = value as PyValue;
    if (isDict(v) && v.id !== undefined) map.set(String(v.id), v.ground_truth!);
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

/**
 * Whether a category is judged on whether a call is made at all (BFCL's
 * `is_relevance_or_irrelevance`): `irrelevance` passes without a call, `live_relevance` with one.
 * Neither has possible answers.
 */
function isRelevanceCategory(category: string): boolean {
  return category.includes("relevance");
}

/**
 * BFCL's `is_empty_output`: no call, `[{}]`, or anything that is not a list of
 * `{name: {parameter: value}}`.
 */
function isEmptyOutput(calls: readonly PyValue[]): boolean {
  const format = calls.every((c) =>
    isDict(c) && Object.keys(c).length === 1 && isDict(Object.values(c)[0])
  );
  return !format || calls.length === 0 ||
    (calls.length === 1 && Object.keys(calls[0] as PyDict).length === 0);
}

/**
 * An answer to score: model text, or calls already decoded elsewhere (BFCL's result files:
 * `[{name: {parameter: value}}]`, or `[{name: "<JSON arguments>"}]` from function-calling models).
 */
export type ToolAnswer = string | { calls: PyValue };

/** Decodes an answer into calls the way BFCL's `decode_ast` does for its two kinds of results. */
function decodeAnswer(answer: ToolAnswer, language: BfclLanguage): DecodedCalls {
  if (typeof answer === "string") return decodeToolCalls(answer, language);
  if (!Array.isArray(answer.calls)) {
    return {
      ok: false,
      code: "ast_decoder:decoder_wrong_output_format",
      message: `The result ${pyRepr(answer.calls)} is not a list of calls`,
    };
  }
  const calls: PyCall[] = [];
  for (const item of answer.calls) {
    const entries = isDict(item) ? Object.entries(item) : [];
    if (entries.length !== 1) {
      return {
        ok: false,
        code: "ast_decoder:decoder_wrong_output_format",
        message: `The call ${pyRepr(item)} is not {name: {parameter: value}}`,
      };
    }
    let [name, args] = entries[0]!;
    if (typeof args === "string") {
      try {
        args = parsePyJson(args);
      } catch (e) {
        return { ok: false, code: "ast_decoder:decoder_failed", message: (e as Error).message };
      }
    }
    if (!isDict(args)) {
      return {
        ok: false,
        code: "ast_decoder:decoder_wrong_output_format",
        message: `The arguments of "${name}" are ${pyRepr(args)}, not {parameter: value}`,
      };
    }
    calls.push({ [name]: args });
  }
  return { ok: true, calls, format: "json" };
}

/** Scores one answer (model text, or decoded calls) with BFCL's rules. */
export function scoreToolOutput(sample: ToolSample, output: ToolAnswer): ToolScore {
  const base = { id: sample.id, category: sample.category };
  if (isRelevanceCategory(sample.category)) {
    // BFCL decodes relevance answers as Python whatever the category's language.
    const decoded = decodeAnswer(output, "python");
    const called = decoded.ok && !isEmptyOutput(decoded.calls);
    const irrelevance = isIrrelevance(sample.category);
    const correct = irrelevance ? !called : called;
    const code = correct
      ? "ok"
      : irrelevance
      ? "irrelevance_error:decoder_success"
      : "relevance_error:decoder_failed";
    return { ...base, correct: correct ? 1 : 0, code, message: "" };
  }
  const decoded = decodeAnswer(output, categoryLanguage(sample.category));
  if (!decoded.ok) return { ...base, correct: 0, code: decoded.code, message: decoded.message };
  let result;
  try {
    result = astChecker(sample.functions, decoded.calls, sample.answers, sample.category);
  } catch (e) {
    // The loader checks the data; this is the last guard against a sample taking the run down.
    if (!(e instanceof BfclDataError)) throw e;
    return { ...base, correct: 0, code: "dataset_error", message: e.message };
  }
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
