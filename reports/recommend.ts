/**
 * `recommend`: from a results file to a deployment decision. For every measured cell (model ×
 * method × format × backend) it computes the memory the cell needs at a context and batch, judges
 * the constraints with `compare`'s paired statistics against the full-precision cell (method
 * `none`) of the same model, marks recipes the target hardware cannot run natively, and picks the
 * Pareto set over (quality per task, bytes, measured speed) and the one recipe that best meets the
 * objective — with a sentence of evidence per criterion.
 *
 * **Memory model** (bytes): `weights + kv + workspace`.
 * - `weights`: the bytes of the stored weights (codes, scales, codebooks), recorded by the runner
 *   in each row's `extra.weight_bytes`.
 * - `kv` at context C and batch B, *as quantbench's runtime holds it* (`kvModel: "runtime"`):
 *   `2 × layers × C × kv_heads × head_dim × 4 × B` (a float32 cache), and twice that when the
 *   cell quantizes its KV cache (the CPU backend keeps a dequantized float32 copy beside the
 *   float cache). *As a deployment holds it* (`kvModel: "deployment"`, the default): an f16
 *   cache, or the KV format's bits per element plus one f16 scale per group.
 * - `workspace`: an estimate of the activations of one decoding step per sequence:
 *   `4 × B × (4·dim + 3·hidden_dim + vocab + C)` bytes (residual, attention and FFN buffers,
 *   logits, attention scores).
 *
 * A constraint fails when `compare` judges the change a `regression` (significantly worse and
 * beyond the limit) or the cell's row is missing, failed or `broken`.
 *
 * @module
 */
import type { ResultRow, ResultsFile } from "../core/row.ts";
import type { Threshold } from "../core/suite_types.ts";
import { compareResults, type ComparisonEntry } from "./compare.ts";
import { cellFacts, type MemoryEstimate, memoryEstimate } from "../core/memory_model.ts";
import {
  formatFamily,
  HARDWARE,
  type HardwareTarget,
  measuredOn,
  runsNatively,
} from "./recommend_hardware.ts";

/** Thrown for options or results `recommend` cannot use. */
export class RecommendError extends Error {
  override name = "RecommendError";
}

/** What to optimize among the recipes that meet the constraints. */
export type Objective = "memory" | "speed" | "quality";

/** Options of {@linkcode recommend}. */
export interface RecommendOptions {
  /** Memory budget in bytes; no limit when absent. */
  memory?: number;
  /** Context length in tokens (default: each model's `max_seq_len`). */
  context?: number;
  /** Concurrent sequences (default 1). */
  batch?: number;
  /** A key of {@linkcode HARDWARE}. */
  hardware?: string;
  /** Largest absolute drops, by `task.metric` (e.g. `tool_use.accuracy`: 0.02). */
  maxDrop?: Record<string, number>;
  /** Largest relative perplexity increase (e.g. 0.03). */
  maxPplIncrease?: number;
  /** Default `quality`. */
  objective?: Objective;
  /** Limits from the suite (`thresholds`); the flags take precedence for the same key. */
  thresholds?: Record<string, Threshold>;
  /** How the KV cache is counted (default `deployment`). */
  kvModel?: "runtime" | "deployment";
}

/** One constraint's outcome for a cell. */
export interface ConstraintResult {
  /** `task.metric` or `memory`. */
  key: string;
  pass: boolean;
  /** How far beyond the limit (metric units or bytes); 0 when it passes. */
  excess: number;
  evidence: string;
}

/** A cell, judged. */
export interface Candidate {
  model: string;
  method: string;
  /**
   * The suite's method entry: `calibration_of` for a cell of a calibration-sensitivity list
   * (method `gptq@wiki` → `gptq`), else `method`. The checklist knows methods by this.
   */
  method_entry: string;
  /** The calibration set of such a cell, else null. */
  calibration: string | null;
  format: string;
  backend: string;
  bits_per_weight: number | null;
  memory: MemoryEstimate | null;
  /** Decode tokens per second, when measured and usable for the target. */
  speed: number | null;
  /** Primary quality metric values, by `task.metric`. */
  quality: Record<string, number>;
  /** The ranking quality loss: relative perplexity increase, else KLD, else mean accuracy drop. */
  loss: number | null;
  emulated: boolean;
  /** Each primary quality metric against full precision, in words (paired statistics). */
  comparisons: string[];
  constraints: ConstraintResult[];
  /** Reasons it cannot be recommended (a failing constraint, a rule). */
  excluded: string[];
  pareto: boolean;
}

/** A checklist rule that fired. */
export interface RuleFinding {
  rule: "int4-calibrated" | "activation-aware" | "kv-cache" | "sub-3-bit" | "fp8-fp4-hardware";
  advice: string;
}

/** The recommendation. */
export interface Recommendation {
  objective: Objective;
  hardware: string | null;
  candidates: Candidate[];
  /** The chosen cell, or null when none meets the constraints. */
  choice: Candidate | null;
  /** One sentence per criterion for the choice, or why nothing qualifies. */
  evidence: string[];
  rules: RuleFinding[];
}

/** The quality metric each task is judged on (the Pareto set and the evidence use these). */
export const PRIMARY: Readonly<Record<string, string>> = {
  perplexity: "ppl",
  kld: "kld",
  json: "schema_valid",
  tool_use: "accuracy",
  long_context: "accuracy",
};

const CALIBRATED = new Set([
  "gptq",
  "awq",
  "hqq",
  "smoothquant",
  "omniquant",
  "quarot",
  "spinquant",
]);
const ACTIVATION_AWARE = new Set(["awq", "smoothquant"]);

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Bytes in binary units, e.g. `3.60 GiB`, `6.25 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(2)} KiB`;
  return `${bytes} B`;
}

/** Parses `24GiB`, `16MiB`, `512KiB`, `1.5GB`, `1000` (bytes). */
export function parseBytes(text: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$/i.exec(text);
  if (!m) {
    throw new RecommendError(
      `Invalid memory ${JSON.stringify(text)}: expected a size such as 24GiB, 512MiB or 1.5GB`,
    );
  }
  const units: Record<string, number> = {
    b: 1,
    kib: 1024,
    mib: MiB,
    gib: GiB,
    tib: 1024 * GiB,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
    tb: 1e12,
  };
  return Math.round(Number(m[1]) * units[(m[2] ?? "b").toLowerCase()]!);
}

/** Parses `tool_use.accuracy=0.02,json.schema_valid=0.01` (a trailing `%` divides by 100). */
export function parseMaxDrop(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const m = /^([A-Za-z0-9_:-]+\.[A-Za-z0-9_:-]+)=([0-9]*\.?[0-9]+)(%?)$/.exec(part);
    if (!m) {
      throw new RecommendError(
        `Invalid --max-drop entry ${JSON.stringify(part)}: expected TASK.METRIC=DROP, e.g. ` +
          `tool_use.accuracy=0.02`,
      );
    }
    out[m[1]!] = Number(m[2]) / (m[3] ? 100 : 1);
  }
  return out;
}

function cellKey(r: { model: string; method: string; format: string; backend: string }): string {
  return [r.model, r.method, r.format, r.backend].join("\u0000");
}

function num(x: number, digits = 3): string {
  return Number(x.toPrecision(digits)).toString();
}

/** Builds the recommendation for a results file. */
export function recommend(results: ResultsFile, options: RecommendOptions = {}): Recommendation {
  const objective = options.objective ?? "quality";
  const batch = options.batch ?? 1;
  const kvModel = options.kvModel ?? "deployment";
  let target: HardwareTarget | undefined;
  if (options.hardware !== undefined) {
    target = HARDWARE[options.hardware];
    if (!target) {
      throw new RecommendError(
        `Unknown hardware ${JSON.stringify(options.hardware)}: expected one of ${
          Object.keys(HARDWARE).join(", ")
        }`,
      );
    }
  }
  const cells = new Map<string, ResultRow[]>();
  for (const r of results.rows) {
    const k = cellKey(r);
    const list = cells.get(k) ?? [];
    list.push(r);
    cells.set(k, list);
  }
  const suite: Record<string, Threshold> = { ...options.thresholds };
  const flags: Record<string, Threshold> = {};
  for (const [key, drop] of Object.entries(options.maxDrop ?? {})) {
    flags[key] = { max_absolute_drop: drop };
  }
  if (options.maxPplIncrease !== undefined) {
    flags["perplexity.ppl"] = { max_relative_increase: options.maxPplIncrease };
  }
  // The metrics under a constraint, as `task.metric` (a suite's `ppl` is perplexity's).
  const constrained = [
    ...new Set([...Object.keys(flags), ...Object.keys(suite)].map((k) => splitKey(k).join("."))),
  ].filter((k) => !k.endsWith("."));

  const candidates: Candidate[] = [];
  const rules: RuleFinding[] = [];
  for (const rows of cells.values()) {
    const first = rows[0]!;
    const base = [...cells.values()].find((rs) =>
      rs[0]!.model === first.model && rs[0]!.method === "none" && rs[0]!.backend === first.backend
    ) ?? [...cells.values()].find((rs) =>
      rs[0]!.model === first.model && rs[0]!.method === "none"
    );
    const facts = cellFacts(rows);
    const context = options.context ?? facts?.max_seq_len ?? 0;
    const memory = facts ? memoryEstimate(facts, context, batch, kvModel) : null;
    const ok = (r: ResultRow) =>
      r.status === "ok" && r.value !== null;
    const quality: Record<string, number> = {};
    for (const r of rows) {
      if (ok(r) && PRIMARY[r.task] === r.metric) quality[`${r.task}.${r.metric}`] = r.value!;
    }
    const decode = rows.find((r) => ok(r) && r.metric === "decode_tokens_per_s");
    const emulated = target !== undefined && !runsNatively(target, first.format);
    const speedUsable = decode !== undefined &&
      (target === undefined || !emulated || measuredOn(target, first.backend, results.meta.os));
    const set = first.extra?.calibration_of;
    const c: Candidate = {
      model: first.model,
      method: first.method,
      method_entry: typeof set === "string" ? set : first.method,
      calibration: typeof set === "string" ? String(first.extra?.calibration) : null,
      format: first.format,
      backend: first.backend,
      bits_per_weight: first.bits_per_weight,
      memory,
      speed: speedUsable ? decode!.value : null,
      quality,
      loss: null,
      emulated,
      comparisons: [],
      constraints: [],
      excluded: [],
      pareto: false,
    };
    // Memory.
    if (options.memory !== undefined) {
      if (!memory) {
        c.excluded.push("no memory facts recorded (rerun the suite with this quantbench)");
      } else {
        const pass = memory.total <= options.memory;
        c.constraints.push({
          key: "memory",
          pass,
          excess: pass ? 0 : memory.total - options.memory,
          evidence: `${formatBytes(memory.total)} of ${formatBytes(options.memory)} at ${context}` +
            ` tokens × ${batch} (weights ${formatBytes(memory.weights)}, KV ${
              formatBytes(memory.kv)
            }, workspace ${formatBytes(memory.workspace)})`,
        });
      }
    }
    // Quality against the full-precision cell, with compare's paired statistics.
    const entries = base && base !== rows ? pairedEntries(results, base, rows, suite, flags) : [];
    const ppl = entries.find((e) => e.task === "perplexity" && e.metric === "ppl");
    const kld = rows.find((r) => ok(r) && r.task === "kld" && r.metric === "kld");
    if (base === rows) c.loss = 0;
    else if (ppl?.relative_delta != null) c.loss = ppl.relative_delta;
    else if (kld) c.loss = kld.value;
    for (const e of entries) {
      if (PRIMARY[e.task] === e.metric && e.head !== null) c.comparisons.push(evidence(e));
    }
    for (const key of constrained) {
      const [task, metric] = splitKey(key);
      if (base === rows) continue;
      const e = entries.find((x) => x.task === task && x.metric === metric);
      if (!e || e.head === null || e.head_status !== "ok") {
        c.constraints.push({
          key,
          pass: false,
          excess: Infinity,
          evidence: base
            ? `${key} not measured for this cell`
            : `no full-precision cell (method none) of ${first.model} to judge ${key} against`,
        });
        continue;
      }
      const fail = e.verdict === "regression" || e.verdict === "broken";
      const limit = e.threshold?.limits ?? {};
      const excess = limit.max_absolute_drop !== undefined
        ? Math.max(0, -(e.delta ?? 0) - limit.max_absolute_drop)
        : Math.max(0, (e.relative_delta ?? 0) - (limit.max_relative_increase ?? 0));
      c.constraints.push({ key, pass: !fail, excess: fail ? excess : 0, evidence: evidence(e) });
    }
    for (const x of c.constraints) if (!x.pass) c.excluded.push(`${x.key}: ${x.evidence}`);
    // A cell that failed (any task, or loading) is never a recipe, baseline or not.
    const failed = rows.filter((r) => r.status === "failed");
    if (failed.length > 0) {
      c.excluded.push(
        `failed: ${failed.map((r) => `${r.task} (${r.detail || "no detail"})`).join(", ")}`,
      );
    } else if (!rows.some(ok)) c.excluded.push("no measured row (every task skipped)");
    candidates.push(c);
  }

  applyRules(candidates, cells, rules, target, batch, kvModel);
  markPareto(candidates);
  const eligible = candidates.filter((c) => c.excluded.length === 0);
  const choice = pick(eligible, objective);
  const evidenceLines = choice ? choiceEvidence(choice, objective) : bindingConstraints(candidates);
  return {
    objective,
    hardware: target?.id ?? null,
    candidates,
    choice,
    evidence: evidenceLines,
    rules,
  };
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf(".");
  if (i < 0) return key === "ppl" ? ["perplexity", "ppl"] : [key, ""];
  return [key.slice(0, i), key.slice(i + 1)];
}

function pairedEntries(
  results: ResultsFile,
  base: ResultRow[],
  head: ResultRow[],
  suite: Record<string, Threshold>,
  flags: Record<string, Threshold>,
): ComparisonEntry[] {
  const h = head[0]!;
  const relabel = base.map((r) => ({
    ...r,
    method: h.method,
    format: h.format,
    backend: h.backend,
  }));
  const file = (rows: ResultRow[]): ResultsFile => ({ ...results, rows });
  return compareResults(file(relabel), file(head), suite, flags).entries;
}

function evidence(e: ComparisonEntry): string {
  const ci = e.delta_ci ? `, 95 % CI ${num(e.delta_ci[0])}…${num(e.delta_ci[1])}` : "";
  const rel = e.metric === "ppl" && e.relative_delta !== null
    ? ` (${e.relative_delta >= 0 ? "+" : ""}${(e.relative_delta * 100).toFixed(1)} %)`
    : "";
  return `${e.task}.${e.metric} ${num(e.head ?? NaN)} vs ${num(e.base ?? NaN)} at full ` +
    `precision, difference ${num(e.delta ?? NaN)}${rel}${ci}; ${e.verdict} (${e.reason})`;
}

function dominates(a: Candidate, b: Candidate): boolean {
  let strict = false;
  const cmp = (x: number, y: number, higher: boolean) => {
    if (x === y) return 0;
    return (higher ? x > y : x < y) ? 1 : -1;
  };
  const checks: number[] = [];
  if (a.memory && b.memory) checks.push(cmp(a.memory.weights, b.memory.weights, false));
  if (a.speed !== null && b.speed !== null) checks.push(cmp(a.speed, b.speed, true));
  for (const [k, v] of Object.entries(a.quality)) {
    const w = b.quality[k];
    if (w === undefined) continue;
    checks.push(cmp(v, w, !(k.endsWith(".ppl") || k.endsWith(".kld"))));
  }
  for (const x of checks) {
    if (x < 0) return false;
    if (x > 0) strict = true;
  }
  return strict;
}

function markPareto(cs: Candidate[]): void {
  for (const c of cs) {
    c.pareto = !cs.some((o) => o !== c && o.model === c.model && dominates(o, c));
  }
}

function pick(eligible: Candidate[], objective: Objective): Candidate | null {
  const loss = (c: Candidate) => c.loss ?? Infinity;
  const bytes = (c: Candidate) => c.memory?.total ?? Infinity;
  const speed = (c: Candidate) => c.speed ?? -Infinity;
  const order: Record<Objective, (a: Candidate, b: Candidate) => number> = {
    quality: (a, b) => loss(a) - loss(b) || bytes(a) - bytes(b),
    memory: (a, b) => bytes(a) - bytes(b) || loss(a) - loss(b),
    speed: (a, b) => speed(b) - speed(a) || loss(a) - loss(b),
  };
  return [...eligible].sort(order[objective])[0] ?? null;
}

function choiceEvidence(c: Candidate, objective: Objective): string[] {
  const lines = c.constraints.map((x) => `${x.key}: ${x.evidence}`);
  const judged = new Set(c.constraints.map((x) => x.evidence));
  for (const e of c.comparisons) if (!judged.has(e)) lines.push(`quality: ${e}`);
  if (c.memory && !c.constraints.some((x) => x.key === "memory")) {
    lines.push(
      `memory: ${formatBytes(c.memory.total)} at ${c.memory.context} tokens × ` +
        `${c.memory.batch}`,
    );
  }
  if (c.speed !== null) lines.push(`speed: ${num(c.speed)} decode tokens/s as measured`);
  else if (c.emulated) lines.push("speed: emulated on the target and not measured there");
  lines.push(
    `objective ${objective}: ` +
      (objective === "memory"
        ? "the smallest recipe that meets every constraint"
        : objective === "speed"
        ? "the fastest measured recipe that meets every constraint"
        : `the least quality loss (${
          c.loss === null ? "unknown" : num(c.loss)
        }) that meets every ` +
          "constraint"),
  );
  return lines;
}

/** Why nothing qualifies: the constraint that excludes most cells, with the smallest excess. */
function bindingConstraints(cs: Candidate[]): string[] {
  const byKey = new Map<string, { count: number; least: number; evidence: string }>();
  for (const c of cs) {
    for (const x of c.constraints) {
      if (x.pass) continue;
      const seen = byKey.get(x.key);
      if (!seen || x.excess < seen.least) {
        byKey.set(x.key, {
          count: (seen?.count ?? 0) + 1,
          least: x.excess,
          evidence: `${c.method}/${c.format}: ${x.evidence}`,
        });
      } else seen.count++;
    }
  }
  if (byKey.size === 0) return ["no cell meets the rules of the checklist (see rules)"];
  return [...byKey.entries()].sort((a, b) => b[1].count - a[1].count).map(([key, v]) =>
    `nothing meets the constraints: ${key} binds for ${v.count} cell(s); the closest misses by ${
      key === "memory" ? formatBytes(v.least) : num(v.least)
    } (${v.evidence})`
  );
}

function isTaskCheck(r: ResultRow): boolean {
  return r.status === "ok" && ["json", "tool_use", "long_context"].includes(r.task);
}

function applyRules(
  cs: Candidate[],
  cells: Map<string, ResultRow[]>,
  rules: RuleFinding[],
  target: HardwareTarget | undefined,
  batch: number,
  kvModel: "runtime" | "deployment",
): void {
  const rowsOf = (c: Candidate) => cells.get(cellKey(c)) ?? [];
  // 1. Start at weight-only int4 with a calibrated method.
  const int4 = cs.filter((c) =>
    /^int4/.test(c.format) && formatFamily(c.format) === "int-weight-only"
  );
  if (int4.length > 0) {
    const ok = int4.filter((c) => c.excluded.length === 0).sort((a, b) =>
      (a.loss ?? Infinity) - (b.loss ?? Infinity)
    );
    const calibrated = ok.find((c) => CALIBRATED.has(c.method_entry));
    rules.push({
      rule: "int4-calibrated",
      advice: calibrated
        ? `start at weight-only int4 with a calibrated method: ${calibrated.method}/${calibrated.format}` +
          ` meets the constraints (quality loss ${num(calibrated.loss ?? NaN)})`
        : ok.length > 0
        ? `start at weight-only int4: ${ok[0]!.method}/${
          ok[0]!.format
        } meets the constraints; no ` +
          "calibrated method (GPTQ, AWQ) was measured at int4 — measure one before settling"
        : "weight-only int4 was measured but misses the constraints; try a calibrated method",
    });
  }
  // 2. Activation-aware methods when outliers hurt: RTN loses clearly more than AWQ/SmoothQuant.
  for (const aware of cs.filter((c) => ACTIVATION_AWARE.has(c.method_entry))) {
    const rtn = cs.find((c) =>
      c.method_entry === "rtn" && c.model === aware.model && c.format === aware.format
    );
    if (!rtn || rtn.loss === null || aware.loss === null || !(aware.loss > 0)) continue;
    if (rtn.loss > 1.5 * aware.loss) {
      rules.push({
        rule: "activation-aware",
        advice: `outliers hurt round-to-nearest at ${aware.format}: ${aware.method} loses ${
          num(aware.loss)
        } against RTN's ${num(rtn.loss)} — prefer an activation-aware method`,
      });
    }
  }
  // 3. KV-cache quantization when long contexts dominate memory.
  const dominated = cs.filter((c) => c.memory && c.memory.kv > c.memory.weights);
  if (dominated.length > 0) {
    const kvCells = cs.filter((c) =>
      c.memory &&
      rowsOf(c).some((r) => r.extra?.kv_format !== undefined && r.extra.kv_format !== "f32")
    );
    const c = dominated[0]!;
    rules.push({
      rule: "kv-cache",
      advice: `the KV cache dominates memory at ${c.memory!.context} tokens × ${batch} ` +
        `(${formatBytes(c.memory!.kv)} of KV against ${formatBytes(c.memory!.weights)} of weights` +
        ` for ${c.method}/${c.format}, ${kvModel} cache): quantize the KV cache` +
        (kvCells.length > 0
          ? ` — measured: ${kvCells.map((k) => `${k.method}/${k.format}`).join(", ")}`
          : " (no KV-quantized cell was measured: add a format with kv_cache)"),
    });
  }
  // 4. Sub-3-bit only with task checks.
  for (const c of cs) {
    if (c.bits_per_weight === null || c.bits_per_weight >= 3 || c.method === "none") continue;
    if (!rowsOf(c).some(isTaskCheck)) {
      c.excluded.push("sub-3-bit without task checks (json, tool_use or long_context)");
      rules.push({
        rule: "sub-3-bit",
        advice: `${c.method}/${c.format} (${num(c.bits_per_weight)} bits per weight) has no task ` +
          "checks: excluded until json, tool_use or long_context rows are measured",
      });
    }
  }
  // 5. FP8/FP4 only where the hardware runs them.
  for (const c of cs) {
    const family = formatFamily(c.format);
    if (family !== "fp8" && family !== "fp4") continue;
    if (target === undefined || !runsNatively(target, c.format)) {
      c.excluded.push(
        target ? `${family} is emulated on ${target.name}` : `${family} needs a --hardware target`,
      );
      rules.push({
        rule: "fp8-fp4-hardware",
        advice: `${c.method}/${c.format} needs ${family} hardware; ` +
          (target ? `${target.name} emulates it` : "no --hardware given that runs it"),
      });
    }
  }
}
