import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT, sharedPath } from "../../core/shared.ts";
import {
  cachedReferenceBytes,
  referenceCell,
  ReferenceCellError,
  resolveReference,
} from "./reference.ts";
import { loadSuite } from "../suite/load.ts";
import { runSuite } from "../runner/run.ts";
import { missing, STORIES } from "./test_context.ts";
import type { FormatSpec, MethodSpec } from "../../core/suite_types.ts";

const TINY = "data/text/tinystories_sample.txt";

Deno.test("reference: resolved from suite ids first, then registry names", () => {
  const gptq: MethodSpec = { id: "base", method: "none", options: {} };
  const f32: FormatSpec = { id: "full", weights: "f32", group: 0, symmetric: true, options: {} };
  const suite = { methods: [gptq], formats: [f32] };
  assert.deepEqual(resolveReference(suite, { method: "base", format: "full" }), {
    method: gptq,
    format: f32,
  });
  const byName = resolveReference(suite, undefined);
  assert.deepEqual([byName.method!.id, byName.format!.id, byName.format!.weights], [
    "none",
    "f32",
    "f32",
  ]);
  assert.throws(() => resolveReference(suite, { method: "gptqq" }), ReferenceCellError);
  assert.throws(() => resolveReference(suite, { format: "int9" }), /known weight format/);
  assert.throws(
    () => resolveReference(suite, { method: "none", format: "int4" }),
    /Reference none\/int4: method "none" does not quantize/,
  );
  const cell = referenceCell(
    {
      id: "m/rtn/int4/cpu",
      model: { id: "m", path: "/m.bin" },
      method: { id: "rtn", method: "rtn", options: {} },
      format: { ...f32, id: "int4", weights: "int4" },
      backend: "cpu",
    },
    byName,
  );
  assert.equal(cell.id, "m/none/f32/cpu");
});

Deno.test("reference: bytes are computed once per key and folder", async () => {
  const cacheDir = await Deno.makeTempDir();
  let computed = 0;
  const compute = () => Promise.resolve(new Uint8Array([++computed]));
  const a = await cachedReferenceBytes({ key: "abc", cacheDir }, "x", compute);
  const b = await cachedReferenceBytes({ key: "abc", cacheDir }, "x", compute);
  const c = await cachedReferenceBytes({ key: "abd", cacheDir }, "x", compute);
  assert.deepEqual([a[0], b[0], c[0], computed], [1, 1, 2, 2]);
  await cachedReferenceBytes({ key: "abc" }, "x", compute);
  assert.equal(computed, 3, "no folder, no cache");
});

Deno.test({
  name: "reference: the runner scores kld against none/f32 and caches the reference once",
  ignore: missing(TINY),
  async fn() {
    const dir = await Deno.makeTempDir();
    const suitePath = join(dir, "suite.yaml");
    await Deno.writeTextFile(
      suitePath,
      `name: kldtest
models:
  - { id: s, path: ${sharedPath(STORIES)} }
datasets:
  tiny: { kind: text, path: ${sharedPath(TINY)} }
methods: [none, rtn]
formats: [f32, int8]
exclude:
  - { method: none, format: "!f32" }
  - { method: rtn, format: f32 }
tasks:
  - { task: kld, dataset: tiny, context: 128, max_tokens: 640 }
`,
    );
    const suite = await loadSuite(suitePath);
    const cacheDir = join(dir, "cache");
    const run = () => runSuite(suite, { runId: "t", cacheDir, jobs: 1, quiet: true });
    const first = await run();
    const kld = (format: string) =>
      first.rows.find((r) => r.format === format && r.metric === "kld")!;
    assert.equal(kld("f32").status, "ok", kld("f32").detail);
    // Only the uint16 storage of the reference rows separates the f32 cell from itself.
    assert.ok(Math.abs(kld("f32").value!) < 1e-5, `${kld("f32").value}`);
    assert.ok(kld("int8").value! > 0 && kld("int8").value! < 0.01, `${kld("int8").value}`);
    assert.match(kld("int8").detail, /ref=none\/f32 chunks=5 first=64/);
    // One reference file: both cells share it (the f32 cell is its own reference).
    const files: string[] = [];
    for await (const d of Deno.readDir(join(cacheDir, "reference"))) {
      for await (const f of Deno.readDir(join(cacheDir, "reference", d.name))) files.push(f.name);
    }
    assert.equal(files.length, 1);
    const again = await run();
    assert.deepEqual(again.rows.map((r) => r.value), first.rows.map((r) => r.value));
  },
});

Deno.test("reference: a calibrated reference method is quantized on the suite's calibration set", async () => {
  // The reference cell (GPTQ calibrated on `calib`) is opened as the runner opens cells; before,
  // it was quantized without the suite's datasets and failed with a CalibrationError.
  const dir = await Deno.makeTempDir();
  const suitePath = join(dir, "suite.yaml");
  const text = join(REPO_ROOT, "fixtures/datasets/heldout.txt");
  await Deno.writeTextFile(
    suitePath,
    `name: calibrated_reference
models:
  - { id: mini, path: ${join(REPO_ROOT, "fixtures/models/mini")} }
datasets:
  text: { kind: text, path: ${text} }
  calib: { kind: text, path: ${text}, skip_chars: 100000 }
methods:
  - { id: gptq-ao, method: gptq, calibration: { dataset: calib, samples: 2, seq_len: 64 } }
  - rtn
formats:
  - { id: int4, weights: int4, group: 32 }
tasks:
  - { task: kld, dataset: text, context: 64, max_tokens: 256, reference: { method: gptq-ao, format: int4 } }
  - { task: perplexity, dataset: text, context: 64, max_tokens: 256, protocol: llama.cpp }
`,
  );
  const suite = await loadSuite(suitePath);
  const results = await runSuite(suite, {
    runId: "t",
    cacheDir: join(dir, "cache"),
    jobs: 1,
    quiet: true,
  });
  const row = (method: string, metric: string) =>
    results.rows.find((r) => r.method === method && r.metric === metric)!;
  assert.deepEqual(results.rows.filter((r) => r.status !== "ok"), []);
  assert.match(row("rtn", "kld").detail, /ref=gptq-ao\/int4 chunks=4 first=32/);
  assert.ok(row("rtn", "kld").value! > 0);
  // The reference is the calibrated GPTQ model itself: its NLL under kld is its own perplexity's.
  assert.ok(Math.abs(row("rtn", "ppl_ref").value! / row("gptq-ao", "ppl").value! - 1) < 1e-6);
  assert.ok(Math.abs(row("gptq-ao", "kld").value!) < 1e-5, "the gptq-ao cell is its own reference");
});

Deno.test("reference: another model of the suite, with the scored cell's method and format", () => {
  const none: MethodSpec = { id: "none", method: "none", options: {} };
  const native: FormatSpec = {
    id: "native",
    weights: "native",
    group: 0,
    symmetric: true,
    options: {},
  };
  const f16 = { id: "f16", path: "/m-f16.gguf" };
  const suite = { methods: [none], formats: [native], models: [f16] };
  const ref = resolveReference(suite, { model: "f16" });
  assert.deepEqual(ref, { model: f16 });
  const cell = referenceCell({
    id: "q4/none/native/llamacpp",
    model: { id: "q4", path: "/m-q4.gguf" },
    method: none,
    format: native,
    backend: "llamacpp",
  }, ref);
  assert.deepEqual([cell.id, cell.model.path], ["f16/none/native/llamacpp", "/m-f16.gguf"]);
  const f32 = resolveReference(suite, { model: "f16", format: "f32" });
  assert.deepEqual([f32.model?.id, f32.method?.id, f32.format?.id], ["f16", "none", "f32"]);
  assert.throws(
    () => resolveReference(suite, { model: "f61" }),
    /Reference model "f61" is not a model id of the suite \(known: f16\)/,
  );
});
