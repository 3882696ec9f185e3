import assert from "node:assert/strict";
import { type CellEvent, computeCell, withFallback } from "./compute.ts";
import type { CachedRow } from "./cache.ts";
import { parseSuite } from "../suite/load.ts";
import { expandCells } from "../suite/expand.ts";
import { backends } from "../../kernels/registry.ts";
import { REPO_ROOT } from "../../core/shared.ts";

Deno.test("withFallback appends fallback=f32(<formats>) only when weights fell back", () => {
  assert.equal(withFallback("ppl ctx=64", []), "ppl ctx=64");
  assert.equal(
    withFallback("ppl ctx=64", ["q4_k", "q6_k"]),
    "ppl ctx=64 fallback=f32(q4_k,q6_k)",
  );
  assert.equal(withFallback("", ["hqq-int4-g32"]), "fallback=f32(hqq-int4-g32)");
});

const webgpuMissing = await backends.get("webgpu").unavailable();

Deno.test({
  name: "a WebGPU cell in a format without a WGSL decoder says fallback=f32 in its rows",
  ignore: webgpuMissing !== undefined && Deno.env.get("QUANTBENCH_REQUIRE_WEBGPU") !== "1",
  async fn() {
    const suite = await parseSuite(
      `name: fallback
models: [{ id: micro, path: ${REPO_ROOT}/fixtures/models/micro }]
datasets:
  text: { kind: text, path: ${REPO_ROOT}/fixtures/datasets/heldout.txt }
methods: [rtn, hqq]
formats:
  - q4_k
  - { id: w4g32, weights: int4, group: 32, symmetric: false }
backends: [webgpu, cpu]
tasks: [{ task: perplexity, dataset: text, context: 64, max_tokens: 128 }]
exclude:
  - { method: hqq, format: q4_k }
`,
      `${REPO_ROOT}/suites/fallback_test.yaml`,
    );
    const rows: Record<string, CachedRow[]> = {};
    for (const cell of expandCells(suite)) {
      assert.equal(cell.skipReason, undefined, cell.id);
      const emit = (e: CellEvent) => {
        if (e.type === "failed") assert.fail(`${cell.id}: ${e.message}`);
        if (e.type === "rows") rows[cell.id] = e.rows;
      };
      await computeCell({ suite, cell, taskIndices: [0] }, emit);
    }
    const details = (id: string) => rows[id]!.map((r) => r.detail);
    for (const detail of details("micro/rtn/q4_k/webgpu")) {
      assert.match(detail, / fallback=f32\(q4_k\)$/);
    }
    for (const detail of details("micro/hqq/w4g32/webgpu")) {
      assert.match(detail, / fallback=f32\(hqq-int4-g32\)$/);
    }
    // Formats the kernels decode, and every CPU cell, carry no such note.
    for (const id of ["micro/rtn/w4g32/webgpu", "micro/rtn/q4_k/cpu", "micro/hqq/w4g32/cpu"]) {
      for (const detail of details(id)) assert.doesNotMatch(detail, /fallback/, id);
    }
  },
});
