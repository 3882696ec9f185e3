/**
 * Scoring predictions made elsewhere (another engine, a hosted model) with the same rules as the
 * tasks: `deno task score TASK --dataset FILE --predictions FILE`.
 *
 * Predictions file: JSON Lines, one `{"id": "<sample id>", "output": "<the model's answer text>"}`
 * per line (a JSON array of such objects works too), or for `tool_use` BFCL's own result files
 * (`{"id", "result"}`, see {@linkcode readPredictions}). A UTF-8 byte-order mark is accepted;
 * other bytes that are not UTF-8, an empty predictions file and an empty dataset are errors. Ids are the dataset's `id` fields (or
 * `line_N` for lines without one). A dataset sample with no prediction is scored as failed with
 * code `missing_prediction`; a prediction whose id is not in the dataset is an error.
 *
 * @module
 */
import { basename } from "node:path";
import type { Metric } from "./task.ts";
import type { ResultsFile } from "../../core/row.ts";
import { codeVersion } from "../runner/fingerprint.ts";
import { EncodingError, parseJsonl, readUtf8 } from "../../core/dataset.ts";
import { isDict, parsePyJson, pyToJson, type PyValue } from "./py_value.ts";
import { jsonMetrics, type JsonScore, loadJsonSamples, scoreJsonOutput } from "./json_validity.ts";
import { loadToolSamples, scoreToolOutput, toolMetrics, type ToolScore } from "./tool_use.ts";
import { SchemaValidator } from "./schema_validator.ts";

/** Tasks that can score predictions. */
export const SCORABLE_TASKS = ["json", "tool_use"] as const;

/** Thrown for unusable predictions or an unknown task. */
export class ScoreInputError extends Error {
  override name = "ScoreInputError";
}

/**
 * One prediction: the model's answer text, or (BFCL's result files, `tool_use` only) the calls
 * already decoded.
 */
export type Prediction = string | { calls: PyValue };

/**
 * Reads a predictions file: id → prediction. Lines are `{"id", "output": "<text>"}` or BFCL's
 * result lines `{"id", "result": …}`, `result` being the model's raw text or its decoded calls
 * (`[{name: {parameter: value}}]`, or `[{name: "<JSON arguments>"}]` from function-calling
 * models). An empty file is an error.
 */
export async function readPredictions(path: string): Promise<Map<string, Prediction>> {
  const label = `Predictions file ${path}`;
  let text: string;
  try {
    text = await readUtf8(path, label);
  } catch (e) {
    if (e instanceof EncodingError) throw new ScoreInputError(e.message, { cause: e });
    throw new ScoreInputError(`Cannot read predictions ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const out = new Map<string, Prediction>();
  let lines;
  try {
    lines = parseJsonl(text, label, parsePyJson);
  } catch (e) {
    throw new ScoreInputError((e as Error).message, { cause: e });
  }
  for (const { value: raw, line } of lines) {
    const v = raw as PyValue;
    const id = isDict(v) && v.id !== undefined && v.id !== null ? pyIdText(v.id) : undefined;
    const answer = isDict(v) ? (typeof v.output === "string" ? v.output : v.result) : undefined;
    if (
      id === undefined || answer === undefined ||
      (typeof answer !== "string" && !Array.isArray(answer))
    ) {
      throw new ScoreInputError(
        `${label} line ${line}: expected {"id": …, "output": "<text>"} or BFCL's ` +
          `{"id": …, "result": "<text>" | [calls]}, got ${clip(pyToJson(v))}`,
      );
    }
    if (out.has(id)) throw new ScoreInputError(`${label} line ${line}: id "${id}" appears twice`);
    out.set(id, typeof answer === "string" ? answer : { calls: answer });
  }
  if (out.size === 0) {
    throw new ScoreInputError(
      `${label} holds no predictions: expected one {"id": …, "output": "<text>"} per line`,
    );
  }
  return out;
}

/** An id as text (`7` and `"7"` alike). */
function pyIdText(id: PyValue): string {
  return typeof id === "string" ? id : pyToJson(id);
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** Per-sample results of scoring. */
export type SampleScore = (JsonScore | ToolScore) & { id: string; code: string };

/** Scores a predictions file against a dataset with a task's rules. */
export async function scorePredictions(
  task: string,
  datasetPath: string,
  predictionsPath: string,
): Promise<{ metrics: Metric[]; scores: SampleScore[] }> {
  if (!(SCORABLE_TASKS as readonly string[]).includes(task)) {
    throw new ScoreInputError(
      `Task "${task}" cannot score predictions; known: ${SCORABLE_TASKS.join(", ")}`,
    );
  }
  const predictions = await readPredictions(predictionsPath);
  const dataset = { id: datasetPath, path: datasetPath };
  const detail = `${task} scored predictions=${predictionsPath}`;
  if (task === "json") {
    const samples = await loadJsonSamples(dataset);
    checkIds(predictions, samples.map((s) => s.id), predictionsPath);
    const validator = new SchemaValidator();
    const scores: JsonScore[] = [];
    try {
      for (const s of samples) {
        const output = predictions.get(s.id);
        if (output !== undefined && typeof output !== "string") {
          throw new ScoreInputError(
            `${predictionsPath}: the prediction for "${s.id}" is a list of calls; the json task ` +
              `needs the answer text ("output")`,
          );
        }
        scores.push(
          output === undefined
            ? {
              id: s.id,
              parse_valid: 0,
              schema_valid: 0,
              exact_match: "gold" in s ? 0 : null,
              code: "missing_prediction",
              message: "no prediction for this id",
            }
            : await scoreJsonOutput(s, output, validator),
        );
      }
    } finally {
      validator.close();
    }
    return { metrics: jsonMetrics(scores, detail), scores };
  }
  const samples = await loadToolSamples(dataset);
  checkIds(predictions, samples.map((s) => s.id), predictionsPath);
  const scores = samples.map((s): ToolScore => {
    const output = predictions.get(s.id);
    return output === undefined
      ? {
        id: s.id,
        category: s.category,
        correct: 0,
        code: "missing_prediction",
        message: "no prediction for this id",
      }
      : scoreToolOutput(s, output);
  });
  return { metrics: toolMetrics(scores, detail), scores };
}

function checkIds(predictions: Map<string, Prediction>, ids: string[], path: string): void {
  const known = new Set(ids);
  const unknown = [...predictions.keys()].filter((id) => !known.has(id));
  if (unknown.length > 0) {
    throw new ScoreInputError(
      `${path}: ${unknown.length} prediction id(s) are not in the dataset, e.g. ` +
        unknown.slice(0, 3).map((id) => `"${id}"`).join(", "),
    );
  }
}

/**
 * A results file for scored predictions: one row per metric, with `model` the predictions file's
 * name, `task` the task, `dataset` the dataset file's name, and empty method, format and backend.
 */
export async function scoreResults(
  task: string,
  datasetPath: string,
  predictionsPath: string,
  argv: string[],
): Promise<{ file: ResultsFile; scores: SampleScore[] }> {
  const startedAt = new Date();
  const runId = startedAt.toISOString().replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
  const { metrics, scores } = await scorePredictions(task, datasetPath, predictionsPath);
  const rows = metrics.map((m) => ({
    run_id: runId,
    suite: "score",
    model: basename(predictionsPath),
    method: "",
    format: "",
    backend: "",
    task,
    dataset: basename(datasetPath),
    ...m,
    bits_per_weight: null,
    status: "ok" as const,
  }));
  const file: ResultsFile = {
    schema_version: 1,
    meta: {
      run_id: runId,
      suite: "score",
      suite_file: "",
      suite_hash: "",
      git_sha: null,
      deno_version: Deno.version.deno,
      quantbench_version: await codeVersion(),
      os: `${Deno.build.os}-${Deno.build.arch}`,
      adapter: null,
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      argv,
    },
    rows,
  };
  return { file, scores };
}
