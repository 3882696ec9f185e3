/**
 * The export's acceptance: a GGUF that `deno task quantize` writes from a GPTQ int4 cell of mini
 * loads in llama.cpp (the `llamacpp` engine) and scores quantbench's own perplexity within 0.5 %
 * (llama.cpp rounds each q4_0 matmul's input to q8_0 blocks; quantbench's cell does not).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../../core/shared.ts";
import { loadSuite } from "../suite/load.ts";
import { runSuite } from "./run.ts";
import { exportCell } from "./quantize_command.ts";

const HELDOUT = join(REPO_ROOT, "fixtures", "datasets", "heldout.txt");
const TASK =
  `{ task: perplexity, dataset: heldout, context: 512, protocol: gptq, max_tokens: 1024 }`;

Deno.test("quantize: mini's GPTQ int4 g32 cell as GGUF scores its perplexity in llama.cpp", async () => {
  const dir = await Deno.makeTempDir({ prefix: "quantbench-export-llamacpp-" });
  try {
    const cellSuite = join(dir, "gptq.yaml");
    await Deno.writeTextFile(
      cellSuite,
      `name: gptq_mini
seed: 0
models: [{ id: mini, path: ${join(REPO_ROOT, "fixtures", "models", "mini")} }]
datasets:
  heldout: { kind: text, path: ${HELDOUT} }
  calibration: { kind: text, path: ${HELDOUT}, skip_chars: 100000 }
methods:
  - { method: gptq, calibration: { dataset: calibration, samples: 16, seq_len: 256 } }
formats: [{ weights: int4, group: 32 }]
backends: [cpu]
tasks: [${TASK}]
`,
    );
    const own = await runSuite(await loadSuite(cellSuite), {
      runId: "t",
      cacheDir: join(dir, "cache"),
      quiet: true,
    });
    const ppl = (rows: typeof own.rows) => {
      const row = rows.find((r) => r.metric === "ppl");
      assert.equal(row?.status, "ok", row?.detail);
      return row!.value!;
    };
    const exported = await exportCell(cellSuite, "format=int4-g32", join(dir, "out"), "gguf");
    const ggufSuite = join(dir, "gguf.yaml");
    await Deno.writeTextFile(
      ggufSuite,
      `name: gguf_llamacpp
seed: 0
models: [{ id: exported, path: ${exported.path} }]
datasets:
  heldout: { kind: text, path: ${HELDOUT} }
methods: [none]
formats: [native]
backends: [llamacpp]
tasks: [${TASK}]
`,
    );
    const llama = await runSuite(await loadSuite(ggufSuite), {
      runId: "t",
      cacheDir: join(dir, "cache"),
      quiet: true,
    });
    const rel = ppl(llama.rows) / ppl(own.rows) - 1;
    if (Deno.env.get("QUANTBENCH_PARITY_PRINT")) console.log(ppl(own.rows), ppl(llama.rows), rel);
    assert.ok(Math.abs(rel) < 0.005, `llama.cpp ${ppl(llama.rows)} vs quantbench ${ppl(own.rows)}`);
    assert.ok(rel !== 0, "llama.cpp's q8_0 activations make a difference: the engines differ");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
