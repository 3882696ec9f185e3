import assert from "node:assert/strict";
import { join } from "node:path";
import { sharedPath } from "../../core/shared.ts";
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
  assert.deepEqual([byName.method.id, byName.format.id, byName.format.weights], [
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
