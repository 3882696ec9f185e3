/**
 * Matrix expansion: a loaded suite becomes its cells (models × methods × formats × backends, in
 * suite order), minus `exclude` matches and `--filter` misses, with combinations a method cannot
 * produce marked as skipped rather than dropped.
 *
 * @module
 */
import { didYouMean } from "../../core/registry.ts";
import { methods } from "../methods/registry.ts";
import { backendUnsupported, engines } from "../engines/registry.ts";
import { backends } from "../../kernels/registry.ts";
import type { Cell, ExcludeRule, Suite } from "../../core/suite_types.ts";

/** Thrown for a `--filter` expression that cannot be parsed. */
export class FilterError extends Error {
  override name = "FilterError";
}

/** The cell fields a filter term or an exclude rule can name. */
const FIELDS = ["model", "method", "format", "backend"] as const;
type Field = typeof FIELDS[number];

/** Options of {@linkcode expandCells}. */
export interface ExpandOptions {
  /**
   * Keeps only cells matching every comma-separated term: `key=glob`, `key!=glob` (keys `model`,
   * `method`, `format`, `backend`), or a bare glob (`!glob` negated) matched against the cell id.
   * Globs use `*` (any run of characters) and `?` (one character).
   */
  filter?: string;
}

/**
 * Expands a suite into its cells, in suite order (model, then method, then format, then backend),
 * leaving out cells that an `exclude` rule or the filter removes. A combination the method cannot
 * produce, or whose run-time quantization (activations, KV cache) the backend cannot run, stays
 * in the list with `skipReason` set.
 *
 * @example
 * ```ts
 * const cells = expandCells(suite, { filter: "method=rtn,format=int4*" });
 * console.log(formatCellTable(cells));
 * ```
 */
export function expandCells(suite: Suite, options: ExpandOptions = {}): Cell[] {
  const keep = options.filter === undefined ? () => true : parseFilter(options.filter);
  const cells: Cell[] = [];
  for (const model of suite.models) {
    for (const method of suite.methods) {
      for (const format of suite.formats) {
        for (const backend of suite.backends) {
          const cell: Cell = {
            id: `${model.id}/${method.id}/${format.id}/${backend}`,
            model,
            method,
            format,
            backend,
          };
          if (suite.exclude.some((rule) => ruleMatches(rule, cell)) || !keep(cell)) continue;
          const reason = methods.get(method.method).unsupported(format) ??
            (backends.has(backend) || engines.has(backend)
              ? backendUnsupported(cell)
              : servedModelOnly(method.method, backend));
          if (reason !== undefined) cell.skipReason = reason;
          cells.push(cell);
        }
      }
    }
  }
  return cells;
}

/** Whether a cell field equals `value`; methods and formats also match by registry name. */
function fieldMatches(field: Field, cell: Cell, test: (name: string) => boolean): boolean {
  switch (field) {
    case "model":
      return test(cell.model.id);
    case "method":
      return test(cell.method.id) || test(cell.method.method);
    case "format":
      return test(cell.format.id) || test(cell.format.weights);
    case "backend":
      return test(cell.backend);
  }
}

/** Whether every field of an exclude rule matches the cell (`!value` matches all but `value`). */
function ruleMatches(rule: ExcludeRule, cell: Cell): boolean {
  return FIELDS.every((field) => {
    const value = rule[field];
    if (value === undefined) return true;
    const negated = value.startsWith("!");
    const name = negated ? value.slice(1) : value;
    return fieldMatches(field, cell, (s) => s === name) !== negated;
  });
}

/**
 * Parses a `--filter` expression into a cell predicate; throws {@linkcode FilterError} for an
 * empty expression, an empty term, an unknown key or an empty glob.
 */
export function parseFilter(expr: string): (cell: Cell) => boolean {
  if (expr.trim() === "") throw new FilterError(`Invalid filter "${expr}": the filter is empty`);
  const terms = expr.split(",").map((raw) => {
    const term = raw.trim();
    const fail = (why: string) => new FilterError(`Invalid filter term "${term}": ${why}`);
    if (term === "") {
      throw new FilterError(`Invalid filter "${expr}": empty term (two commas or a stray comma)`);
    }
    const eq = term.indexOf("=");
    if (eq < 0) {
      const negated = term.startsWith("!");
      const glob = negated ? term.slice(1) : term;
      if (glob === "") throw fail(`"!" needs a glob after it`);
      const re = globToRegExp(glob);
      return (cell: Cell) => re.test(cell.id) !== negated;
    }
    const negated = term[eq - 1] === "!";
    const op = negated ? "!=" : "=";
    const rawKey = term.slice(0, negated ? eq - 1 : eq);
    const glob = term.slice(eq + 1);
    const key = rawKey.trim();
    if (key === "") throw fail(`no key before "${op}"`);
    if (!(FIELDS as readonly string[]).includes(key)) {
      const suggestion = didYouMean(key, FIELDS);
      const hint = suggestion === undefined ? "." : `; did you mean "${suggestion}"?`;
      throw fail(`unknown key "${key}"${hint} Known: ${FIELDS.join(", ")}`);
    }
    if (glob.trim() === "") throw fail(`no glob after "${op}"`);
    const re = globToRegExp(glob.trim());
    return (cell: Cell) => fieldMatches(key as Field, cell, (s) => re.test(s)) !== negated;
  });
  return (cell) => terms.every((term) => term(cell));
}

/** An anchored regular expression for a glob where `*` is any run and `?` any one character. */
function globToRegExp(glob: string): RegExp {
  const body = [...glob].map((c) => {
    if (c === "*") return ".*";
    if (c === "?") return ".";
    return c.replace(/[.+^${}()|[\]\\/]/g, "\\$&");
  }).join("");
  return new RegExp(`^${body}$`);
}

/**
 * An aligned plain-text table of cells (cell, model, method, format, backend, status), one line
 * per cell, for `deno task validate` and `--dry-run`.
 */
export function formatCellTable(cells: Cell[]): string {
  const header = ["cell", "model", "method", "format", "backend", "status"];
  const rows = cells.map((c) => [
    c.id,
    c.model.id,
    c.method.id,
    c.format.id,
    c.backend,
    c.skipReason === undefined ? "run" : `skipped: ${c.skipReason}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) => r.map((v, i) => i === r.length - 1 ? v : v.padEnd(widths[i]!)).join("  "))
    .join("\n");
}

/**
 * A backend that is an engine over a served model (e.g. `openai`) runs the model as the server
 * has it: only the unquantized method applies there.
 */
function servedModelOnly(method: string, backend: string): string | undefined {
  if (method === "none") return undefined;
  return `backend "${backend}" is a served model: quantize it where it is served (e.g. vLLM's ` +
    `--quantization) and list that server as its own backend; method "${method}" runs in process only`;
}
