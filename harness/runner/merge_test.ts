import assert from "node:assert/strict";
import { join } from "node:path";
import { mergeShards, optionValue, type ShardResults } from "./merge.ts";
import { planCells, runSuite } from "./run.ts";
import { parseShard, selectShard } from "./shard.ts";
import { loadSuite } from "../suite/load.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { makeFile, makeRow } from "../../core/test_rows.ts";
import type { ResultRow, ResultsFile } from "../../core/row.ts";

/** A shard's results file: two rows (ppl, nll) per cell, cells named c0, c1, … */
function shardFile(cells: number[], shard: string, overrides: Partial<ResultsFile["meta"]> = {}) {
  const rows = cells.flatMap((k) => [
    makeRow({ method: `c${k}`, metric: "ppl", run_id: `run-${shard}` }),
    makeRow({ method: `c${k}`, metric: "nll", run_id: `run-${shard}` }),
  ]);
  const file = makeFile(rows, `run-${shard}`);
  file.meta = {
    ...file.meta,
    argv: ["bench", "suite.yaml", "--shard", shard, "--out", `out/${shard}`],
    started_at: `2025-01-01T00:0${shard[0]}:00.000Z`,
    finished_at: `2025-01-01T00:1${shard[0]}:00.000Z`,
    ...overrides,
  };
  return { label: `shard ${shard}`, file };
}

Deno.test("mergeShards interleaves the shards' cells back into expansion order", () => {
  // 7 cells over 3 shards: 1 → 0, 3, 6; 2 → 1, 4; 3 → 2, 5. Given out of order.
  const merged = mergeShards([
    shardFile([2, 5], "3/3"),
    shardFile([0, 3, 6], "1/3"),
    shardFile([1, 4], "2/3"),
  ]);
  assert.deepEqual(
    merged.rows.map((r) => `${r.method}.${r.metric}`),
    [0, 1, 2, 3, 4, 5, 6].flatMap((k) => [`c${k}.ppl`, `c${k}.nll`]),
  );
  assert.equal(merged.meta.run_id, "run-1/3", "the earliest shard's run id");
  assert.ok(merged.rows.every((r) => r.run_id === "run-1/3"));
  assert.equal(merged.meta.started_at, "2025-01-01T00:01:00.000Z");
  assert.equal(merged.meta.finished_at, "2025-01-01T00:13:00.000Z");
  assert.deepEqual(merged.meta.argv, ["bench", "suite.yaml", "--out", "out/1/3"]);
  // More shards than cells: the empty shard is fine.
  const sparse = mergeShards([shardFile([0], "1/3"), shardFile([1], "2/3"), shardFile([], "3/3")]);
  assert.deepEqual(sparse.rows.map((r) => r.method), ["c0", "c0", "c1", "c1"]);
});

Deno.test("mergeShards refuses incomplete, repeated or mismatched shards", () => {
  const err = (shards: ReturnType<typeof shardFile>[], message: RegExp) =>
    assert.throws(() => mergeShards(shards), { name: "MergeError", message });
  err([shardFile([0, 2], "1/2")], /^Shard 2\/2 is missing$/);
  err([shardFile([0], "1/2"), shardFile([1], "1/2")], /^Shard 1\/2 is given twice/);
  err(
    [shardFile([0], "1/2"), shardFile([1], "2/3")],
    /is shard 2\/3, but "shard 1\/2" is one of 2/,
  );
  const unsharded = shardFile([0], "1/1");
  unsharded.file.meta.argv = ["bench", "suite.yaml"];
  err([unsharded], /is not a shard: its argv has no --shard I\/N/);
  err(
    [shardFile([0, 2], "1/2"), shardFile([1], "2/2", { suite_hash: "cd".repeat(32) })],
    /^Shards differ in suite hash/,
  );
  err(
    [
      shardFile([0, 2], "1/2"),
      shardFile([1], "2/2", { argv: ["bench", "s.yaml", "--shard=2/2", "--limit", "3"] }),
    ],
    /^Shards differ in --limit: "shard 1\/2" has "\(none\)", "shard 2\/2" has "3"/,
  );
  // Shard 1 of 2 can never hold fewer cells than shard 2.
  err(
    [shardFile([0], "1/2"), shardFile([1, 3], "2/2")],
    /holds 1 cells; a split of 3 cells gives it 2/,
  );
  const split = shardFile([0, 1], "1/1");
  split.file.rows.push(makeRow({ method: "c0", metric: "kld" }));
  err([split], /holds rows of cell mini\/c0\/w4g32\/cpu in two places/);
});

Deno.test("optionValue reads both --name VALUE and --name=VALUE", () => {
  assert.equal(optionValue(["--shard", "2/3"], "--shard"), "2/3");
  assert.equal(optionValue(["--shard=2/3"], "--shard"), "2/3");
  assert.equal(optionValue(["--shards", "x"], "--shard"), undefined);
});

const ignore = !hasShared("models/stories260K/stories260K.bin") ||
  !hasShared("data/text/tinystories_sample.txt");

/** Rows as an unsharded run would have them, minus run ids and timings. */
function stable(rows: ResultRow[]) {
  return rows.map(({ run_id: _, extra, ...row }) => {
    const { seconds: _s, quantize_seconds: _q, ...rest } = extra ?? {};
    return { ...row, extra: rest };
  });
}

Deno.test({
  name: "stories260K: three shards merged equal an unsharded run (timings and run ids aside)",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const path = join(dir, "suite.yaml");
    await Deno.writeTextFile(
      path,
      `name: shards
models:
  - { id: s260k, path: ${sharedPath("models/stories260K/stories260K.bin")} }
datasets:
  stories: { kind: text, path: ${sharedPath("data/text/tinystories_sample.txt")} }
methods: [none, rtn]
formats: [f32, int8, { weights: int4, group: 32 }, { weights: int3, group: 32 }]
tasks: [{ task: perplexity, dataset: stories, context: 128 }]
exclude: [{ method: none, format: "!f32" }]
`,
    );
    const suite = await loadSuite(path);
    const cells = planCells(suite, {});
    assert.equal(cells.length, 5, "4 computed cells and rtn/f32, skipped");
    const run = (runId: string, shard?: string) =>
      runSuite(suite, {
        runId,
        cacheDir: join(dir, `cache-${runId}`), // each run computes everything itself
        cells: shard ? selectShard(cells, parseShard(shard)) : cells,
        quiet: true,
        jobs: 1, // in process: no worker start-up per run
        argv: ["bench", path, ...(shard ? ["--shard", shard] : [])],
      });
    const whole = await run("whole");
    const shards: ShardResults[] = [];
    for (const s of ["1/3", "2/3", "3/3"]) {
      shards.push({ label: s, file: await run(`s${s[0]}`, s) });
    }
    assert.deepEqual(shards.map((s) => new Set(s.file.rows.map((r) => r.format)).size), [2, 2, 1]);
    const merged = mergeShards(shards, suite);
    assert.deepEqual(stable(merged.rows), stable(whole.rows));
    assert.ok(merged.rows.some((r) => r.status === "skipped") && merged.rows.length === 9);
    const { run_id: _a, started_at: _b, finished_at: _c, argv, ...meta } = merged.meta;
    const { run_id: _d, started_at: _e, finished_at: _f, argv: wholeArgv, ...wholeMeta } =
      whole.meta;
    assert.deepEqual(meta, wholeMeta);
    assert.deepEqual(argv, wholeArgv);
    // The suite check catches shards of another suite.
    const other = { ...suite, hash: "00".repeat(32) };
    assert.throws(() => mergeShards(shards, other), { name: "MergeError", message: /hash/ });
  },
});
