/**
 * The normalised, validated form of a suite file: what the loader produces and the runner consumes.
 * Paths are absolute; every optional setting has its default filled in.
 *
 * @module
 */

/** A model entry: an HF directory, a `.gguf` file or a llama2.c `.bin` (with its tokenizer). */
export interface ModelSpec {
  id: string;
  /** Absolute path to the model file or directory. */
  path: string;
  /** Absolute path to a separate tokenizer file (llama2.c `tok*.bin`), when given or found. */
  tokenizer?: string;
}

/** A named dataset. `text` datasets are read as UTF-8; `jsonl` as one JSON value per line. */
export interface DatasetSpec {
  id: string;
  kind: "text" | "jsonl";
  /** Absolute path. */
  path: string;
  /** Only the first `max_chars` characters of a text file are used (0 = all). */
  maxChars: number;
  /** Characters skipped at the start of a text file, before `max_chars` applies (0 = none). */
  skipChars?: number;
  /** Splits a text dataset into documents (for per-document protocols); undefined = one document. */
  separator?: string;
}

/** A quantization method with its options (as written in the suite, minus `id` and `method`). */
export interface MethodSpec {
  /** Name shown in reports: `id` if given, else the method name. */
  id: string;
  /** Registry name, e.g. `none`, `rtn`, `gptq`. */
  method: string;
  options: Record<string, unknown>;
  /**
   * Set when the suite lists several calibration sets for one method entry (calibration
   * sensitivity): the entry's own id (`of`) and the calibration dataset of this one; `id` is then
   * `<of>@<dataset>`.
   */
  calibrationSet?: { of: string; dataset: string };
}

/**
 * A number format. `weights` names the element format of linear weights (`f32`, `int8`, `int4`, …);
 * `group` is the number of weights per scale along the input dimension (0 = one per output channel).
 */
export interface FormatSpec {
  /** Name shown in reports: `id` if given, else the preset name. */
  id: string;
  weights: string;
  group: number;
  symmetric: boolean;
  /** Extra format settings (activations, kv_cache, scale dtype) kept for later layers. */
  options: Record<string, unknown>;
}

/** A task with its options (as written, minus `id`, `task` and `dataset`). */
export interface TaskSpec {
  /** Name shown in reports: `id` if given, else the task name. */
  id: string;
  task: string;
  /** Dataset id from the suite's `datasets`, if the task takes one. */
  dataset?: string;
  options: Record<string, unknown>;
}

/** One `exclude` rule: every given field must match (a leading `!` negates). */
export interface ExcludeRule {
  model?: string;
  method?: string;
  format?: string;
  backend?: string;
}

/** A practical threshold for `compare`. */
export interface Threshold {
  max_relative_increase?: number;
  max_relative_decrease?: number;
  max_absolute_increase?: number;
  max_absolute_drop?: number;
}

/**
 * An engine a suite sets up under a backend name (`engines:`): which registered engine (`kind`)
 * and its settings as written (e.g. the `openai` engine's `base_url` and `model`).
 */
export interface EngineSpec {
  /** The backend name cells give it. */
  id: string;
  /** A name in the engines registry (`harness/engines/registry.ts`). */
  kind: string;
  options: Record<string, unknown>;
}

/** A loaded suite. */
export interface Suite {
  /** Absolute path of the suite file. */
  file: string;
  name: string;
  seed: number;
  models: ModelSpec[];
  datasets: Record<string, DatasetSpec>;
  methods: MethodSpec[];
  formats: FormatSpec[];
  backends: string[];
  /** Engines set up under backend names (absent or empty: none). */
  engines?: Record<string, EngineSpec>;
  tasks: TaskSpec[];
  exclude: ExcludeRule[];
  thresholds: Record<string, Threshold>;
  /** SHA-256 (hex) of the suite file's bytes. */
  hash: string;
}

/** One point of the matrix: a model quantized with a method into a format, run on a backend. */
export interface Cell {
  /** `model/method/format/backend`, unique within a suite. */
  id: string;
  model: ModelSpec;
  method: MethodSpec;
  format: FormatSpec;
  backend: string;
  /** Set when the combination cannot be served; the cell's rows are `skipped` with this reason. */
  skipReason?: string;
}
