/**
 * The `json` task: can the model write JSON that conforms to a given JSON Schema?
 *
 * Dataset: JSON Lines, one sample per line, `{id?, schema, prompt?, instruction?, system?, gold?,
 * category?, difficulty?: {level?}}`. `schema` is a JSON Schema (object, boolean, or its JSON
 * text). The user message is `prompt` when given, else `Schema: <schema as JSON>` and a line with
 * `instruction` (default: {@linkcode DEFAULT_INSTRUCTION}). `gold`, when present, is the expected
 * value for `exact_match`. Lines of jsonschemabench/maskbench files (`{schema, …}`) work as they
 * are. Strata for `limit`: `category`, else `difficulty.level`.
 *
 * Each prompt goes through the model's chat template (`engines/chat.ts`) and is answered greedily for at
 * most `max_new_tokens` tokens, stopping early once a complete `{…}`/`[…]` value parses (with
 * `stop_at_json`). The answer's JSON is extracted (`json_extract.ts`) and validated with Ajv
 * (`schema_compile.ts`: the dialect the schema declares, 2020-12 by default, with formats) under a
 * per-sample limit of `timeout_ms`.
 *
 * Rows: `parse_valid`, `schema_valid`, `exact_match` (samples with `gold` only) and `failures`,
 * each with per-sample values. Failure codes, first that applies: `missing_prediction` (only when
 * scoring a predictions file), `context_overflow` (the prompt does not fit), `no_json`, `parse_error`, `schema_error` (the schema does not compile),
 * `schema_timeout`, `schema_invalid`, `mismatch` (valid but not the gold value), else `ok`.
 *
 * @module
 */
import type { Metric, Task } from "./task.ts";
import type { DatasetSpec } from "../../core/suite_types.ts";
import { DatasetError, datasetLabel, type JsonlLine, readJsonl } from "../../core/dataset.ts";
import { balancedEnd, extractJson } from "./json_extract.ts";
import { SchemaValidator } from "./schema_validator.ts";
import { effectiveLimit, stratifiedSubset } from "../../core/random.ts";
import { ContextOverflowError } from "../engines/engine.ts";
import { failureMetric, proportionMetric } from "./proportion.ts";
import type { ChatMessage } from "../../core/model.ts";

/** Options and their defaults. */
export const JSON_OPTIONS = { max_new_tokens: 256, limit: 0, stop_at_json: true, timeout_ms: 2000 };

/** The request added after the schema when a sample has no `prompt` or `instruction`. */
export const DEFAULT_INSTRUCTION =
  "Reply with one JSON value that conforms to this schema, and nothing else.";

/** Failure codes in precedence order. */
export const JSON_CODES = [
  "ok",
  "missing_prediction",
  "context_overflow",
  "no_json",
  "parse_error",
  "schema_error",
  "schema_timeout",
  "schema_invalid",
  "mismatch",
] as const;

/** A failure code of the json task. */
export type JsonCode = typeof JSON_CODES[number];

/** One sample of a json dataset. */
export interface JsonSample {
  id: string;
  messages: ChatMessage[];
  schema: unknown;
  /** The expected value; undefined when the sample has none. */
  gold?: unknown;
  stratum: string;
}

/** The scores of one answer. */
export interface JsonScore {
  id: string;
  parse_valid: number;
  schema_valid: number;
  /** null when the sample has no gold value. */
  exact_match: number | null;
  code: JsonCode;
  message: string;
}

/** Reads the samples of a json dataset. */
export async function loadJsonSamples(
  dataset: Pick<DatasetSpec, "id" | "path">,
): Promise<JsonSample[]> {
  const label = datasetLabel(dataset);
  return (await readJsonl(dataset)).map((line) => jsonSample(line, label));
}

function jsonSample({ value, line }: JsonlLine, label: string): JsonSample {
  const where = `${label} line ${line}`;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DatasetError(`${where}: expected an object with "schema"`);
  }
  const v = value as Record<string, unknown>;
  let schema = v.schema;
  if (typeof schema === "string") {
    try {
      schema = JSON.parse(schema);
    } catch (e) {
      throw new DatasetError(`${where}: "schema" is a string but not JSON`, { cause: e });
    }
  }
  if (typeof schema !== "boolean" && (typeof schema !== "object" || schema === null)) {
    throw new DatasetError(`${where}: expected "schema" to be a JSON Schema, got ${v.schema}`);
  }
  const prompt = typeof v.prompt === "string" ? v.prompt : `Schema: ${JSON.stringify(schema)}\n` +
    (typeof v.instruction === "string" ? v.instruction : DEFAULT_INSTRUCTION);
  const messages: ChatMessage[] = [];
  if (typeof v.system === "string") messages.push({ role: "system", content: v.system });
  messages.push({ role: "user", content: prompt });
  const level = (v.difficulty as { level?: unknown } | undefined)?.level;
  return {
    id: v.id === undefined ? `line_${line}` : String(v.id),
    messages,
    schema,
    ...("gold" in v ? { gold: v.gold } : {}),
    stratum: typeof v.category === "string" ? v.category : typeof level === "string" ? level : "",
  };
}

/** JSON equality: objects regardless of key order, arrays in order. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => jsonEqual(x, bb[i]));
  }
  const ra = a as Record<string, unknown>, rb = b as Record<string, unknown>;
  const ka = Object.keys(ra);
  return ka.length === Object.keys(rb).length &&
    ka.every((k) => k in rb && jsonEqual(ra[k], rb[k]));
}

/** Scores one answer of a sample. */
export async function scoreJsonOutput(
  sample: JsonSample,
  output: string,
  validator: SchemaValidator,
): Promise<JsonScore> {
  const hasGold = "gold" in sample;
  const base = { id: sample.id, parse_valid: 0, schema_valid: 0, exact_match: hasGold ? 0 : null };
  const extracted = extractJson(output);
  if (!extracted.ok) return { ...base, code: extracted.code, message: extracted.message };
  const checked = await validator.validate(sample.schema, extracted.value);
  const parsed = { ...base, parse_valid: 1 };
  const exact = hasGold ? (jsonEqual(extracted.value, sample.gold) ? 1 : 0) : null;
  if (!checked.valid) {
    return {
      ...parsed,
      exact_match: exact,
      code: checked.code as JsonCode,
      message: checked.message,
    };
  }
  return {
    ...parsed,
    schema_valid: 1,
    exact_match: exact,
    code: exact === 0 ? "mismatch" : "ok",
    message: exact === 0 ? "valid, but not the gold value" : "",
  };
}

/** The rows of the json task from per-sample scores. */
export function jsonMetrics(scores: readonly JsonScore[], protocol: string): Metric[] {
  // Patterns are ECMA-262 (`u` flag); those only Python's `re` reads are read in its dialect.
  const detail = `${protocol} patterns=ecma262|python-re`;
  const ids = scores.map((s) => s.id);
  const rows = [
    proportionMetric("parse_valid", scores.map((s) => s.parse_valid), ids, detail),
    proportionMetric("schema_valid", scores.map((s) => s.schema_valid), ids, detail),
  ];
  const gold = scores.filter((s) => s.exact_match !== null);
  if (gold.length > 0) {
    rows.push(
      proportionMetric(
        "exact_match",
        gold.map((s) => s.exact_match!),
        gold.map((s) => s.id),
        detail,
      ),
    );
  }
  rows.push(failureMetric(scores.map((s) => s.code), ids, JSON_CODES, detail));
  return rows;
}

/** The json task. */
export const jsonTask: Task = {
  name: "json",
  description: "JSON Schema conformance of greedy answers (parse_valid, schema_valid, exact_match)",
  needsDataset: true,
  options: JSON_OPTIONS,
  needs: ["generation"],
  async run(ctx) {
    const opts = { ...JSON_OPTIONS, ...ctx.task.options };
    const all = await loadJsonSamples(ctx.dataset!);
    const samples = stratifiedSubset(
      all,
      effectiveLimit(opts.limit, ctx.limit),
      (s) => s.stratum,
      ctx.seed,
    );
    if (samples.length === 0) throw new DatasetError(`Dataset "${ctx.dataset!.id}" is empty`);
    const validator = new SchemaValidator(Number(opts.timeout_ms));
    const scores: JsonScore[] = [];
    let source = "";
    try {
      for (const [i, sample] of samples.entries()) {
        ctx.progress(i / samples.length);
        const prompt = ctx.engine.chat(sample.messages);
        source = prompt.source;
        let output: string;
        try {
          const [gen] = await ctx.engine.generateUntil([{
            prompt: prompt.ids,
            maxTokens: Number(opts.max_new_tokens),
            stop: opts.stop_at_json ? (text) => stopAtJson(text) : undefined,
          }]);
          output = gen!.text;
        } catch (e) {
          if (!(e instanceof ContextOverflowError)) throw e;
          scores.push({
            id: sample.id,
            parse_valid: 0,
            schema_valid: 0,
            exact_match: "gold" in sample ? 0 : null,
            code: "context_overflow",
            message: e.message,
          });
          continue;
        }
        scores.push(await scoreJsonOutput(sample, output, validator));
      }
    } finally {
      validator.close();
    }
    const detail = `json chat=${source} max_new_tokens=${opts.max_new_tokens} ` +
      `samples=${samples.length}/${all.length} seed=${ctx.seed}`;
    return jsonMetrics(scores, detail);
  },
};

/**
 * Whether generation may stop: the first bracket opened has been closed. (Stopping at any complete
 * `{…}` would cut an answer short at its first nested object.)
 */
export function stopAtJson(text: string): boolean {
  const start = text.search(/[{[]/);
  return start >= 0 && balancedEnd(text, start) >= 0;
}
