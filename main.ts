/**
 * quantbench's single entry point: `deno task <command>` runs `main.ts <command> …`.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { basename, join, resolve } from "node:path";
import { existsSync, statSync } from "node:fs";
import { loadSuite } from "./harness/suite/load.ts";
import { formatCellTable } from "./harness/suite/expand.ts";
import { planCells, runSuite } from "./harness/runner/run.ts";
import { parseShard, selectShard } from "./harness/runner/shard.ts";
import { rowsToCsv } from "./reports/csv.ts";
import { readResults, resultsToJson } from "./reports/json.ts";
import { renderHtml } from "./reports/html.ts";
import { summaryMarkdown } from "./reports/markdown.ts";
import { writeFileAtomic } from "./core/atomic.ts";
import {
  compareResults,
  comparisonHasRegression,
  comparisonToJson,
  parseThresholdFlag,
} from "./reports/compare.ts";
import { renderComparisonMarkdown, renderStepSummary } from "./reports/compare_markdown.ts";
import { renderComparisonHtml } from "./reports/compare_html.ts";
import {
  type Objective,
  parseBytes,
  parseMaxDrop,
  recommend as buildRecommendation,
  RecommendError,
} from "./reports/recommend.ts";
import {
  recommendationToJson,
  renderRecommendationMarkdown,
} from "./reports/recommend_markdown.ts";
import { mergeShards } from "./harness/runner/merge.ts";
import type { ResultsFile } from "./core/row.ts";
import type { Threshold } from "./core/suite_types.ts";
import { runPerf } from "./kernels/perf.ts";
import { runInspect } from "./harness/models/inspect.ts";
import { runQuantize } from "./harness/runner/quantize_command.ts";

/** Exit codes (DESIGN.md): 0 ok, 1 failed cells or a regression, 2 invalid input. */
export const EXIT = { ok: 0, failed: 1, invalid: 2 } as const;

/** A user error: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

const USAGE = `quantbench — what do you lose and gain by quantizing a model this way?

usage:
  deno task bench SUITE.yaml [--out DIR] [--backend cpu] [--filter EXPR] [--limit N]
                             [--dry-run] [--fresh] [--shard I/N] [--quiet] [--cache DIR]
  deno task validate SUITE.yaml [--filter EXPR]
  deno task compare BASE HEAD [--suite SUITE.yaml] [--threshold METRIC=REL]... [--markdown FILE]
                             [--html FILE] [--json FILE]
  deno task recommend RESULTS.json [--memory 24GiB] [--context N] [--batch N]
                             [--hardware h100|a100|l4|rtx4090|b200|m2|cpu-avx2|webgpu]
                             [--max-drop TASK.METRIC=DROP,...] [--max-ppl-increase REL]
                             [--objective memory|speed|quality] [--kv runtime|deployment]
                             [--suite SUITE.yaml] [--markdown FILE] [--html FILE] [--json FILE]
  deno task merge OUT_DIR SHARD_DIR... [--suite SUITE.yaml]
  deno task report RESULTS.json [--out DIR]
  deno task perf [--rows N] [--out DIR] [--backend cpu|webgpu] [--formats A,B]
                 [--sweep] [--sweep-gemm] [--sweep-codebook] [--atb]
  deno task inspect MODEL [--json]
  deno task quantize SUITE.yaml --filter CELL --out DIR [--as gguf|gptq|awq|compressed-tensors]
  deno task score TASK --dataset FILE --predictions FILE [--out DIR] [--samples FILE]
  deno task serve SUITE.yaml --filter CELL [--port N] [--host ADDR] [--model-name NAME]
                             [--max-queue N] [--cache DIR]
`;

function write(text: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(text));
}

function parse<O extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`, { cause: e });
  }
}

function positional(positionals: string[], count: number, what: string): string[] {
  if (positionals.length !== count) {
    throw new UsageError(`Expected ${what}, got ${positionals.length} argument(s)\n\n${USAGE}`);
  }
  return positionals;
}

function utcStamp(d = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
}

/** Writes results.json, results.csv and report.html into `dir`, each atomically. */
export async function writeReports(dir: string, file: ResultsFile): Promise<void> {
  await writeFileAtomic(join(dir, "results.csv"), rowsToCsv(file.rows));
  await writeFileAtomic(join(dir, "results.json"), resultsToJson(file));
  await writeFileAtomic(join(dir, "report.html"), renderHtml(file));
}

async function bench(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    out: { type: "string" },
    backend: { type: "string" },
    filter: { type: "string" },
    limit: { type: "string" },
    "dry-run": { type: "boolean" },
    fresh: { type: "boolean" },
    shard: { type: "string" },
    quiet: { type: "boolean" },
    cache: { type: "string" },
  });
  const [suitePath] = positional(positionals, 1, "one suite file");
  const limit = positiveInteger("--limit", values.limit as string | undefined);
  const shard = values.shard === undefined ? undefined : parseShard(String(values.shard));
  const suite = await loadSuite(suitePath!);
  if (values.backend !== undefined && suite.engines?.[String(values.backend)] === undefined) {
    // A kernel backend or a registered engine (llamacpp); an unknown name lists them all.
    const { backendNames, hasBackend } = await import("./harness/engines/registry.ts");
    const { UnknownNameError } = await import("./core/registry.ts");
    const name = String(values.backend);
    if (!hasBackend(name)) throw new UnknownNameError("backend", name, backendNames());
  }
  const planned = planCells(suite, {
    backend: values.backend as string | undefined,
    filter: values.filter as string | undefined,
  });
  const cells = shard ? selectShard(planned, shard) : planned;
  if (values["dry-run"]) {
    write(formatCellTable(cells) + "\n");
    write(`${cells.length} cells × ${suite.tasks.length} tasks (dry run: nothing computed)\n`);
    return EXIT.ok;
  }
  const runId = utcStamp();
  const outDir = resolve(String(values.out ?? join("out", suite.name, runId)));
  const cacheDir = resolve(
    String(values.cache ?? Deno.env.get("QUANTBENCH_CACHE") ?? join(".quantbench", "cache")),
  );
  const file = await runSuite(suite, {
    runId,
    cacheDir,
    filter: values.filter as string | undefined,
    backend: values.backend as string | undefined,
    cells,
    limit,
    fresh: Boolean(values.fresh),
    quiet: Boolean(values.quiet),
    argv: ["bench", ...args],
  });
  await writeReports(outDir, file);
  write(summaryMarkdown(file) + "\n");
  write(`\nwrote ${join(outDir, "results.csv")}, results.json, report.html\n`);
  return file.rows.some((r) => r.status === "failed") ? EXIT.failed : EXIT.ok;
}

async function validate(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { filter: { type: "string" } });
  const [suitePath] = positional(positionals, 1, "one suite file");
  const suite = await loadSuite(suitePath!);
  const cells = planCells(suite, { filter: values.filter as string | undefined });
  write(formatCellTable(cells) + "\n");
  const skipped = cells.filter((c) => c.skipReason).length;
  write(
    `${suitePath}: valid — ${cells.length} cells (${skipped} skipped) × ${suite.tasks.length} tasks\n`,
  );
  return EXIT.ok;
}

function resultsPath(p: string): string {
  return existsSync(p) && statSync(p).isDirectory() ? join(p, "results.json") : p;
}

async function compare(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    suite: { type: "string" },
    threshold: { type: "string", multiple: true },
    markdown: { type: "string" },
    html: { type: "string" },
    json: { type: "string" },
  });
  const [basePath, headPath] = positional(positionals, 2, "BASE and HEAD results");
  const base = await readResults(resultsPath(basePath!));
  const head = await readResults(resultsPath(headPath!));
  const thresholds = values.suite ? (await loadSuite(String(values.suite))).thresholds : {};
  let flags: Record<string, Threshold> = {};
  for (const flag of (values.threshold ?? []) as string[]) {
    flags = { ...flags, ...parseThresholdFlag(flag) };
  }
  const comparison = compareResults(base, head, thresholds, flags);
  const markdown = renderComparisonMarkdown(comparison);
  write(markdown);
  if (values.markdown) await writeFileAtomic(String(values.markdown), markdown);
  if (values.html) await writeFileAtomic(String(values.html), renderComparisonHtml(comparison));
  if (values.json) await writeFileAtomic(String(values.json), comparisonToJson(comparison));
  const summary = Deno.env.get("GITHUB_STEP_SUMMARY");
  if (summary) await Deno.writeTextFile(summary, renderStepSummary(comparison), { append: true });
  return comparisonHasRegression(comparison) ? EXIT.failed : EXIT.ok;
}

async function recommend(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    memory: { type: "string" },
    context: { type: "string" },
    batch: { type: "string" },
    hardware: { type: "string" },
    "max-drop": { type: "string" },
    "max-ppl-increase": { type: "string" },
    objective: { type: "string" },
    kv: { type: "string" },
    suite: { type: "string" },
    markdown: { type: "string" },
    html: { type: "string" },
    json: { type: "string" },
  });
  const [path] = positional(positionals, 1, "one results.json");
  const file = await readResults(resultsPath(path!));
  const objective = String(values.objective ?? "quality");
  if (!["memory", "speed", "quality"].includes(objective)) {
    throw new RecommendError(
      `Invalid --objective ${JSON.stringify(objective)}: expected memory, speed or quality`,
    );
  }
  const kv = String(values.kv ?? "deployment");
  if (kv !== "runtime" && kv !== "deployment") {
    throw new RecommendError(`Invalid --kv ${JSON.stringify(kv)}: expected runtime or deployment`);
  }
  let maxPpl: number | undefined;
  if (values["max-ppl-increase"] !== undefined) {
    maxPpl = Number(values["max-ppl-increase"]);
    if (!(maxPpl >= 0)) {
      throw new RecommendError(
        `Invalid --max-ppl-increase ${
          JSON.stringify(values["max-ppl-increase"])
        }: expected a relative increase such as 0.03`,
      );
    }
  }
  const result = buildRecommendation(file, {
    memory: values.memory === undefined ? undefined : parseBytes(String(values.memory)),
    context: positiveInteger("--context", values.context as string | undefined),
    batch: positiveInteger("--batch", values.batch as string | undefined),
    hardware: values.hardware as string | undefined,
    maxDrop: values["max-drop"] === undefined
      ? undefined
      : parseMaxDrop(String(values["max-drop"])),
    maxPplIncrease: maxPpl,
    objective: objective as Objective,
    kvModel: kv,
    thresholds: values.suite ? (await loadSuite(String(values.suite))).thresholds : undefined,
  });
  const markdown = renderRecommendationMarkdown(result);
  write(markdown);
  if (values.markdown) await writeFileAtomic(String(values.markdown), markdown);
  if (values.html) await writeFileAtomic(String(values.html), renderHtml(file, result));
  if (values.json) await writeFileAtomic(String(values.json), recommendationToJson(result));
  return result.choice ? EXIT.ok : EXIT.failed;
}

async function merge(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { suite: { type: "string" } });
  if (positionals.length < 2) {
    throw new UsageError(`Expected OUT_DIR and at least one SHARD_DIR\n\n${USAGE}`);
  }
  const [outDir, ...shardPaths] = positionals;
  const shards = await Promise.all(
    shardPaths.map(async (p) => ({ label: p, file: await readResults(resultsPath(p)) })),
  );
  const suite = values.suite ? await loadSuite(String(values.suite)) : undefined;
  const file = mergeShards(shards, suite);
  await writeReports(resolve(outDir!), file);
  write(summaryMarkdown(file) + "\n");
  write(`\nmerged ${shards.length} shards into ${join(resolve(outDir!), "results.json")}\n`);
  return file.rows.some((r) => r.status === "failed") ? EXIT.failed : EXIT.ok;
}

async function report(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { out: { type: "string" } });
  const [path] = positional(positionals, 1, "one results.json");
  const file = await readResults(resultsPath(path!));
  const outDir = resolve(String(values.out ?? resolve(resultsPath(path!), "..")));
  await writeFileAtomic(join(outDir, "results.csv"), rowsToCsv(file.rows));
  await writeFileAtomic(join(outDir, "report.html"), renderHtml(file));
  write(`wrote ${join(outDir, "results.csv")} and report.html from ${basename(path!)}\n`);
  return EXIT.ok;
}

/** A flag's value as a positive integer (undefined when absent). */
function positiveInteger(flag: string, value: string | undefined): number | undefined {
  const n = value === undefined ? undefined : Number(value);
  if (n !== undefined && !(Number.isInteger(n) && n > 0)) {
    throw new UsageError(`${flag} must be a positive integer, got "${value}"`);
  }
  return n;
}

/**
 * `serve`: an OpenAI-compatible server over the one cell `--filter` selects, until SIGINT or
 * SIGTERM (requests under way finish first).
 */
async function serve(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    filter: { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    "model-name": { type: "string" },
    "max-queue": { type: "string" },
    cache: { type: "string" },
  });
  const [suitePath] = positional(positionals, 1, "one suite file");
  if (values.filter === undefined) {
    throw new UsageError(`serve needs --filter naming one cell (e.g. a cell id)\n\n${USAGE}`);
  }
  const port = values.port === undefined ? 8000 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--port must be an integer from 0 to 65535, got "${values.port}"`);
  }
  const maxQueue = positiveInteger("--max-queue", values["max-queue"] as string | undefined);
  const suite = await loadSuite(suitePath!);
  const cells = planCells(suite, { filter: String(values.filter) });
  if (cells.length !== 1) {
    const ids = cells.slice(0, 20).map((c) => `  ${c.id}`).join("\n");
    throw new UsageError(
      cells.length === 0
        ? `--filter "${values.filter}" selects no cell of ${suitePath}`
        : `--filter "${values.filter}" selects ${cells.length} cells; serve takes one:\n${ids}`,
    );
  }
  const cell = cells[0]!;
  if (cell.skipReason) throw new UsageError(`Cell ${cell.id} cannot run: ${cell.skipReason}`);
  const { openCell } = await import("./harness/runner/open_cell.ts");
  const { serveEngine } = await import("./harness/serve/server.ts");
  const cacheDir = resolve(
    String(values.cache ?? Deno.env.get("QUANTBENCH_CACHE") ?? join(".quantbench", "cache")),
  );
  console.error(`Opening cell ${cell.id} …`);
  const { engine } = await openCell(suite, cell, cacheDir);
  const modelName = String(values["model-name"] ?? cell.id);
  const server = serveEngine(engine, {
    modelName,
    hostname: String(values.host ?? "127.0.0.1"),
    port,
    maxQueue,
    onListen: (url) => console.error(`Serving cell ${cell.id} as model "${modelName}" at ${url}`),
  });
  const stop = () => {
    console.error("Shutting down (requests under way finish first) …");
    server.shutdown();
  };
  Deno.addSignalListener("SIGINT", stop);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);
  try {
    await server.finished;
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    if (Deno.build.os !== "windows") Deno.removeSignalListener("SIGTERM", stop);
    engine.dispose();
  }
  return EXIT.ok;
}

async function perf(args: string[]): Promise<number> {
  const { values } = parse(args, {
    rows: { type: "string" },
    out: { type: "string" },
    backend: { type: "string" },
    formats: { type: "string" },
    sweep: { type: "boolean" },
    "sweep-gemm": { type: "boolean" },
    "sweep-codebook": { type: "boolean" },
    atb: { type: "boolean" },
  });
  const gpuOnly = (["sweep", "sweep-gemm", "sweep-codebook", "atb"] as const).filter((f) =>
    values[f]
  );
  if (gpuOnly.length > 0 && values.backend !== "webgpu") {
    throw new UsageError(
      `--${gpuOnly[0]} times WebGPU kernels; add --backend webgpu`,
    );
  }
  await runPerf({
    rows: positiveInteger("--rows", values.rows as string | undefined),
    out: values.out as string | undefined,
    backend: values.backend as string | undefined,
    formats: (values.formats as string | undefined)?.split(",").map((f) => f.trim()),
    sweep: values.sweep as boolean | undefined,
    sweepGemm: values["sweep-gemm"] as boolean | undefined,
    sweepCodebook: values["sweep-codebook"] as boolean | undefined,
    atb: values.atb as boolean | undefined,
  });
  return EXIT.ok;
}

/** Scores a predictions file (JSONL {id, output}) with a task's rules (harness/tasks/score.ts). */
async function score(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    dataset: { type: "string" },
    predictions: { type: "string" },
    out: { type: "string" },
    samples: { type: "string" },
  });
  const [task] = positional(positionals, 1, "one task name");
  if (values.dataset === undefined || values.predictions === undefined) {
    throw new UsageError(`score needs --dataset FILE and --predictions FILE\n\n${USAGE}`);
  }
  const { scoreResults } = await import("./harness/tasks/score.ts");
  const { file, scores } = await scoreResults(
    task!,
    String(values.dataset),
    String(values.predictions),
    ["score", ...args],
  );
  write(summaryMarkdown(file) + "\n");
  if (values.samples !== undefined) {
    await writeFileAtomic(
      String(values.samples),
      scores.map((x) => JSON.stringify(x) + "\n").join(""),
    );
  }
  if (values.out !== undefined) await writeReports(resolve(String(values.out)), file);
  return EXIT.ok;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  bench,
  validate,
  compare,
  merge,
  recommend,
  report,
  perf,
  score,
  serve,
  inspect: runInspect,
  quantize: runQuantize,
};

/** Runs a command line and returns the exit code; user errors print without stack traces. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help") {
    write(USAGE);
    return command === undefined ? EXIT.invalid : EXIT.ok;
  }
  const run = COMMANDS[command];
  if (!run) {
    const { didYouMean } = await import("./core/registry.ts");
    const hint = didYouMean(command, Object.keys(COMMANDS));
    console.error(
      `Unknown command "${command}"${hint ? `; did you mean "${hint}"?` : ""}\n\n${USAGE}`,
    );
    return EXIT.invalid;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (isUserError(e)) {
      console.error((e as Error).message);
      return EXIT.invalid;
    }
    throw e;
  }
}

/** Errors caused by input (suite, arguments, files) rather than bugs. */
function isUserError(e: unknown): boolean {
  const names = new Set([
    "UsageError",
    "SuiteError",
    "FilterError",
    "UnknownNameError",
    "ResultsFileError",
    "ShardError",
    "ThresholdError",
    "ThresholdFlagError",
    "CompareError",
    "RecommendError",
    "MergeError",
    "ScoreInputError",
    "DatasetError",
    "EncodingError",
  ]);
  return e instanceof Error && names.has(e.name);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
