/**
 * `recommend`'s memory model (`core/memory_model.ts`, `runtime` counting) against the bytes
 * quantbench's CPU runtime actually holds, measured as the process's external (ArrayBuffer) memory
 * that stays held: by a loaded model (and a quantized one, once its float source is freed) for the
 * weights, and by a `CpuRunner` for its KV cache — on stories260K and mini, within 2 % (and the
 * runner's own `kvCacheBytes`, which rows record as `kv_cache_bytes`, likewise).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModelPath } from "../models/load.ts";
import { rtn } from "../methods/rtn.ts";
import { CpuRunner } from "../../kernels/cpu/backend.ts";
import { cellFacts, memoryEstimate } from "../../core/memory_model.ts";
import type { LlamaModel } from "../../core/model.ts";
import type { ResultRow } from "../../core/row.ts";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { kvCacheFacts, memoryFacts } from "./compute.ts";

const MINI = join(REPO_ROOT, "fixtures/models/mini");
const STORIES = ["models", "stories260K", "stories260K.bin"] as const;

function facts(model: LlamaModel) {
  const f = cellFacts([{ extra: memoryFacts(model) } as unknown as ResultRow]);
  assert.ok(f);
  return f;
}

const gc = (globalThis as { gc?: () => void }).gc;

/** The process's external (ArrayBuffer) memory once V8 has released every freed buffer. */
async function settled(): Promise<number> {
  // V8 releases freed buffers concurrently and not always on the next collection: collect until
  // the external figure has stayed the same for five collections in a row.
  let last = -1;
  for (let i = 0, same = 0; i < 300 && same < 5; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 10));
    const now = Deno.memoryUsage().external;
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

/**
 * The external memory that stays held by what `build` returns: measured after a full collection
 * before and after (this file runs itself in a subprocess with `--expose-gc`, so neither earlier
 * garbage nor `build`'s temporaries — e.g. the float model a quantized one was made from — count).
 */
async function heldAfter<T>(build: () => T | Promise<T>): Promise<{ bytes: number; kept: T }> {
  const before = await settled();
  const kept = await build();
  return { bytes: (await settled()) - before, kept };
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
  const rows: string[] = [];
  // The weights: what a loaded model (and a quantized one, once its float source is freed) holds.
  const f32 = await heldAfter(() => loadModelPath(path));
  const q4 = await heldAfter(async () => await int4(await loadModelPath(path)));
  const q4kv: LlamaModel = { ...q4.kept, runtime: { ...q4.kept.runtime, kvCache: KV_INT8 } };
  // Every runner stays alive, so that none is freed while the next one is measured.
  const runners: unknown[] = [];
  for (
    const [name, model, weightsHeld] of [
      ["f32", f32.kept, f32.bytes],
      ["int4-g32", q4.kept, q4.bytes],
      ["int4-g32+kv int8", q4kv, q4.bytes],
    ] as const
  ) {
    const fx = facts(model);
    const context = 4096;
    const estimate = memoryEstimate(fx, context, 1, "runtime");
    // The KV cache: what the runner allocates, measured.
    const { bytes, kept } = await heldAfter(() => new CpuRunner(model, context));
    runners.push(kept);
    rows.push(
      `${name}: weights model ${estimate.weights} B, held ${weightsHeld} B; ` +
        `KV model ${estimate.kv} B, held ${bytes} B`,
    );
    assert.ok(
      Math.abs(estimate.weights - weightsHeld) <= 0.02 * weightsHeld,
      `${name}: weights model ${estimate.weights} B against ${weightsHeld} B held by the model`,
    );
    assert.ok(
      Math.abs(estimate.kv - bytes) <= 0.02 * bytes,
      `${name}: KV-cache model ${estimate.kv} B against ${bytes} B held by the runner`,
    );
    assert.ok(
      Math.abs(kept.kvCacheBytes - bytes) <= 0.02 * bytes,
      `${name}: the runner says ${kept.kvCacheBytes} B of KV cache, holds ${bytes} B`,
    );
  }
  // f32 weights are held as stored: the deployment figure equals the held bytes within 2 %.
  const fx = facts(f32.kept);
  assert.ok(Math.abs(fx.weight_bytes - f32.bytes) <= 0.02 * f32.bytes);
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

Deno.test("rows record the KV cache bytes the engine allocated, where it says", () => {
  assert.deepEqual(kvCacheFacts({ kvCacheBytes: 983040, maxSeqLen: 2048 }), {
    kv_cache_bytes: 983040,
    kv_cache_positions: 2048,
  });
  assert.deepEqual(kvCacheFacts({ maxSeqLen: 2048 }), {});
});

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
