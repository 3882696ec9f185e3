/**
 * `recommend` on the quickstart and methods_mini results (fixtures/recommend/*.json, written by
 * `deno task bench suites/quickstart.yaml` and `suites/methods_mini.yaml` with the runner's memory
 * facts), with expectations computed by hand from the rows:
 *
 * mini: 8 layers, 2 KV heads of 32, dim 256, hidden 768, vocab 3072, max_seq_len 2048. At 2048
 * tokens × 1 the deployment (f16) KV cache is 2·8·2048·64·2 = 4 194 304 B and the workspace
 * 4·(4·256 + 3·768 + 3072 + 2048) = 33 792 B, so the cells need (weights + 4 227 096 B):
 * f32 31 508 480 (30.05 MiB), int8 13 459 456 (12.84 MiB), int4-g32 10 782 720 (10.28 MiB),
 * int3-g32 10 029 056 (9.56 MiB), int2-g32 9 275 392 (8.85 MiB).
 * tool_use accuracy: 1.0 for f32, int8, int4; 0.4 (int3) and 0.2 (int2) — McNemar p = 2·2⁻⁶ and
 * 2·2⁻⁸, significant drops beyond 0.05. Perplexity: f32 108.080, int8 108.045, int4 119.425.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readResults } from "./json.ts";
import {
  parseBytes,
  parseMaxDrop,
  recommend,
  type Recommendation,
  RecommendError,
} from "./recommend.ts";
import { recommendationToJson, renderRecommendationMarkdown } from "./recommend_markdown.ts";
import { REPO_ROOT } from "../core/shared.ts";
import type { ResultsFile } from "../core/row.ts";

const QUICKSTART = await readResults(join(REPO_ROOT, "fixtures/recommend/quickstart.json"));
const METHODS = await readResults(join(REPO_ROOT, "fixtures/recommend/methods_mini.json"));
const MiB = 1024 * 1024;
const TOOL = { "tool_use.accuracy": 0.05 };

function chosen(r: Recommendation): string | null {
  return r.choice ? `${r.choice.method}/${r.choice.format}` : null;
}

function fired(r: Recommendation, rule: string): boolean {
  return r.rules.some((f) => f.rule === rule);
}

function without(file: ResultsFile, drop: (row: ResultsFile["rows"][number]) => boolean) {
  return { ...file, rows: file.rows.filter((r) => !drop(r)) };
}

Deno.test("the memory model matches the hand-computed figures on mini", () => {
  const r = recommend(QUICKSTART, {});
  const total = Object.fromEntries(r.candidates.map((c) => [c.format, c.memory!.total]));
  assert.deepEqual(total, {
    f32: 31508480,
    int8: 13459456,
    "int4-g32": 10782720,
    "int3-g32": 10029056,
    "int2-g32": 9275392,
  });
  const c512 = recommend(QUICKSTART, { context: 512, batch: 2 }).candidates[0]!.memory!;
  assert.equal(c512.kv, 2 * 8 * 512 * 64 * 2 * 2);
  assert.equal(c512.workspace, 4 * 2 * (4 * 256 + 3 * 768 + 3072 + 512));
  const runtime = recommend(QUICKSTART, { kvModel: "runtime" }).candidates[0]!.memory!;
  assert.equal(runtime.kv, 2 * 8 * 2048 * 64 * 4);
});

Deno.test("quickstart: --memory 16MiB --max-drop tool_use.accuracy=0.05 names int8", () => {
  const r = recommend(QUICKSTART, { memory: 16 * MiB, maxDrop: TOOL });
  assert.equal(chosen(r), "rtn/int8");
  const excluded = Object.fromEntries(
    r.candidates.map((c) => [c.format, c.excluded.map((e) => e.split(":")[0])]),
  );
  assert.deepEqual(excluded, {
    f32: ["memory"],
    int8: [],
    "int4-g32": [],
    "int3-g32": ["tool_use.accuracy"],
    "int2-g32": ["tool_use.accuracy"],
  });
  assert.match(r.evidence.join("\n"), /12\.84 MiB of 16\.00 MiB at 2048 tokens/);
  assert.match(r.evidence.join("\n"), /tool_use\.accuracy 1 vs 1 at full precision/);
});

Deno.test("quickstart: a smaller budget or another objective changes the answer as the numbers say", () => {
  // 12 MiB = 12 582 912 B < int8's 13 459 456: int4 next in quality.
  assert.equal(chosen(recommend(QUICKSTART, { memory: 12 * MiB, maxDrop: TOOL })), "rtn/int4-g32");
  // The smallest that passes tool_use is int4 (int3, int2 fail it).
  assert.equal(
    chosen(recommend(QUICKSTART, { memory: 16 * MiB, maxDrop: TOOL, objective: "memory" })),
    "rtn/int4-g32",
  );
  // 8 MiB at 512 tokens: int8 needs 9 231 360 + 1 048 576 + 27 648 > 8 388 608; int4 7 630 848.
  assert.equal(
    chosen(recommend(QUICKSTART, { memory: 8 * MiB, context: 512, maxDrop: TOOL })),
    "rtn/int4-g32",
  );
});

Deno.test("quickstart: --objective speed takes the fastest measured eligible recipe", () => {
  const r = recommend(QUICKSTART, { memory: 16 * MiB, maxDrop: TOOL, objective: "speed" });
  const speed = (format: string) =>
    QUICKSTART.rows.find((x) => x.format === format && x.metric === "decode_tokens_per_s")!.value!;
  // Eligible: int8 and int4-g32 (f32 does not fit; int3, int2 fail tool_use).
  const fastest = speed("int8") > speed("int4-g32") ? "rtn/int8" : "rtn/int4-g32";
  assert.equal(chosen(r), fastest);
  assert.match(r.evidence.join("\n"), /decode tokens\/s as measured/);
});

Deno.test("a model without a full-precision cell cannot meet a quality constraint", () => {
  const r = recommend(without(QUICKSTART, (x) => x.method === "none"), { maxDrop: TOOL });
  assert.equal(r.choice, null);
  assert.match(r.evidence[0]!, /no full-precision cell \(method none\) of mini/);
});

Deno.test("a failed cell is never recommended, with or without a full-precision baseline", () => {
  // As the runner writes a cell that failed to load: every row failed, no value, no facts.
  const failedInt2 = (file: ResultsFile): ResultsFile => ({
    ...file,
    rows: [
      ...file.rows.filter((r) => r.format === "int2-g32").map((r) => ({
        ...r,
        status: "failed" as const,
        value: null,
        detail: "out of memory",
        extra: {},
      })),
      ...file.rows.filter((r) => r.format !== "int2-g32"),
    ],
  });
  const noBase = failedInt2(without(QUICKSTART, (r) => r.method === "none" || r.task === "kld"));
  for (const objective of ["quality", "memory", "speed"] as const) {
    const r = recommend(noBase, { objective });
    assert.notEqual(chosen(r), "rtn/int2-g32", objective);
    assert.notEqual(r.choice, null, objective);
  }
  const int2 = recommend(noBase, {}).candidates.find((c) => c.format === "int2-g32")!;
  assert.match(int2.excluded.join(), /failed: perplexity \(out of memory\)/);
  // One failed task is enough: int8 with a failed json task is not chosen where it was.
  const oneFailed = {
    ...QUICKSTART,
    rows: QUICKSTART.rows.map((r) =>
      r.format === "int8" && r.task === "json"
        ? { ...r, status: "failed" as const, value: null }
        : r
    ),
  };
  assert.equal(chosen(recommend(QUICKSTART, { memory: 16 * MiB, maxDrop: TOOL })), "rtn/int8");
  assert.equal(chosen(recommend(oneFailed, { memory: 16 * MiB, maxDrop: TOOL })), "rtn/int4-g32");
});

Deno.test("the suite's thresholds constrain too: quickstart's ppl limit of 2 % rules out int4", () => {
  const thresholds = {
    ppl: { max_relative_increase: 0.02 },
    "json.schema_valid": { max_absolute_drop: 0.05 },
    "tool_use.accuracy": { max_absolute_drop: 0.05 },
  };
  const r = recommend(QUICKSTART, { memory: 16 * MiB, thresholds, objective: "memory" });
  // int4-g32: 119.425 / 108.080 − 1 = +10.5 %, its interval above zero; int8: −0.03 %.
  assert.equal(chosen(r), "rtn/int8");
  const int4 = r.candidates.find((c) => c.format === "int4-g32")!;
  const ppl = int4.constraints.find((x) => x.key === "perplexity.ppl")!;
  assert.equal(ppl.pass, false);
  assert.ok(Math.abs(ppl.excess - (119.42530933039879 / 108.08018949381727 - 1 - 0.02)) < 1e-9);
  // A flag for the same metric takes precedence over the suite's limit.
  const loose = recommend(QUICKSTART, {
    memory: 16 * MiB,
    thresholds,
    maxPplIncrease: 0.2,
    objective: "memory",
  });
  assert.equal(chosen(loose), "rtn/int4-g32");
});

Deno.test("quickstart: 10 MiB fits nothing that passes; the binding constraints and by how much", () => {
  const r = recommend(QUICKSTART, { memory: 10 * MiB, maxDrop: TOOL });
  assert.equal(r.choice, null);
  const text = r.evidence.join("\n");
  // int4 misses 10 485 760 B by 296 960 B = 290.00 KiB.
  assert.match(text, /memory binds for 3 cell\(s\); the closest misses by 290\.00 KiB/);
  // int3 misses the 0.05 limit by 0.6 − 0.05.
  assert.match(text, /tool_use\.accuracy binds for 2 cell\(s\); the closest misses by 0\.55/);
  assert.match(renderRecommendationMarkdown(r), /No recipe meets the constraints/);
});

Deno.test("quickstart: loosening the constraint at 10 MiB admits int3", () => {
  const r = recommend(QUICKSTART, { memory: 10 * MiB, maxDrop: { "tool_use.accuracy": 1 } });
  assert.equal(chosen(r), "rtn/int3-g32");
});

Deno.test("methods_mini: --memory 16MiB --max-drop tool_use.accuracy=0.05 names AWQ", () => {
  const r = recommend(METHODS, { memory: 16 * MiB, maxDrop: TOOL });
  // Perplexity 114.993 (AWQ) < 119.307 (GPTQ) < 119.425 (RTN); f32 (30.05 MiB) does not fit.
  assert.equal(chosen(r), "awq/int4-g32");
  assert.ok(Math.abs(r.choice!.loss! - (114.99266204903881 / 108.08018949381727 - 1)) < 1e-9);
  assert.match(r.evidence.join("\n"), /quality: perplexity\.ppl 115 vs 108 .*\+6\.4 %.*95 % CI/);
});

Deno.test("methods_mini: --max-ppl-increase 0.03 binds: AWQ's +6.40 % misses by 0.034", () => {
  const r = recommend(METHODS, { memory: 16 * MiB, maxDrop: TOOL, maxPplIncrease: 0.03 });
  assert.equal(r.choice, null);
  assert.match(
    r.evidence[0]!,
    /perplexity\.ppl binds for 3 cell\(s\); the closest misses by 0\.034/,
  );
  assert.equal(
    chosen(recommend(METHODS, { memory: 16 * MiB, maxDrop: TOOL, maxPplIncrease: 0.07 })),
    "awq/int4-g32",
  );
});

Deno.test("rule int4-calibrated fires when int4 was measured, and names a calibrated method", () => {
  const mm = recommend(METHODS, { maxDrop: TOOL });
  assert.match(mm.rules.find((f) => f.rule === "int4-calibrated")!.advice, /awq\/int4-g32/);
  const qs = recommend(QUICKSTART, { maxDrop: TOOL });
  assert.match(qs.rules.find((f) => f.rule === "int4-calibrated")!.advice, /no calibrated method/);
  const noInt4 = without(QUICKSTART, (r) => r.format.startsWith("int4"));
  assert.ok(!fired(recommend(noInt4, { maxDrop: TOOL }), "int4-calibrated"));
});

Deno.test("calibration-set cells are judged like any other and known by their method entry", async () => {
  const sets = await readResults(join(REPO_ROOT, "fixtures/recommend/calibration_mini.json"));
  // Perplexity +5.17 % (AWQ in-domain), +5.38 % (GPTQ in-domain), +7.93 % (AWQ out-of-domain),
  // +9.69 % (GPTQ out-of-domain) against f32's 108.080 (30.05 MiB, over the budget).
  const r = recommend(sets, { memory: 16 * MiB, maxPplIncrease: 0.06 });
  assert.equal(chosen(r), "awq@in_domain/int4-g32");
  assert.deepEqual(
    r.candidates.map((c) => [c.method_entry, c.calibration, c.excluded.length === 0]),
    [
      ["gptq", "in_domain", true],
      ["gptq", "out_of_domain", false],
      ["awq", "in_domain", true],
      ["awq", "out_of_domain", false],
      ["none", null, false],
    ],
  );
  // AWQ is a calibrated method whatever set it was calibrated on.
  assert.match(
    r.rules.find((f) => f.rule === "int4-calibrated")!.advice,
    /with a calibrated method: awq@in_domain\/int4-g32/,
  );
  // At 5.3 % GPTQ's in-domain +5.38 % misses by 0.0008 and only AWQ in-domain is left.
  const tight = recommend(sets, { memory: 16 * MiB, maxPplIncrease: 0.053 });
  assert.deepEqual(
    tight.candidates.filter((c) => c.excluded.length === 0).map((c) => c.method),
    ["awq@in_domain"],
  );
  const gptq = tight.candidates[0]!.constraints.find((x) => x.key === "perplexity.ppl")!;
  assert.ok(Math.abs(gptq.excess - (113.89094356719171 / 108.08018949381727 - 1 - 0.053)) < 1e-9);
  // At 3 % every calibration set binds; AWQ in-domain misses by 5.17 % − 3 %.
  const none = recommend(sets, { memory: 16 * MiB, maxPplIncrease: 0.03 });
  assert.equal(none.choice, null);
  assert.match(
    none.evidence[0]!,
    /perplexity\.ppl binds for 4 cell\(s\); the closest misses by 0\.0217 \(awq@in_domain/,
  );
});

Deno.test("rule activation-aware fires when RTN loses clearly more than AWQ", () => {
  assert.ok(fired(recommend(METHODS, {}), "activation-aware"));
  assert.ok(!fired(recommend(QUICKSTART, {}), "activation-aware"));
  // Without RTN at AWQ's format there is no evidence.
  assert.ok(!fired(recommend(without(METHODS, (r) => r.method === "rtn"), {}), "activation-aware"));
});

Deno.test("rule kv-cache fires when the KV cache outweighs the weights at the context", () => {
  // 8192 tokens: 16 777 216 B of KV against 27 280 384 B (f32) … 5 047 296 B (int2) of weights.
  const long = recommend(QUICKSTART, { context: 8192 });
  assert.match(long.rules.find((f) => f.rule === "kv-cache")!.advice, /no KV-quantized cell/);
  // 2048 tokens: 4 194 304 B of KV, below every cell's weights.
  assert.ok(!fired(recommend(QUICKSTART, {}), "kv-cache"));
});

Deno.test("rule sub-3-bit excludes a sub-3-bit cell only when it lacks task checks", () => {
  const r = recommend(QUICKSTART, { maxDrop: {} });
  assert.ok(!fired(r, "sub-3-bit"));
  const noTasks = without(
    QUICKSTART,
    (row) => row.format === "int2-g32" && ["json", "tool_use", "long_context"].includes(row.task),
  );
  const s = recommend(noTasks, { objective: "memory" });
  assert.ok(fired(s, "sub-3-bit"));
  const int2 = s.candidates.find((c) => c.format === "int2-g32")!;
  assert.match(int2.excluded.join(), /sub-3-bit without task checks/);
  assert.notEqual(chosen(s), "rtn/int2-g32");
});

Deno.test("rule fp8-fp4-hardware: an FP8 recipe is excluded unless the target runs FP8", () => {
  const fp8 = {
    ...QUICKSTART,
    rows: QUICKSTART.rows.map((r) => r.format === "int8" ? { ...r, format: "fp8" } : r),
  };
  const a100 = recommend(fp8, { hardware: "a100", memory: 16 * MiB, maxDrop: TOOL });
  assert.ok(fired(a100, "fp8-fp4-hardware"));
  assert.equal(a100.candidates.find((c) => c.format === "fp8")!.emulated, true);
  assert.equal(chosen(a100), "rtn/int4-g32");
  const h100 = recommend(fp8, { hardware: "h100", memory: 16 * MiB, maxDrop: TOOL });
  assert.ok(!fired(h100, "fp8-fp4-hardware"));
  assert.equal(chosen(h100), "rtn/fp8");
  // Measured on the CPU, not on the A100: an emulated recipe's speed is not used …
  assert.equal(a100.candidates.find((c) => c.format === "fp8")!.speed, null);
  // … but on an x86-64 CPU target (where these results were measured) it is.
  const cpu = recommend(fp8, { hardware: "cpu-avx2" }).candidates.find((c) => c.format === "fp8")!;
  assert.equal(cpu.emulated, true);
  assert.equal(
    cpu.speed,
    fp8.rows.find((x) => x.format === "fp8" && x.metric === "decode_tokens_per_s")!.value,
  );
});

Deno.test("the Pareto set keeps every cell no other beats on bytes, speed and every quality metric", () => {
  const r = recommend(METHODS, {});
  // RTN int4: same bytes as GPTQ int4, worse perplexity, KLD, … than GPTQ or AWQ.
  assert.deepEqual(
    r.candidates.filter((c) => c.pareto).map((c) => c.method).sort(),
    ["awq", "gptq", "none"],
  );
});

Deno.test("bad inputs are named errors saying what to write", () => {
  assert.throws(() => parseBytes("lots"), RecommendError);
  assert.equal(parseBytes("24GiB"), 24 * 1024 ** 3);
  assert.equal(parseBytes("1.5GB"), 1.5e9);
  assert.deepEqual(parseMaxDrop("tool_use.accuracy=0.02,json.schema_valid=1%"), {
    "tool_use.accuracy": 0.02,
    "json.schema_valid": 0.01,
  });
  assert.throws(() => parseMaxDrop("accuracy"), /expected TASK\.METRIC=DROP/);
  assert.throws(() => recommend(QUICKSTART, { hardware: "tpu" }), /Unknown hardware "tpu"/);
  const json = JSON.parse(recommendationToJson(recommend(QUICKSTART, { memory: 1 })));
  assert.equal(json.choice, null);
});
