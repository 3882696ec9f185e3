import assert from "node:assert/strict";
import { join } from "node:path";
import { loadSuite, SuiteError } from "./load.ts";
import { expandCells } from "./expand.ts";
import { cellEngineId } from "../runner/open_cell.ts";

/** Writes `yaml` as DIR/suite.yaml beside a model file, and runs `fn` on it. */
async function withSuite<T>(yaml: string, fn: (file: string, dir: string) => Promise<T>) {
  const dir = await Deno.makeTempDir({ prefix: "quantbench_engines_" });
  try {
    await Deno.writeTextFile(join(dir, "mini.bin"), "not a real model");
    await Deno.writeTextFile(join(dir, "wiki.txt"), "hello world\n");
    await Deno.writeTextFile(join(dir, "suite.yaml"), yaml);
    return await fn(join(dir, "suite.yaml"), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const head = `name: t
models: [{ id: mini, path: mini.bin }]
methods: [none, rtn]
formats: [f32, int4]
tasks: [{ task: perplexity, dataset: wiki.txt }]
`;

Deno.test("loadSuite: an engines: entry names a backend; its cells are the served model's", async () => {
  const yaml = head + `backends: [cpu, vllm]
engines:
  vllm: { kind: openai, base_url: "http://127.0.0.1:8000/v1", model: meta-llama/Llama-3.1-70B-Instruct, api_key_env: VLLM_KEY }
`;
  await withSuite(yaml, async (file) => {
    const suite = await loadSuite(file);
    assert.deepEqual(suite.backends, ["cpu", "vllm"]);
    assert.deepEqual(suite.engines, {
      vllm: {
        id: "vllm",
        kind: "openai",
        options: {
          base_url: "http://127.0.0.1:8000/v1",
          model: "meta-llama/Llama-3.1-70B-Instruct",
          api_key_env: "VLLM_KEY",
        },
      },
    });
    const cells = expandCells(suite);
    const served = cells.filter((c) => c.backend === "vllm");
    // Only the unquantized method runs on a served model; the others are skipped with the reason.
    assert.deepEqual(
      served.map((c) => [c.id, c.skipReason === undefined]),
      [
        ["mini/none/f32/vllm", true],
        ["mini/none/int4/vllm", false],
        ["mini/rtn/f32/vllm", false],
        ["mini/rtn/int4/vllm", false],
      ],
    );
    assert.match(served[3]!.skipReason!, /backend "vllm" is a served model/);
    // The engine's id (a part of cache keys) names the URL and model, never the key.
    assert.equal(
      cellEngineId(served[0]!, suite),
      "openai/meta-llama/Llama-3.1-70B-Instruct@http://127.0.0.1:8000/v1",
    );
  });
});

Deno.test("loadSuite: engines: mistakes are errors at their line and column", async () => {
  const yaml = head + `backends: [cpu, openai, vlm]
engines:
  vllm: { kind: openai, base_url: "127.0.0.1:8000", modle: x }
  cpu: { kind: openai, base_url: "http://h/v1", model: m }
  tgi: { base_url: "http://h/v1", model: m }
`;
  await withSuite(yaml, async (file, dir) => {
    const error = await loadSuite(file).then(() => assert.fail("loaded"), (e: unknown) => e);
    assert.ok(error instanceof SuiteError);
    const lines = error.message.replaceAll(dir, "DIR").split("\n");
    assert.deepEqual(lines, [
      `DIR/suite.yaml:6:17: backend "openai" is an engine that needs settings: add an "engines:" entry "openai" (for openai: base_url and model) (at /backends/1)`,
      `DIR/suite.yaml:6:25: unknown backend "vlm"; did you mean "vllm"? Known: cpu, webgpu, llamacpp, openai, vllm (at /backends/2)`,
      `DIR/suite.yaml:8:35: expected the pattern ^https?://, got "127.0.0.1:8000" (at /engines/vllm/base_url)`,
      `DIR/suite.yaml:8:53: unknown key "modle"; did you mean "model"? (at /engines/vllm/modle)`,
      `DIR/suite.yaml:9:3: engine "cpu" has the name of a built-in backend; give it another name (at /engines/cpu)`,
      `DIR/suite.yaml:10:3: unknown engine kind "tgi". Known: llamacpp, openai (an entry named otherwise says its kind, e.g. "kind: openai") (at /engines/tgi)`,
    ]);
  });
});
