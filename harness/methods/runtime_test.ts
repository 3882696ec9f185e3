import assert from "node:assert/strict";
import { withRuntime } from "./runtime.ts";
import { methods } from "./registry.ts";
import { parseSuite } from "../suite/load.ts";
import { expandCells } from "../suite/expand.ts";
import type { LlamaModel } from "../../core/model.ts";

Deno.test("runtime: methods attach the format's run-time quantization; KV-cache cells run on both backends", async () => {
  const model = { config: {}, weights: { layers: [] } } as unknown as LlamaModel;
  const kv = { format: "int4", group: 32, residual: 64 };
  const format = {
    id: "f32-kv4",
    weights: "f32",
    group: 0,
    symmetric: true,
    options: { kv_cache: kv },
  };
  assert.deepEqual(withRuntime(model, format).runtime, { kvCache: kv });
  assert.equal(withRuntime(model, { ...format, options: {} }), model);
  assert.deepEqual((await methods.get("none").quantize(model, format, {}, { seed: 0 })).runtime, {
    kvCache: kv,
  });
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/m.bin`, "not read by expansion");
    await Deno.writeTextFile(`${dir}/t.txt`, "text");
    const suite = await parseSuite(
      `name: t
models: [{ id: m, path: m.bin }]
methods: [none, smoothquant]
formats:
  - f32
  - { id: f32-kv4, weights: f32, kv_cache: { format: int4, group: 32, residual: 128 } }
  - { id: kv-bad, weights: f32, kv_cache: { format: int4, group: 32, residual: 48 } }
  - { id: w8a8, weights: int8, activations: int8 }
  - { id: w8a8-fp8, weights: int8, activations: fp8 }
backends: [cpu, webgpu]
tasks: [{ task: perplexity, dataset: t.txt }]
exclude:
  - { method: none, format: int8 }
  - { method: smoothquant, format: f32 }
`,
      `${dir}/suite.yaml`,
    );
    const reasons = Object.fromEntries(expandCells(suite).map((c) => [c.id, c.skipReason]));
    assert.deepEqual(Object.keys(reasons).length, 10);
    assert.equal(reasons["m/none/f32-kv4/cpu"], undefined);
    assert.equal(reasons["m/none/f32-kv4/webgpu"], undefined);
    assert.match(reasons["m/none/kv-bad/cpu"]!, /residual 48 must be a multiple of group 32/);
    assert.equal(reasons["m/smoothquant/w8a8/cpu"], undefined);
    assert.equal(reasons["m/smoothquant/w8a8/webgpu"], undefined);
    assert.equal(reasons["m/smoothquant/w8a8-fp8/cpu"], undefined);
    assert.equal(reasons["m/smoothquant/w8a8-fp8/webgpu"], undefined);
    assert.equal(reasons["m/none/f32/webgpu"], undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
