/**
 * `deno task quantize SUITE.yaml --filter CELL --out DIR [--as gguf|gptq|awq|compressed-tensors]`:
 * quantizes one cell's model exactly as `bench` does (`quantizeCell`) and writes it for serving
 * stacks — a GGUF file for llama.cpp (`DIR/<model>-<method>-<format>.gguf`; the default where the
 * format maps to ggml types, `writers/gguf_map.ts`) or a Hugging Face folder in a packed layout
 * (`writers/hf_quantized.ts`). Cells that differ only in backend quantize alike and count once.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { loadSuite } from "../suite/load.ts";
import { expandCells } from "../suite/expand.ts";
import type { Cell } from "../../core/suite_types.ts";
import type { LlamaModel } from "../../core/model.ts";
import { quantizeCell } from "./open_cell.ts";
import { writeGguf } from "../models/writers/gguf.ts";
import { ggufFormatUnsupported, ggufModel, NoGgufTypeError } from "../models/writers/gguf_map.ts";
import {
  HF_LAYOUTS,
  type HfLayout,
  HfLayoutError,
  hfLayoutFormatUnsupported,
  writeHfQuantized,
} from "../models/writers/hf_quantized.ts";

/** The `--as` values. */
export const EXPORT_KINDS = ["gguf", ...HF_LAYOUTS] as const;

/** One of {@linkcode EXPORT_KINDS}. */
export type ExportKind = typeof EXPORT_KINDS[number];

/** A bad command line for `quantize` (exit 2). */
export class QuantizeUsageError extends Error {
  override name = "QuantizeUsageError";
}

const USAGE = `usage: deno task quantize SUITE.yaml --filter CELL --out DIR ` +
  `[--as ${EXPORT_KINDS.join("|")}]`;

/** What {@linkcode exportCell} wrote. */
export interface ExportResult {
  cell: Cell;
  kind: ExportKind;
  /** The GGUF file or the folder. */
  path: string;
  quantizeSeconds: number;
}

/** The one cell `filter` selects (backends aside); throws {@linkcode QuantizeUsageError}. */
export function selectExportCell(cells: readonly Cell[], filter: string): Cell {
  const byQuantization = new Map<string, Cell>();
  for (const c of cells) {
    const key = `${c.model.id}/${c.method.id}/${c.format.id}`;
    if (!byQuantization.has(key)) byQuantization.set(key, c);
  }
  const found = [...byQuantization.values()];
  if (found.length !== 1) {
    const list = found.slice(0, 20).map((c) => `  ${c.id}`).join("\n");
    throw new QuantizeUsageError(
      found.length === 0
        ? `Filter "${filter}" matches no cell; \`deno task validate SUITE.yaml\` lists them`
        : `Filter "${filter}" matches ${found.length} quantizations; narrow it to one ` +
          `(e.g. model=…,method=…,format=…):\n${list}`,
    );
  }
  const cell = found[0]!;
  if (cell.skipReason !== undefined) {
    throw new QuantizeUsageError(`Cell ${cell.id} is skipped by the suite: ${cell.skipReason}`);
  }
  return cell;
}

function exportName(cell: Cell): string {
  return [cell.model.id, cell.method.id, cell.format.id].join("-").replace(/[^A-Za-z0-9_.-]/g, "_");
}

/**
 * Writes the quantized `model` of `cell` under `outDir` as `kind`; throws
 * {@linkcode NoGgufTypeError} or {@linkcode HfLayoutError} when its weights have no exact
 * encoding there. Returns the path written.
 */
export async function writeExport(
  model: LlamaModel,
  cell: Cell,
  outDir: string,
  kind: ExportKind,
): Promise<string> {
  if (kind === "gguf") {
    const mapped = ggufModel(model);
    await Deno.mkdir(outDir, { recursive: true });
    const path = join(outDir, `${exportName(cell)}.gguf`);
    await writeGguf(mapped, path, { name: `${cell.model.id} ${cell.method.id} ${cell.format.id}` });
    return path;
  }
  const dir = join(outDir, `${exportName(cell)}-${kind}`);
  await writeHfQuantized(model, dir, kind as HfLayout);
  return dir;
}

/** Quantizes the cell of `suitePath` that `filter` selects and writes it (see the module). */
export async function exportCell(
  suitePath: string,
  filter: string,
  outDir: string,
  kind: ExportKind,
): Promise<ExportResult> {
  const suite = await loadSuite(suitePath);
  const cell = selectExportCell(expandCells(suite, { filter }), filter);
  if (kind === "gguf") ggufFormatCheck(cell);
  else {
    const why = hfLayoutFormatUnsupported(cell.format.weights, cell.format, kind);
    if (why !== undefined) throw new HfLayoutError(`Format "${cell.format.id}": ${why}`);
  }
  const { model, quantizeSeconds } = await quantizeCell(suite, cell);
  const path = await writeExport(model, cell, resolve(outDir), kind);
  return { cell, kind, path, quantizeSeconds };
}

/** Refuses, before quantizing, formats that can never map to a ggml type. */
function ggufFormatCheck(cell: Cell): void {
  const why = ggufFormatUnsupported(cell.format.weights, cell.format);
  if (why !== undefined) throw new NoGgufTypeError(`of format "${cell.format.id}"`, why);
}

function parseKind(value: string | undefined): ExportKind {
  if (value === undefined) return "gguf";
  if ((EXPORT_KINDS as readonly string[]).includes(value)) return value as ExportKind;
  throw new QuantizeUsageError(
    `Unknown --as "${value}"; expected one of ${EXPORT_KINDS.join(", ")}\n${USAGE}`,
  );
}

/** The `quantize` command: exit 0 on success, 2 on bad input (printed without a stack). */
export async function runQuantize(args: string[]): Promise<number> {
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        options: {
          filter: { type: "string" },
          out: { type: "string" },
          as: { type: "string" },
        },
        allowPositionals: true,
        strict: true,
      });
    } catch (e) {
      throw new QuantizeUsageError(`${(e as Error).message}\n${USAGE}`, { cause: e });
    }
    const { values, positionals } = parsed;
    if (positionals.length !== 1) {
      throw new QuantizeUsageError(`Expected one suite file, got ${positionals.length}\n${USAGE}`);
    }
    if (values.filter === undefined || values.out === undefined) {
      throw new QuantizeUsageError(`quantize needs --filter CELL and --out DIR\n${USAGE}`);
    }
    const kind = parseKind(values.as);
    const result = await exportCell(positionals[0]!, values.filter, values.out, kind);
    const text = `quantized ${result.cell.id} in ${result.quantizeSeconds.toFixed(1)} s\n` +
      `wrote ${result.path} (${result.kind})\n`;
    Deno.stdout.writeSync(new TextEncoder().encode(text));
    return 0;
  } catch (e) {
    const user = e instanceof QuantizeUsageError || e instanceof NoGgufTypeError ||
      e instanceof HfLayoutError ||
      (e instanceof Error && ["SuiteError", "FilterError", "UnknownNameError"].includes(e.name));
    if (!user) throw e;
    console.error((e as Error).message);
    return 2;
  }
}
