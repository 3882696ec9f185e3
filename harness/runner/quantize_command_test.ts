import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../../core/shared.ts";
import { loadModelPath } from "../models/load.ts";
import { NoGgufTypeError } from "../models/writers/gguf_map.ts";
import { exportCell, QuantizeUsageError, runQuantize } from "./quantize_command.ts";

const SUITE = `name: export_test
seed: 0
models:
  - { id: mini, path: ${join(REPO_ROOT, "fixtures", "models", "mini")} }
methods: [rtn]
formats:
  - { weights: int4, group: 32 }
  - { weights: int4, group: 128, range: restricted }
  - { id: w4a8, weights: int4, group: 32, activations: int8 }
backends: [cpu]
tasks: [{ task: perplexity, dataset: ${join(REPO_ROOT, "fixtures", "datasets", "heldout.txt")} }]
`;

async function withSuite(fn: (suite: string, out: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "quantbench-quantize-" });
  try {
    await Deno.writeTextFile(join(dir, "suite.yaml"), SUITE);
    await fn(join(dir, "suite.yaml"), join(dir, "out"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs the command with console.error captured. */
async function quantize(args: string[]): Promise<{ code: number; stderr: string }> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...xs: unknown[]) => lines.push(xs.join(" "));
  try {
    return { code: await runQuantize(args), stderr: lines.join("\n") };
  } finally {
    console.error = original;
  }
}

Deno.test("quantize: bad inputs exit 2 with a message naming the problem, writing nothing", async () => {
  await withSuite(async (suite, out) => {
    const cases: [string[], RegExp][] = [
      [[suite, "--filter", "format=int4-g32", "--out", out, "--as", "onnx"], /Unknown --as "onnx"/],
      [[suite, "--filter", "format=int9", "--out", out], /matches no cell/],
      [[suite, "--filter", "method=rtn", "--out", out], /matches 3 quantizations/],
      [[suite, "--out", out], /needs --filter CELL and --out DIR/],
      [
        [suite, "--filter", "format=int4-g128-restricted", "--out", out],
        /format "int4-g128-restricted" has no GGUF type: int4 group 128 symmetric.*→ q4_0/s,
      ],
      [[suite, "--filter", "format=int4-g32", "--out", out, "--as", "awq", "--bits", "3"], /bits/],
      [
        [suite, "--filter", "format=w4a8", "--out", out, "--as", "compressed-tensors"],
        /Format "w4a8": .*holds weights only/,
      ],
    ];
    for (const [args, message] of cases) {
      const { code, stderr } = await quantize(args);
      assert.equal(code, 2, args.join(" "));
      assert.match(stderr, message);
    }
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound);
  });
});

Deno.test("quantize: formats with run-time quantization have no GGUF type, before quantizing", async () => {
  await withSuite(async (suite, out) => {
    await assert.rejects(
      () => exportCell(suite, "format=w4a8", out, "gguf"),
      (e: Error) => e instanceof NoGgufTypeError && /activations/.test(e.message),
    );
    await assert.rejects(() => exportCell(suite, "model=none", out, "gguf"), QuantizeUsageError);
  });
});

Deno.test("quantize: an RTN int4 g32 cell of mini as GGUF (q4_0) and as a GPTQ folder", async () => {
  await withSuite(async (suite, out) => {
    const gguf = await exportCell(suite, "format=int4-g32", out, "gguf");
    assert.equal(gguf.path, join(out, "mini-rtn-int4-g32.gguf"));
    const back = await loadModelPath(gguf.path);
    const wq = back.weights.layers[0]!.wq;
    assert.equal(wq.kind === "coded" && wq.codec, "q4_0");
    const { code } = await quantize([
      suite,
      "--filter",
      "format=int4-g32",
      "--out",
      out,
      "--as",
      "gptq",
    ]);
    assert.equal(code, 0);
    const config = JSON.parse(
      await Deno.readTextFile(join(out, "mini-rtn-int4-g32-gptq", "config.json")),
    );
    assert.deepEqual(
      [config.quantization_config.bits, config.quantization_config.group_size],
      [4, 32],
    );
  });
});
