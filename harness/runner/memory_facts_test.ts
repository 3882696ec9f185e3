/**
 * `recommend`'s memory model (`core/memory_model.ts`, `runtime` counting) against the bytes
 * quantbench's CPU runtime actually holds: the weights of a loaded (and quantized) model, and the
 * KV cache a `CpuRunner` allocates — measured as the growth of the process's external
 * (ArrayBuffer) memory while the runner is built — on stories260K and mini.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModelPath } from "../models/load.ts";
import { rtn } from "../methods/rtn.ts";
import { CpuRunner } from "../../kernels/cpu/backend.ts";
import { cellFacts, kvCacheBytes, memoryEstimate } from "../../core/memory_model.ts";
import type { LlamaModel } from "../../core/model.ts";
import type { ResultRow } from "../../core/row.ts";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { heldBytes, memoryFacts } from "./compute.ts";

const MINI = join(REPO_ROOT, "fixtures/models/mini");
const STORIES = ["models", "stories260K", "stories260K.bin"] as const;

function facts(model: LlamaModel) {
  const f = cellFacts([{ extra: memoryFacts(model) } as unknown as ResultRow]);
  assert.ok(f);
  return f;
}

const gc = (globalThis as { gc?: () => void }).gc;

/**
 * External memory growth while `build` runs, after a full collection (this file runs itself in a
 * subprocess with `--expose-gc`, so no collection of earlier garbage hides part of the growth).
 */
async function externalGrowth(build: () => unknown): Promise<{ bytes: number; kept: unknown }> {
  // V8 releases freed buffers concurrently: collect until the external figure settles.
  let before = -1;
  for (let i = 0; i < 50 && Deno.memoryUsage().external !== before; i++) {
    before = Deno.memoryUsage().external;
    gc!();
    await new Promise((r) => setTimeout(r, 20));
  }
  before = Deno.memoryUsage().external;
  const kept = build();
  return { bytes: Deno.memoryUsage().external - before, kept };
}

async function int4(model: LlamaModel): Promise<LlamaModel> {
  return await rtn.quantize(
    model,
    { id: "int4-g32", weights: "int4", group: 32, symmetric: true, options: {} },
    {},
    { seed: 0 },
  );
}

const KV_INT8 = { format: "int8", group: 32, residual: 32 };

async function check(path: string) {
  const f32 = await loadModelPath(path);
  const q4 = await int4(f32);
  const q4kv: LlamaModel = { ...q4, runtime: { ...q4.runtime, kvCache: KV_INT8 } };
  const rows: string[] = [];
  // Every runner stays alive, so that none is freed while the next one is measured.
  const runners: unknown[] = [];
  for (
    const [name, model] of [["f32", f32], ["int4-g32", q4], ["int4-g32+kv int8", q4kv]] as const
  ) {
    const fx = facts(model);
    const context = 4096;
    // Weights: the model's held buffers against the estimate.
    const model_ = memoryEstimate(fx, context, 1, "runtime");
    assert.equal(model_.weights, heldBytes(model.weights));
    // The KV cache: what the runner allocates, measured.
    const { bytes, kept } = await externalGrowth(() => new CpuRunner(model, context));
    const kv = kvCacheBytes(fx, context, 1, "runtime");
    rows.push(`${name}: KV model ${kv} B, held ${bytes} B`);
    runners.push(kept);
    assert.ok(
      Math.abs(kv - bytes) <= 0.02 * bytes,
      `${name}: KV-cache model ${kv} B against ${bytes} B held by the runner`,
    );
  }
  // f32 weights are held as stored: the deployment figure equals the held bytes within 2 %.
  const fx = facts(f32);
  assert.ok(Math.abs(fx.weight_bytes - fx.weight_bytes_held) <= 0.02 * fx.weight_bytes_held);
  return rows;
}

/** Runs `check` on `path` in a subprocess with the collector exposed; returns its lines. */
async function probe(path: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", import.meta.filename!, path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  return text;
}

if (import.meta.main) {
  console.log((await check(Deno.args[0]!)).join("\n"));
} else {
  Deno.test("the memory model equals the KV cache and weights the runtime holds on mini", async () => {
    await probe(MINI);
  });

  Deno.test({
    name: "the memory model equals the KV cache and weights the runtime holds on stories260K",
    ignore: !hasShared(...STORIES),
    async fn() {
      await probe(sharedPath(...STORIES));
    },
  });
}
