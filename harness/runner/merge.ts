/**
 * `merge`: joins the results of the shards of one run (`bench --shard I/N`) into the report an
 * unsharded run would have written — the same rows in the same order — timings and run ids aside.
 *
 * Order without a cell index: `--shard I/N` gives cell k (in expansion order) to shard
 * (k mod N) + 1 and each shard writes its cells' rows in expansion order, cell by cell. So the
 * unsharded order is a round robin over the shards, one cell's rows at a time — cell 0 from shard
 * 1, cell 1 from shard 2, …, cell N from shard 1 again. A cell's rows are the consecutive rows
 * with the same (model, method, format, backend). Everything needed is in each shard's metadata
 * (`argv` holds `--shard I/N`), so no suite is required; given one (`suite`), the merged cell
 * order is also checked against the suite's expansion.
 *
 * Checks (a {@linkcode MergeError} names the problem): every shard names `--shard I/N` with the
 * same N; each I from 1 to N occurs exactly once; the shards ran the same suite (hash), code
 * (git sha and quantbench version), options that change results (`--filter`, `--backend`,
 * `--limit`), Deno, OS and adapter; and shard I holds ⌈(C − I + 1)/N⌉ of the C cells, as the
 * split requires.
 *
 * The merged run takes the run id of the earliest shard (rows are relabelled with it), the
 * earliest start and the latest finish, and the first shard's argv without `--shard`.
 *
 * @module
 */
import type { ResultRow, ResultsFile } from "../../core/row.ts";
import type { Suite } from "../../core/suite_types.ts";
import { parseShard, type Shard } from "./shard.ts";
import { planCells } from "./run.ts";

/** Thrown when shard results cannot be merged into one run. */
export class MergeError extends Error {
  override name = "MergeError";
}

/** Options that change which cells run or what they compute. */
const RESULT_OPTIONS = ["--filter", "--backend", "--limit"];

/** The value of `--name VALUE` or `--name=VALUE` in an argv, if present. */
export function optionValue(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === name) return argv[i + 1];
    if (arg.startsWith(`${name}=`)) return arg.slice(name.length + 1);
  }
  return undefined;
}

/** `argv` without `--name VALUE` / `--name=VALUE`. */
function withoutOption(argv: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === name) i++;
    else if (!arg.startsWith(`${name}=`)) out.push(arg);
  }
  return out;
}

/** A shard's file with its label (for messages) and place. */
export interface ShardResults {
  /** Where it came from, e.g. its path. */
  label: string;
  file: ResultsFile;
}

/**
 * Merges the results of all N shards of a run.
 *
 * @param suite When given, the merged cells must follow its expansion order (with the shards'
 * `--filter` and `--backend`), and its hash must match the shards'.
 * @throws {MergeError} as described in the module documentation.
 */
export function mergeShards(shards: ShardResults[], suite?: Suite): ResultsFile {
  if (shards.length === 0) throw new MergeError("No shard results to merge");
  const placed = shards.map(({ label, file }) => {
    const text = optionValue(file.meta.argv, "--shard");
    if (text === undefined) {
      throw new MergeError(`"${label}" is not a shard: its argv has no --shard I/N`);
    }
    let shard: Shard;
    try {
      shard = parseShard(text);
    } catch (e) {
      throw new MergeError(`"${label}": ${(e as Error).message}`, { cause: e });
    }
    return { label, file, shard, cells: cellGroups(file.rows, label) };
  });
  const count = placed[0]!.shard.count;
  for (const p of placed) {
    if (p.shard.count !== count) {
      throw new MergeError(
        `"${p.label}" is shard ${p.shard.index}/${p.shard.count}, but "${
          placed[0]!.label
        }" is one of ${count}`,
      );
    }
  }
  placed.sort((a, b) => a.shard.index - b.shard.index);
  for (let i = 1; i <= count; i++) {
    const found = placed.filter((p) => p.shard.index === i);
    if (found.length === 0) throw new MergeError(`Shard ${i}/${count} is missing`);
    if (found.length > 1) {
      throw new MergeError(
        `Shard ${i}/${count} is given twice: ${found.map((p) => `"${p.label}"`).join(", ")}`,
      );
    }
  }
  const first = placed[0]!;
  for (const p of placed.slice(1)) sameRun(first, p);

  const total = placed.reduce((n, p) => n + p.cells.length, 0);
  for (const p of placed) {
    const expected = Math.ceil((total - p.shard.index + 1) / count);
    if (p.cells.length !== expected) {
      throw new MergeError(
        `"${p.label}" (shard ${p.shard.index}/${count}) holds ${p.cells.length} cells; a split of ` +
          `${total} cells gives it ${expected}`,
      );
    }
  }
  const groups: ResultRow[][] = [];
  for (let k = 0; k < total; k++) groups.push(placed[k % count]!.cells[Math.floor(k / count)]!);

  const earliest = [...placed].sort((a, b) =>
    a.file.meta.started_at.localeCompare(b.file.meta.started_at)
  )[0]!;
  const runId = earliest.file.meta.run_id;
  if (suite) checkAgainstSuite(groups, suite, first.file);
  return {
    schema_version: 1,
    meta: {
      ...first.file.meta,
      run_id: runId,
      started_at: earliest.file.meta.started_at,
      finished_at: placed.map((p) => p.file.meta.finished_at).sort().at(-1)!,
      argv: withoutOption(first.file.meta.argv, "--shard"),
    },
    rows: groups.flat().map((row) => ({ ...row, run_id: runId })),
  };
}

const cellOf = (r: ResultRow) => [r.model, r.method, r.format, r.backend].join("/");

/** Consecutive rows of the same cell. */
function cellGroups(rows: ResultRow[], label: string): ResultRow[][] {
  const groups: ResultRow[][] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    const last = groups.at(-1);
    if (last && cellOf(last[0]!) === cellOf(row)) {
      last.push(row);
      continue;
    }
    if (seen.has(cellOf(row))) {
      throw new MergeError(`"${label}" holds rows of cell ${cellOf(row)} in two places`);
    }
    seen.add(cellOf(row));
    groups.push([row]);
  }
  return groups;
}

type Placed = { label: string; file: ResultsFile; shard: Shard };

function sameRun(a: Placed, b: Placed): void {
  const fields: [string, (f: ResultsFile) => unknown][] = [
    ["suite", (f) => f.meta.suite],
    ["suite hash", (f) => f.meta.suite_hash],
    ["git sha", (f) => f.meta.git_sha],
    ["quantbench version", (f) => f.meta.quantbench_version],
    ["Deno version", (f) => f.meta.deno_version],
    ["OS", (f) => f.meta.os],
    ["adapter", (f) => JSON.stringify(f.meta.adapter)],
    ...RESULT_OPTIONS.map((o): [string, (f: ResultsFile) => unknown] => [
      o,
      (f) => optionValue(f.meta.argv, o) ?? "(none)",
    ]),
  ];
  for (const [what, get] of fields) {
    if (get(a.file) !== get(b.file)) {
      throw new MergeError(
        `Shards differ in ${what}: "${a.label}" has ${JSON.stringify(get(a.file))}, "${b.label}" ` +
          `has ${JSON.stringify(get(b.file))}`,
      );
    }
  }
}

function checkAgainstSuite(groups: ResultRow[][], suite: Suite, file: ResultsFile): void {
  if (suite.hash !== file.meta.suite_hash) {
    throw new MergeError(
      `The suite ${suite.file} (hash ${suite.hash.slice(0, 12)}) is not the one the shards ran ` +
        `(hash ${file.meta.suite_hash.slice(0, 12)})`,
    );
  }
  const planned = planCells(suite, {
    backend: optionValue(file.meta.argv, "--backend"),
    filter: optionValue(file.meta.argv, "--filter"),
  }).map((c) => [c.model.id, c.method.id, c.format.id, c.backend].join("/"));
  const merged = groups.map((g) => cellOf(g[0]!));
  const length = Math.max(planned.length, merged.length);
  const at = Array.from({ length }, (_, i) => i).find((i) => planned[i] !== merged[i]);
  if (at !== undefined) {
    throw new MergeError(
      `The merged cells do not follow the suite's expansion: cell ${at + 1} is ` +
        `${merged[at] ?? "missing"}; the suite expands to ${planned[at] ?? "nothing more"}`,
    );
  }
}
