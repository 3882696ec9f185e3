import assert from "node:assert/strict";
import { join } from "node:path";
import { randomCodes } from "./random_codes.ts";
import { LINEAR_NAMES } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { REPO_ROOT } from "../../core/shared.ts";
import type { CodedMatrix } from "../../core/coded.ts";
import { loadModelPath } from "../models/load.ts";
import { loadSuite } from "../suite/load.ts";
import { planCells, runSuite } from "../runner/run.ts";
import { backendUnavailable } from "../engines/registry.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import { e8pVectors } from "../../kernels/formats/e8p_format.ts";

const MINI = join(REPO_ROOT, "fixtures/models/mini");

const spec = (id: string, weights: string, group = 0): FormatSpec => ({
  id,
  weights,
  group,
  symmetric: true,
  options: {},
});

Deno.test("random_codes: seeded per suite seed, layer and linear; E8P12 with e8p: true", async () => {
  const model = await loadModelPath(MINI);
  const run = (seed: number) =>
    randomCodes.quantize(model, spec("e8p12", "int2"), { e8p: true }, { seed });
  const [a, b, c] = [await run(0), await run(0), await run(1)];
  const sides = (m: typeof a, layer: number) => (m.weights.layers[layer]!.wq as CodedMatrix).sides;
  const wq = a.weights.layers[0]!.wq as CodedMatrix;
  assert.equal(wq.codec, "e8p12");
  assert.equal(wq.data.length, wq.rows * e8pVectors(wq.cols) * 2);
  assert.deepEqual(wq.data, (b.weights.layers[0]!.wq as CodedMatrix).data, "same seed, same codes");
  assert.notDeepEqual(
    wq.data,
    (c.weights.layers[0]!.wq as CodedMatrix).data,
    "suite seed mixed in",
  );
  assert.notDeepEqual(sides(a, 0), sides(a, 1), "layer mixed in");
  const wk = a.weights.layers[0]!.wk as CodedMatrix;
  assert.notDeepEqual(wq.data.subarray(0, 64), wk.data.subarray(0, 64), "linear name mixed in");
  // Float layers stay outside the blocks; the quantized copy is a new model.
  assert.equal(model.weights.layers[0]!.wq.kind, "dense");
});

Deno.test("random_codes: refuses float formats and settings a format contradicts", () => {
  assert.match(randomCodes.unsupported(spec("f32", "f32")) ?? "", /use method none/);
  assert.match(randomCodes.unsupported(spec("a", "aqlm_2x8", -1)) ?? "", /per tensor/);
  assert.equal(randomCodes.unsupported(spec("v", "vptq-v4-k256-0")), undefined);
  assert.deepEqual(randomCodes.tasks, ["throughput"]);
});

/** Average storage bits per weight of mini's block linears in `format` (what rows must say). */
async function expectedBits(format: string): Promise<number> {
  const config = JSON.parse(await Deno.readTextFile(join(MINI, "config.json")));
  const d = config.hidden_size;
  const kv = config.num_key_value_heads * config.head_dim;
  const f = config.intermediate_size;
  const shapes = [[d, d], [kv, d], [kv, d], [d, d], [f, d], [f, d], [d, f]];
  assert.equal(shapes.length, LINEAR_NAMES.length);
  let bits = 0;
  let count = 0;
  for (const [rows, cols] of shapes as [number, number][]) {
    // E8P12: 16-bit codes per 8 weights, a sign bit per column and an f16 scale per row.
    bits += format === "e8p12"
      ? 16 * rows * e8pVectors(cols) + cols + 16 * rows
      : elementFormats.get(format).bitsPerWeight(
        format === "int4" ? spec("g", "int4", 128) : spec(format, format),
        rows,
        cols,
      ) * rows * cols;
    count += rows * cols;
  }
  return bits / count;
}

Deno.test({
  name: "suites/scale_2bit.yaml's shape on mini: every cell's throughput runs at its format's bits",
  // The suite decodes 5 formats on the CPU and on WebGPU where an adapter is found.
  sanitizeResources: false,
  async fn() {
    const text = (await Deno.readTextFile(join(REPO_ROOT, "suites/scale_2bit.yaml")))
      .replace("../fixtures/scale/models/tinyllama", MINI)
      .replace("backends: [webgpu]", "backends: [cpu, webgpu]")
      .replace(
        /- \{ task: throughput,[^}]*\}/,
        "- { task: throughput, prompt_tokens: 8, " +
          "generate_tokens: 4, warmup: 0, repeats: 1 }",
      );
    const dir = await Deno.makeTempDir({ prefix: "quantbench_random_codes_" });
    try {
      const path = join(dir, "scale_2bit_mini.yaml");
      await Deno.writeTextFile(path, text);
      const suite = await loadSuite(path);
      const cells = planCells(suite, {});
      const gpu = await backendUnavailable("webgpu");
      const results = await runSuite(suite, {
        runId: "t",
        cacheDir: join(dir, "cache"),
        cells,
        quiet: true,
        jobs: 1,
      });
      const decode = results.rows.filter((r) => r.metric === "decode_tokens_per_s");
      const expected: Record<string, string> = {
        "rtn f16": "f16",
        "rtn int4-g128": "int4",
        "random_e8p e8p12": "e8p12",
        "random_codebook aqlm_2x8": "aqlm_2x8",
        "random_codebook aqlm_1x16": "aqlm_1x16",
        "random_codebook vptq-v4-k256-0": "vptq-v4-k256-0",
      };
      for (const backend of ["cpu", "webgpu"]) {
        const rows = decode.filter((r) => r.backend === backend);
        if (backend === "webgpu" && gpu !== undefined) {
          console.log(`webgpu cells not run: ${gpu}`);
          continue;
        }
        assert.deepEqual(
          rows.map((r) => `${r.method} ${r.format}`).sort(),
          Object.keys(expected).sort(),
        );
        for (const row of rows) {
          assert.equal(row.status, "ok", `${row.method} ${row.format} ${backend}: ${row.detail}`);
          assert.ok(row.value! > 0);
          // Each format decodes in its own kernels (no fallback to a float copy).
          assert.doesNotMatch(row.detail ?? "", /fallback=/, row.detail ?? "");
          const bits = await expectedBits(expected[`${row.method} ${row.format}`]!);
          assert.ok(
            Math.abs(row.bits_per_weight! - bits) < 1e-9,
            `${row.format}: ${row.bits_per_weight} bits per weight, expected ${bits}`,
          );
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
