/**
 * Loads a suite file: YAML with positions, then the JSON Schema (`harness/suite.schema.json`), then
 * checks against the registries and the file system. Every problem found is reported at once as
 * `PATH:LINE:COL: message (at /json/pointer)` in one {@linkcode SuiteError}.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  visit,
} from "yaml";
import Ajv2020 from "ajv/dist/2020.js";
import type { ErrorObject } from "ajv/dist/2020.js";
import schema from "../suite.schema.json" with { type: "json" };
import { didYouMean } from "../../core/registry.ts";
import { methods } from "../methods/registry.ts";
import { tasks } from "../tasks/registry.ts";
import { backends } from "../../kernels/registry.ts";
import { backendNames, engines as engineKinds } from "../engines/registry.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import { GGML_ACTIVATIONS } from "../../kernels/formats/ggml_activations.ts";
import { expandCells } from "./expand.ts";
import type {
  DatasetSpec,
  EngineSpec,
  ExcludeRule,
  FormatSpec,
  MethodSpec,
  ModelSpec,
  Suite,
  TaskSpec,
  Threshold,
} from "../../core/suite_types.ts";

/** One problem in a suite file, located by 1-based line and column and by JSON pointer. */
export interface SuiteIssue {
  /** The suite path exactly as the caller gave it. */
  path: string;
  line: number;
  col: number;
  /** JSON pointer of the offending value ("" for the whole document). */
  pointer: string;
  message: string;
}

/** Every problem found in a suite; the message holds one `PATH:LINE:COL: …` line per issue. */
export class SuiteError extends Error {
  override name = "SuiteError";

  constructor(readonly issues: SuiteIssue[], options?: ErrorOptions) {
    super(issues.map(formatIssue).join("\n"), options);
  }
}

/** `PATH:LINE:COL: message (at /pointer)`; the whole document shows as `/`. */
export function formatIssue(issue: SuiteIssue): string {
  return `${issue.path}:${issue.line}:${issue.col}: ${issue.message} (at ${issue.pointer || "/"})`;
}

/**
 * Reads, validates and normalises the suite at `path` (relative paths inside it resolve against
 * its folder). Throws {@linkcode SuiteError} listing every problem.
 */
export async function loadSuite(path: string): Promise<Suite> {
  let bytes: Uint8Array;
  let text: string;
  try {
    bytes = await Deno.readFile(path);
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (cause) {
    const why = cause instanceof TypeError ? "it is not UTF-8 text" : (cause as Error).message;
    const issue = { path, line: 1, col: 1, pointer: "", message: `cannot read the suite: ${why}` };
    throw new SuiteError([issue], { cause });
  }
  return await parseBytes(text, bytes, path);
}

/**
 * Validates and normalises suite text as if read from `path` (used in messages and to resolve
 * relative paths). Throws {@linkcode SuiteError} listing every problem.
 */
export async function parseSuite(text: string, path: string): Promise<Suite> {
  return await parseBytes(text, new TextEncoder().encode(text), path);
}

type Segment = string | number;
type Json = Record<string, unknown>;

async function parseBytes(text: string, bytes: Uint8Array, path: string): Promise<Suite> {
  const source = new Source(text, path);
  const data = source.issues.length === 0 ? source.toJS() : undefined;
  if (source.issues.length === 0) {
    if (data === null || data === undefined) {
      source.addAt(
        0,
        [],
        "the suite is empty; expected a mapping with name, models, methods, formats and tasks",
      );
    } else {
      checkSchema(data, source);
      const suite = isRecord(data)
        ? await new Normaliser(source, resolve(path)).run(data)
        : undefined;
      if (suite !== undefined && source.issues.length === 0) {
        suite.hash = createHash("sha256").update(bytes).digest("hex");
        if (expandCells(suite).length > 0) return suite;
        source.add(
          ["exclude"],
          "the suite expands to no cells: the exclude rules remove every combination of " +
            "models, methods, formats and backends",
          "key",
        );
      }
    }
  }
  throw new SuiteError(source.sorted());
}

/** The parsed YAML document with position lookups, and the issues found so far. */
class Source {
  readonly lines = new LineCounter();
  readonly doc: Document;
  readonly issues: SuiteIssue[] = [];

  constructor(readonly text: string, readonly path: string) {
    this.doc = parseDocument(text, {
      lineCounter: this.lines,
      uniqueKeys: true,
      prettyErrors: false,
    });
    this.#syntaxIssues();
  }

  /** Adds an issue at the key (`where: "key"`) or the value of the node at `segments`. */
  add(segments: Segment[], message: string, where: "key" | "value" = "value"): void {
    this.addAt(this.locate(segments, where), segments, message);
  }

  addAt(offset: number, segments: Segment[], message: string): void {
    const { line, col } = this.lines.linePos(offset);
    const pointer = segments.map((s) => "/" + String(s).replace(/~/g, "~0").replace(/\//g, "~1"))
      .join("");
    this.issues.push({ path: this.path, line, col, pointer, message });
  }

  /** Issues in file order; issues at one place keep the order they were found in. */
  sorted(): SuiteIssue[] {
    return this.issues.toSorted((a, b) => a.line - b.line || a.col - b.col);
  }

  /** The document as plain data, or undefined after reporting an alias that cannot resolve. */
  toJS(): unknown {
    visit(this.doc, {
      Alias: (_, node) => {
        if (node.resolve(this.doc) === undefined) {
          const at = node.range?.[0] ?? 0;
          this.addAt(
            at,
            this.pointerAt(at),
            `unknown alias "*${node.source}"; define "&${node.source}" before using it`,
          );
        }
      },
    });
    if (this.issues.length > 0) return undefined;
    try {
      return this.doc.toJS({ maxAliasCount: 1000 });
    } catch (error) {
      this.addAt(0, [], `cannot read the YAML: ${(error as Error).message}`);
      return undefined;
    }
  }

  /** Offset of the key or value at `segments`, or of the deepest existing node on that path. */
  locate(segments: Segment[], where: "key" | "value"): number {
    let node: unknown = this.doc.contents;
    let offset = startOf(node) ?? 0;
    let key: unknown;
    for (const segment of segments) {
      if (isAlias(node)) node = node.resolve(this.doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => keyText(p.key) === String(segment));
        if (pair === undefined) return offset;
        key = pair.key;
        node = pair.value;
        offset = valueStart(node) ?? startOf(key) ?? offset;
      } else if (isSeq(node)) {
        node = node.items[Number(segment)];
        key = undefined;
        if (node === undefined) return offset;
        offset = startOf(node) ?? offset;
      } else {
        return offset;
      }
    }
    return where === "key" ? startOf(key) ?? offset : offset;
  }

  /** The path of the innermost key or value at a text offset. */
  pointerAt(offset: number): Segment[] {
    const segments: Segment[] = [];
    let node: unknown = this.doc.contents;
    for (;;) {
      if (isMap(node)) {
        // Between entries (e.g. a broken value), the error belongs to the entry above it.
        const pair = node.items.find((p) => covers(p.key, offset) || covers(p.value, offset)) ??
          node.items.findLast((p) => (startOf(p.key) ?? Infinity) < offset);
        if (pair === undefined) return segments;
        if (covers(pair.key, offset)) {
          // A key running over several lines is the parser's reading of broken indentation, not
          // a key the author wrote: the error belongs to the mapping.
          const [start = 0, end = 0] = (pair.key as { range?: number[] }).range ?? [];
          if (!this.text.slice(start, end).includes("\n")) segments.push(keyText(pair.key));
          return segments;
        }
        segments.push(keyText(pair.key));
        node = pair.value;
      } else if (isSeq(node)) {
        const index = node.items.findIndex((item) => covers(item, offset));
        if (index < 0) return segments;
        segments.push(index);
        node = node.items[index];
      } else {
        return segments;
      }
    }
  }

  /** Turns the YAML parser's errors into issues in plain words, one per place. */
  #syntaxIssues(): void {
    const seen = new Set<number>();
    for (const error of this.doc.errors) {
      if (seen.has(error.pos[0])) continue;
      seen.add(error.pos[0]);
      let offset = error.pos[0];
      let message: string;
      const lineStart = this.text.lastIndexOf("\n", offset - 1) + 1;
      const indent = /^[ \t]*/.exec(this.text.slice(lineStart))![0];
      const tabbed = indent.includes("\t") && offset <= lineStart + indent.length;
      if (tabbed) {
        offset = lineStart + indent.indexOf("\t");
        message = "tab character in the indentation; indent with spaces";
      } else if (error.code === "DUPLICATE_KEY") {
        message = this.#duplicateKey(offset);
      } else if (error.code === "MISSING_CHAR" && /quote/.test(error.message)) {
        const quote = error.message.includes('"') ? '"' : "'";
        offset = this.#unclosedQuote(offset);
        message = `unclosed quote: this string has no closing ${quote}`;
      } else if (error.code === "MULTIPLE_DOCS") {
        message = 'more than one YAML document ("---"); a suite is a single document';
      } else if (error.code === "BLOCK_AS_IMPLICIT_KEY") {
        message = "bad indentation: the next line is indented further than this key's line";
      } else if (error.code === "BAD_INDENT" || /indicator|indent/i.test(error.message)) {
        message = `bad indentation: ${lowerFirst(error.message)}`;
      } else {
        message = `invalid YAML: ${lowerFirst(error.message)}`;
      }
      // Point at the first character of the line rather than at its indentation.
      if (!tabbed && offset >= lineStart && offset < lineStart + indent.length) {
        offset = lineStart + indent.length;
      }
      this.addAt(offset, error.code === "MULTIPLE_DOCS" ? [] : this.pointerAt(offset), message);
    }
  }

  #duplicateKey(offset: number): string {
    let message = "duplicate key";
    visit(this.doc, {
      Map: (_, map) => {
        const index = map.items.findIndex((p) => startOf(p.key) === offset);
        if (index < 0) return;
        const name = keyText(map.items[index]!.key);
        const first = map.items.find((p) => keyText(p.key) === name);
        const line = this.lines.linePos(startOf(first?.key) ?? 0).line;
        message = `duplicate key "${name}" (first defined on line ${line})`;
        return visit.BREAK;
      },
    });
    return message;
  }

  /** Where the quoted string that runs to `offset` opens. */
  #unclosedQuote(offset: number): number {
    let start = offset;
    visit(this.doc, {
      Scalar: (_, node) => {
        const range = node.range;
        const quoted = node.type === "QUOTE_DOUBLE" || node.type === "QUOTE_SINGLE";
        if (quoted && range && range[0] < offset && range[1] >= offset) start = range[0];
      },
    });
    return start;
  }
}

function startOf(node: unknown): number | undefined {
  return (node as { range?: [number, number, number] } | null)?.range?.[0];
}

/** A value's start, or undefined for an empty value (`key:` alone) so the key is shown instead. */
function valueStart(node: unknown): number | undefined {
  if (isScalar(node) && node.range && node.range[0] === node.range[1]) return undefined;
  return startOf(node);
}

function covers(node: unknown, offset: number): boolean {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range !== undefined && offset >= range[0] && offset < Math.max(range[2], range[0] + 1);
}

function keyText(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

// ---------------------------------------------------------------------------------------------
// JSON Schema

let validator: ReturnType<InstanceType<typeof Ajv2020.default>["compile"]> | undefined;

/** Words for the JSON type names in the schema. */
const TYPE_WORDS: Record<string, string> = {
  string: "a string",
  integer: "an integer",
  number: "a number",
  boolean: "true or false",
  object: "a mapping",
  array: "a list",
  null: "nothing",
};

/** Plain descriptions of the schema's patterns. */
const PATTERN_WORDS: Record<string, string> = {
  "^[A-Za-z0-9_.-]+$": 'letters, digits, "_", "." and "-" only',
  "^!?[A-Za-z0-9_.-]+$": 'an id of letters, digits, "_", "." and "-", optionally after "!"',
};

/** How a value reads in a message: strings quoted, collections named. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return value.length === 0 ? "an empty list" : "a list";
  if (typeof value === "object") return "a mapping";
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function typeMatches(type: unknown, value: unknown): boolean {
  const actual = jsonType(value);
  return type === actual || (type === "number" && actual === "integer");
}

function typeWords(type: unknown): string {
  return [type].flat().map((t) => TYPE_WORDS[String(t)] ?? String(t)).join(" or ");
}

function segmentsOf(pointer: string): string[] {
  return pointer === ""
    ? []
    : pointer.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

/** Validates against the JSON Schema and reports each failure in plain words. */
function checkSchema(data: unknown, source: Source): void {
  validator ??= new Ajv2020.default({ allErrors: true, verbose: true, strict: true })
    .compile(schema);
  if (validator(data)) return;
  const errors = validator.errors ?? [];
  const dropped = new Set<ErrorObject>();
  // For `string | mapping` entries, keep only the errors of the branch the value's type selects.
  for (const e of errors) {
    if (e.keyword !== "anyOf") continue;
    dropped.add(e);
    const branches = e.schema as { type?: unknown; title?: string }[];
    const chosen = branches.findIndex((b) => typeMatches(b.type, e.data));
    const prefix = `${e.schemaPath}/`;
    for (const other of errors) {
      if (
        other.instancePath === e.instancePath && other.schemaPath.startsWith(prefix) &&
        (chosen < 0 || !other.schemaPath.startsWith(`${prefix}${chosen}/`))
      ) dropped.add(other);
    }
    if (chosen < 0) {
      const expected = branches
        .map((b) => b.title === undefined ? typeWords(b.type) : `a ${lowerFirst(b.title)}`)
        .join(" or ");
      source.add(segmentsOf(e.instancePath), `expected ${expected}, got ${describe(e.data)}`);
    }
  }
  // An unknown key that suggests a missing required key explains the missing key already.
  const suggested = new Set<string>();
  for (const e of errors) {
    if (e.keyword !== "additionalProperties" || dropped.has(e)) continue;
    const key = (e.params as { additionalProperty: string }).additionalProperty;
    const known = Object.keys((e.parentSchema as { properties?: Json }).properties ?? {});
    const suggestion = didYouMean(key, known);
    const segments = [...segmentsOf(e.instancePath), key];
    if (suggestion !== undefined) {
      suggested.add(`${e.instancePath}/${suggestion}`);
      source.add(segments, `unknown key "${key}"; did you mean "${suggestion}"?`, "key");
    } else {
      source.add(segments, `unknown key "${key}". Known: ${known.join(", ")}`, "key");
    }
    dropped.add(e);
  }
  for (const e of errors) {
    // An `if` only says its `then` or `else` failed; their own errors say how.
    if (e.keyword === "if" || dropped.has(e) || "propertyName" in e) continue;
    const segments = segmentsOf(e.instancePath);
    const parent = e.parentSchema as { type?: unknown; properties?: Json };
    switch (e.keyword) {
      case "required": {
        const missing = (e.params as { missingProperty: string }).missingProperty;
        if (suggested.has(`${e.instancePath}/${missing}`)) break;
        const misspelt = Object.keys(e.data as Json).find((k) =>
          !(k in (parent.properties ?? {})) && didYouMean(k, [missing]) !== undefined
        );
        const hint = misspelt === undefined ? "" : `; is "${misspelt}" a misspelling of it?`;
        source.add(segments, `missing required key "${missing}"${hint}`);
        break;
      }
      case "propertyNames": {
        const name = (e.params as { propertyName: string }).propertyName;
        source.add(
          [...segments, name],
          `invalid name "${name}": use ${PATTERN_WORDS["^[A-Za-z0-9_.-]+$"]}`,
          "key",
        );
        break;
      }
      case "type":
        source.add(segments, `expected ${typeWords(e.schema)}, got ${describe(e.data)}`);
        break;
      case "pattern": {
        const words = PATTERN_WORDS[String(e.schema)] ?? `the pattern ${String(e.schema)}`;
        source.add(segments, `expected ${words}, got ${describe(e.data)}`);
        break;
      }
      case "minimum":
        source.add(
          segments,
          `expected ${typeWords(parent.type)} of at least ${e.schema}, got ${describe(e.data)}`,
        );
        break;
      case "minItems":
        source.add(segments, "the list is empty; add at least one entry");
        break;
      case "minLength":
        source.add(segments, "expected a non-empty string");
        break;
      case "minProperties":
        source.add(
          segments,
          `expected at least one of: ${Object.keys(parent.properties ?? {}).join(", ")}`,
        );
        break;
      case "enum": {
        const allowed = (e.schema as unknown[]).map(String);
        const suggestion = typeof e.data === "string" ? didYouMean(e.data, allowed) : undefined;
        const hint = suggestion === undefined ? "" : `; did you mean "${suggestion}"?`;
        source.add(
          segments,
          `expected one of ${allowed.join(", ")}, got ${describe(e.data)}${hint}`,
        );
        break;
      }
      default:
        source.add(segments, e.message ?? `fails the schema's "${e.keyword}" rule`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Checks against the registries and the file system, and normalisation

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** `; did you mean "x"?` when a known name is close, else the list of known names. */
function hint(name: string, known: readonly string[], none: string): string {
  const suggestion = didYouMean(name, known);
  if (suggestion !== undefined) return `; did you mean "${suggestion}"?`;
  return known.length > 0 ? `. Known: ${known.join(", ")}` : `; ${none}`;
}

/** The message for a name missing from a registry: suggestion first, then every known name. */
function unknownName(kind: string, name: string, known: readonly string[]): string {
  const suggestion = didYouMean(name, known);
  const guess = suggestion === undefined ? "." : `; did you mean "${suggestion}"?`;
  return `unknown ${kind} "${name}"${guess} Known: ${known.join(", ")}`;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** Which words describe values like a registry default, for checking option types. */
function expectedLike(example: unknown): string | undefined {
  if (example === null || example === undefined) return undefined;
  const type = Array.isArray(example)
    ? "array"
    : typeof example === "object"
    ? "object"
    : typeof example;
  return TYPE_WORDS[type];
}

/** Builds the normalised suite while reporting every semantic problem to the source. */
class Normaliser {
  readonly dir: string;
  readonly datasets: Record<string, DatasetSpec> = {};
  readonly datasetIds = new Set<string>();
  /** Every id written for a model, method or format, valid or not, for `exclude` to refer to. */
  readonly known = {
    model: new Set<string>(),
    method: new Set<string>(),
    format: new Set<string>(),
  };

  constructor(readonly source: Source, readonly file: string) {
    this.dir = dirname(file);
  }

  async run(data: Json): Promise<Suite> {
    for (const id of Object.keys(isRecord(data.datasets) ? data.datasets : {})) {
      this.datasetIds.add(id);
    }
    const models = await this.models(data.models);
    await this.namedDatasets(data.datasets);
    const methodSpecs = this.methods(data.methods);
    const formats = this.formats(data.formats);
    const engineSpecs = this.engines(data.engines);
    const backendNames = this.backends(data.backends, engineSpecs);
    const taskSpecs = await this.tasks(data.tasks);
    this.methodTasks(data.methods, taskSpecs);
    const exclude = this.exclude(data.exclude);
    return {
      file: this.file,
      name: String(data.name),
      seed: typeof data.seed === "number" ? data.seed : 0,
      models,
      datasets: this.datasets,
      methods: methodSpecs,
      formats,
      backends: backendNames,
      ...(Object.keys(engineSpecs).length > 0 ? { engines: engineSpecs } : {}),
      tasks: taskSpecs,
      exclude,
      thresholds: (isRecord(data.thresholds) ? data.thresholds : {}) as Record<string, Threshold>,
      hash: "",
    };
  }

  /** Reports a duplicate at its second use (`what` names it); returns whether it was new. */
  unique(seen: Map<string, Segment[]>, key: string, segments: Segment[], what: string): boolean {
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, segments);
      return true;
    }
    const line = this.source.lines.linePos(this.source.locate(first, "value")).line;
    this.source.add(segments, `duplicate ${what} (first used on line ${line})`);
    return false;
  }

  /**
   * The absolute path of `written` if it exists (and is a file when `file`), else undefined after
   * reporting the problem.
   */
  async existing(
    segments: Segment[],
    written: string,
    what: string,
    file: boolean,
  ): Promise<string | undefined> {
    const abs = resolve(this.dir, written);
    try {
      const info = await Deno.stat(abs);
      if (file && info.isDirectory) {
        this.source.add(
          segments,
          `${what} "${written}" is a directory, not a file (resolved to ${abs})`,
        );
        return undefined;
      }
      return abs;
    } catch (error) {
      const message = error instanceof Deno.errors.NotFound
        ? `${what} "${written}" does not exist (resolved to ${abs})`
        : `cannot read ${what} "${written}" (resolved to ${abs}): ${(error as Error).message}`;
      this.source.add(segments, message);
      return undefined;
    }
  }

  async models(value: unknown): Promise<ModelSpec[]> {
    const specs: ModelSpec[] = [];
    const seen = new Map<string, Segment[]>();
    for (const [i, entry] of list(value).entries()) {
      if (!isRecord(entry)) continue;
      const at: Segment[] = ["models", i];
      const id = typeof entry.id === "string" ? entry.id : undefined;
      if (id !== undefined) {
        this.known.model.add(id);
        this.unique(seen, id, [...at, "id"], `model id "${id}"`);
      }
      const path = typeof entry.path === "string"
        ? await this.existing([...at, "path"], entry.path, "model file", false)
        : undefined;
      const tokenizer = typeof entry.tokenizer === "string"
        ? await this.existing([...at, "tokenizer"], entry.tokenizer, "tokenizer file", true)
        : path === undefined
        ? undefined
        : await findTokenizer(path);
      if (id === undefined || path === undefined) continue;
      specs.push(tokenizer === undefined ? { id, path } : { id, path, tokenizer });
    }
    return specs;
  }

  async namedDatasets(value: unknown): Promise<void> {
    if (!isRecord(value)) return;
    for (const [id, entry] of Object.entries(value)) {
      if (!isRecord(entry) || typeof entry.path !== "string") continue;
      const path = await this.existing(["datasets", id, "path"], entry.path, "dataset file", true);
      if (path === undefined || (entry.kind !== "text" && entry.kind !== "jsonl")) continue;
      const spec: DatasetSpec = {
        id,
        kind: entry.kind,
        path,
        maxChars: typeof entry.max_chars === "number" ? entry.max_chars : 0,
      };
      if (typeof entry.skip_chars === "number" && entry.skip_chars > 0) {
        spec.skipChars = entry.skip_chars;
      }
      if (typeof entry.separator === "string") spec.separator = entry.separator;
      this.datasets[id] = spec;
    }
  }

  /** Reports a reference to a dataset id that `datasets` does not define. */
  checkDatasetId(segments: Segment[], id: string): void {
    if (this.datasetIds.has(id)) return;
    const known = [...this.datasetIds];
    this.source.add(
      segments,
      `dataset "${id}" is not defined in datasets${hint(id, known, "the suite defines none")}`,
    );
  }

  /** Reports an option naming a dataset that is not a `text` dataset of the suite. */
  checkTextDataset(segments: Segment[], id: string): void {
    if (!this.datasetIds.has(id)) return this.checkDatasetId(segments, id);
    const spec = this.datasets[id];
    if (spec && spec.kind !== "text") {
      this.source.add(segments, `dataset "${id}" is ${spec.kind}; "text" needs a text dataset`);
    }
  }

  /**
   * Checks the options written for a method or task against the registry's defaults (names, and
   * value types where the default has one) and returns the defaults overlaid with them.
   */
  options(
    at: Segment[],
    written: Json,
    defaults: Record<string, unknown>,
    owner: string,
  ): Record<string, unknown> {
    const options = structuredClone(defaults);
    const known = Object.keys(defaults);
    for (const [key, value] of Object.entries(written)) {
      if (!(key in defaults)) {
        this.source.add(
          [...at, key],
          `unknown option "${key}" for ${owner}${hint(key, known, "it takes no options")}`,
          "key",
        );
        continue;
      }
      const expected = expectedLike(defaults[key]);
      if (expected !== undefined && expectedLike(value) !== expected) {
        this.source.add([...at, key], `expected ${expected}, got ${describe(value)}`);
        continue;
      }
      options[key] = value;
    }
    return options;
  }

  methods(value: unknown): MethodSpec[] {
    const specs: MethodSpec[] = [];
    const seen = new Map<string, Segment[]>();
    for (const [i, entry] of list(value).entries()) {
      const at: Segment[] = ["methods", i];
      const fields = isRecord(entry) ? entry : {};
      const name = typeof entry === "string" ? entry : fields.method;
      if (typeof name !== "string") continue;
      const nameAt = typeof entry === "string" ? at : [...at, "method"];
      const id = typeof fields.id === "string" ? fields.id : name;
      this.known.method.add(id);
      const idAt = fields.id === undefined ? nameAt : [...at, "id"];
      const fresh = this.unique(seen, id, idAt, `method id "${id}"`);
      if (!methods.has(name)) {
        this.source.add(nameAt, unknownName("method", name, methods.names()));
        continue;
      }
      const method = methods.get(name);
      const { id: _id, method: _method, calibration, ...written } = fields;
      const owner = `method "${name}"`;
      const options = this.options(at, written, method.options, owner);
      try {
        method.checkOptions?.(options);
      } catch (e) {
        this.source.add(at, `${owner}: ${e instanceof Error ? e.message : String(e)}`);
        continue;
      }
      if (calibration !== undefined && !("calibration" in method.options)) {
        this.source.add([...at, "calibration"], `${owner} does not use calibration data`, "key");
      } else if (Array.isArray(calibration)) {
        // Calibration sensitivity: one method per calibration set, `<id>@<dataset>`.
        const sets = new Map<string, Segment[]>();
        for (const [j, set] of calibration.entries()) {
          const setAt: Segment[] = [...at, "calibration", j];
          const resolved = this.calibration(setAt, set, method.options.calibration);
          if (!resolved) continue;
          const dataset = String(resolved.dataset);
          const setId = `${id}@${dataset}`;
          this.known.method.add(setId);
          const first = this.unique(
            sets,
            dataset,
            [...setAt, "dataset"],
            `calibration set "${dataset}"`,
          );
          if (
            fresh && first &&
            this.unique(seen, setId, [...setAt, "dataset"], `method id "${setId}"`)
          ) {
            specs.push({
              id: setId,
              method: name,
              options: { ...options, calibration: resolved },
              calibrationSet: { of: id, dataset },
            });
          }
        }
        continue;
      } else if (calibration !== undefined) {
        const resolved = this.calibration(
          [...at, "calibration"],
          calibration,
          method.options.calibration,
        );
        if (resolved) options.calibration = resolved;
      }
      if (fresh) specs.push({ id, method: name, options });
    }
    return specs;
  }

  /**
   * Reports, at its entry, a method whose models mean something for some tasks only (see
   * `Method.tasks`) in a suite that runs other tasks: an impossible combination, since every
   * task runs on every cell.
   */
  methodTasks(value: unknown, taskSpecs: readonly TaskSpec[]): void {
    for (const [i, entry] of list(value).entries()) {
      const name = typeof entry === "string" ? entry : isRecord(entry) ? entry.method : undefined;
      if (typeof name !== "string" || !methods.has(name)) continue;
      const only = methods.get(name).tasks;
      if (only === undefined) continue;
      const others = [...new Set(taskSpecs.map((t) => t.task).filter((t) => !only.includes(t)))];
      if (others.length === 0) continue;
      this.source.add(
        typeof entry === "string" ? ["methods", i] : ["methods", i, "method"],
        `impossible combination: method "${name}" is for ${only.join(", ")} only, but the ` +
          `suite also runs task${others.length > 1 ? "s" : ""} ` +
          `${others.map((t) => `"${t}"`).join(", ")}; use it in a suite whose tasks are ` +
          `${only.join(", ")} only`,
      );
    }
  }

  /** A `calibration` entry merged over the method's defaults; undefined when unusable. */
  calibration(at: Segment[], value: unknown, base: unknown): Record<string, unknown> | undefined {
    if (!isRecord(value) || typeof value.dataset !== "string") return undefined;
    this.checkDatasetId([...at, "dataset"], value.dataset);
    return isRecord(base) ? { ...base, ...value } : value;
  }

  /** Reports an element format name missing from the registry; true when it is known. */
  checkElement(segments: Segment[], name: unknown): boolean {
    if (typeof name !== "string") return false;
    if (elementFormats.has(name)) return true;
    this.source.add(segments, unknownName("weight format", name, elementFormats.names()));
    return false;
  }

  /** Reports a group size that is neither 0 nor a power of two of at least 8. */
  checkGroup(segments: Segment[], group: unknown): void {
    if (typeof group !== "number" || !Number.isInteger(group) || group < 0) return;
    if (group === 0 || (group >= 8 && isPowerOfTwo(group))) return;
    this.source.add(
      segments,
      `expected 0 (one scale per output channel) or a power of two of at least 8, got ${group}`,
    );
  }

  formats(value: unknown): FormatSpec[] {
    const specs: FormatSpec[] = [];
    const seen = new Map<string, Segment[]>();
    for (const [i, entry] of list(value).entries()) {
      const at: Segment[] = ["formats", i];
      if (typeof entry === "string") {
        this.known.format.add(entry);
        const fresh = this.unique(seen, entry, at, `format id "${entry}"`);
        if (this.checkElement(at, entry) && fresh) {
          specs.push({ id: entry, weights: entry, group: 0, symmetric: true, options: {} });
        }
        continue;
      }
      if (!isRecord(entry) || typeof entry.weights !== "string") continue;
      const { group = 0, symmetric = true } = entry;
      let ok = this.checkElement([...at, "weights"], entry.weights);
      this.checkGroup([...at, "group"], group);
      // The default id is only meaningful once group and symmetric have their schema types.
      if (typeof group !== "number" || typeof symmetric !== "boolean") continue;
      const restricted = entry.range === "restricted";
      const id = typeof entry.id === "string"
        ? entry.id
        : entry.weights + (group ? `-g${group}` : "") + (symmetric ? "" : "-asym") +
          (restricted ? "-restricted" : "");
      this.known.format.add(id);
      const idAt = entry.id === undefined ? at : [...at, "id"];
      const fresh = this.unique(seen, id, idAt, `format id "${id}"`);
      const options: Record<string, unknown> = {};
      if (entry.activations !== undefined) {
        // `ggml`: rounded as llama.cpp's CPU matmuls round them (kernels/formats/ggml_activations.ts).
        if (entry.activations !== GGML_ACTIVATIONS) {
          ok = this.checkElement([...at, "activations"], entry.activations) && ok;
        }
        options.activations = entry.activations;
      }
      if (isRecord(entry.kv_cache)) {
        const { format, group: kvGroup = 0, residual } = entry.kv_cache;
        ok = this.checkElement([...at, "kv_cache", "format"], format) && ok;
        this.checkGroup([...at, "kv_cache", "group"], kvGroup);
        // The residual window keeps its default (runtime_quant.ts) unless written.
        options.kv_cache = residual === undefined
          ? { format, group: kvGroup }
          : { format, group: kvGroup, residual };
      }
      if (entry.scale_dtype !== undefined) options.scale_dtype = entry.scale_dtype;
      if (entry.range !== undefined) {
        options.range = entry.range;
        if (ok && elementFormats.get(entry.weights).kind !== "int") {
          this.source.add(
            [...at, "range"],
            `range applies to integer weight formats (int2 … int8), not "${entry.weights}"`,
          );
          ok = false;
        } else if (restricted && !symmetric) {
          this.source.add(
            [...at, "range"],
            "range: restricted is a symmetric scheme; use symmetric: true or drop range",
          );
          ok = false;
        }
      }
      if (ok && fresh) specs.push({ id, weights: entry.weights, group, symmetric, options });
    }
    return specs;
  }

  /** The `engines:` entries (the schema has checked their settings). */
  engines(value: unknown): Record<string, EngineSpec> {
    const out: Record<string, EngineSpec> = {};
    if (!isRecord(value)) return out;
    for (const [id, entry] of Object.entries(value)) {
      if (!isRecord(entry)) continue;
      const kind = typeof entry.kind === "string" ? entry.kind : id;
      if (backends.has(id)) {
        this.source.add(
          ["engines", id],
          `engine "${id}" has the name of a built-in backend; give it another name`,
          "key",
        );
      } else if (!engineKinds.has(kind)) {
        this.source.add(
          entry.kind === undefined ? ["engines", id] : ["engines", id, "kind"],
          `${unknownName("engine kind", kind, engineKinds.names())} (an entry named otherwise ` +
            `says its kind, e.g. "kind: openai")`,
          entry.kind === undefined ? "key" : "value",
        );
      } else {
        const { kind: _, ...options } = entry;
        out[id] = { id, kind, options };
      }
    }
    return out;
  }

  backends(value: unknown, suiteEngines: Record<string, EngineSpec>): string[] {
    if (value === undefined) return ["cpu"];
    const names: string[] = [];
    const seen = new Map<string, Segment[]>();
    for (const [i, name] of list(value).entries()) {
      if (typeof name !== "string") continue;
      if (!this.unique(seen, name, ["backends", i], `backend "${name}"`)) continue;
      const settingsFree = engineKinds.has(name) && engineKinds.get(name).model !== "served";
      if (backends.has(name) || settingsFree || suiteEngines[name] !== undefined) names.push(name);
      else if (engineKinds.has(name)) {
        this.source.add(
          ["backends", i],
          `backend "${name}" is an engine that needs settings: add an "engines:" entry ` +
            `"${name}" (for openai: base_url and model)`,
        );
      } else {
        this.source.add(
          ["backends", i],
          unknownName("backend", name, [...backendNames(), ...Object.keys(suiteEngines)]),
        );
      }
    }
    return names;
  }

  /** The id of a task's dataset: a named dataset, or a file path that becomes one. */
  async taskDataset(segments: Segment[], written: string): Promise<string | undefined> {
    if (this.datasetIds.has(written)) return written;
    if (!written.includes("/") && !/\.(txt|jsonl|json)$/.test(written)) {
      this.checkDatasetId(segments, written);
      return undefined;
    }
    if (this.datasets[written] === undefined) {
      const path = await this.existing(segments, written, "dataset file", true);
      if (path === undefined) return undefined;
      const kind = /\.jsonl?$/.test(written) ? "jsonl" : "text";
      this.datasets[written] = { id: written, kind, path, maxChars: 0 };
    }
    return written;
  }

  async tasks(value: unknown): Promise<TaskSpec[]> {
    const specs: TaskSpec[] = [];
    const seen = new Map<string, Segment[]>();
    for (const [i, entry] of list(value).entries()) {
      const at: Segment[] = ["tasks", i];
      const fields = isRecord(entry) ? entry : {};
      const name = typeof entry === "string" ? entry : fields.task;
      if (typeof name !== "string") continue;
      const nameAt = typeof entry === "string" ? at : [...at, "task"];
      if (!tasks.has(name)) {
        this.source.add(nameAt, unknownName("task", name, tasks.names()));
        continue;
      }
      const task = tasks.get(name);
      const { id: rawId, task: _task, dataset: rawDataset, ...written } = fields;
      const id = typeof rawId === "string" ? rawId : name;
      const options = this.options(at, written, task.options, `task "${name}"`);
      if (typeof options.text === "string" && options.text !== "") {
        this.checkTextDataset([...at, "text"], options.text);
      }
      const reference = written.reference;
      if (isRecord(reference) && reference.model !== undefined) {
        const model = reference.model;
        if (typeof model !== "string" || !this.known.model.has(model)) {
          this.source.add(
            [...at, "reference", "model"],
            unknownName("reference model", String(model), [...this.known.model]),
          );
        }
      }
      let dataset: string | undefined;
      if (typeof rawDataset === "string") {
        dataset = await this.taskDataset([...at, "dataset"], rawDataset);
        if (dataset === undefined) continue;
      } else if (rawDataset === undefined && task.needsDataset) {
        this.source.add(
          at,
          `task "${name}" needs a dataset; add "dataset:" with a dataset id or a file path`,
        );
        continue;
      }
      const what = dataset === undefined
        ? `task id "${id}"`
        : `task id "${id}" on dataset "${dataset}"`;
      const idAt = rawId === undefined ? nameAt : [...at, "id"];
      if (!this.unique(seen, `${id}\n${dataset}`, idAt, what)) continue;
      specs.push(
        dataset === undefined ? { id, task: name, options } : { id, task: name, dataset, options },
      );
    }
    return specs;
  }

  /** Copies the exclude rules, reporting names that match no model, method, format or backend. */
  exclude(value: unknown): ExcludeRule[] {
    const known: Record<keyof ExcludeRule, string[]> = {
      model: [...this.known.model],
      method: [...new Set([...this.known.method, ...methods.names()])],
      format: [...new Set([...this.known.format, ...elementFormats.names()])],
      backend: backendNames(),
    };
    const rules: ExcludeRule[] = [];
    for (const [i, entry] of list(value).entries()) {
      if (!isRecord(entry)) continue;
      const rule: ExcludeRule = {};
      for (const field of ["model", "method", "format", "backend"] as const) {
        const written = entry[field];
        if (typeof written !== "string") continue;
        const name = written.startsWith("!") ? written.slice(1) : written;
        // Values that fail the schema's pattern are reported there already.
        if (/^[A-Za-z0-9_.-]+$/.test(name) && !known[field].includes(name)) {
          this.source.add(["exclude", i, field], unknownName(field, name, known[field]));
        }
        rule[field] = written;
      }
      rules.push(rule);
    }
    return rules;
  }
}

/** A llama2.c checkpoint's tokenizer: the one `tok*.bin` file beside a `.bin` model, if any. */
async function findTokenizer(model: string): Promise<string | undefined> {
  if (!model.endsWith(".bin")) return undefined;
  const found: string[] = [];
  try {
    for await (const e of Deno.readDir(dirname(model))) {
      if (e.isFile && /^tok.*\.bin$/.test(e.name) && e.name !== basename(model)) found.push(e.name);
    }
  } catch {
    return undefined;
  }
  return found.length === 1 ? join(dirname(model), found[0]!) : undefined;
}
