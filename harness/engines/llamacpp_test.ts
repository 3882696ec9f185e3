import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { loadSuite, parseSuite } from "../suite/load.ts";
import { expandCells } from "../suite/expand.ts";
import { runSuite } from "../runner/run.ts";
import { loadModel } from "../models/load.ts";
import { InProcessEngine } from "./in_process.ts";
import { LlamaCppEngine, LlamaCppError, llamaCppUnavailable } from "./llamacpp.ts";

const GGUF = "models/stories260K/gguf";
const ignore = !hasShared(GGUF) || !hasShared("data/text/wikitext2_test.raw");
const F32 = sharedPath(GGUF, "stories260K-f32.gguf");

Deno.test({
  name: "llamacpp: loads node-llama-cpp's prebuilt CPU build",
  fn: async () => assert.equal(await llamaCppUnavailable(), undefined),
});

Deno.test({
  name: "llamacpp: every engine method on llama.cpp's F32 stories260K",
  ignore,
  fn: async () => {
    const model = await loadModel({ id: "f32", path: F32 });
    const engine = await LlamaCppEngine.open(F32, model);
    const ours = await InProcessEngine.load(model, "cpu");
    try {
      const info = engine.info();
      assert.match(
        info.id,
        /^llamacpp\/node-llama-cpp@3\.21\.1\/llama\.cpp@v0\.4\.0\/cpu-prebuilt\//,
      );
      assert.match(info.id, /threads=2\/kv=f16\/fa=off$/);
      assert.equal(info.trainedSeqLen, 128);
      assert.equal(info.maxSeqLen, 4096);
      assert.equal(info.details?.kv_type, "f16");
      const text = "Once upon a time, there was a little girl named Lily.";
      // llama.cpp's tokenizer and quantbench's GGUF tokenizer agree.
      assert.deepEqual(engine.tokenize(text), ours.tokenize(text));
      assert.equal(engine.detokenize(engine.tokenize(text)), text);
      assert.deepEqual([info.bosId, info.eosId, info.addBos], [1, 2, true]);
      // Full distributions: the same model in both engines, position by position.
      const ids = [1, ...engine.tokenize(text)];
      const [a, b] = [await engine.logits(ids), await ours.logits(ids)];
      assert.equal(a.length, ids.length * info.vocabSize);
      const [lla] = await engine.loglikelihood([{ context: "Once upon", continuation: " a time" }]);
      const [llb] = await ours.loglikelihood([{ context: "Once upon", continuation: " a time" }]);
      assert.ok(Math.abs(lla!.logprob - llb!.logprob) < 1e-3, `${lla!.logprob} ${llb!.logprob}`);
      assert.equal(lla!.isGreedy, llb!.isGreedy);
      let worst = 0;
      for (let t = 0; t < ids.length; t++) {
        const row = (x: Float32Array) => x.subarray(t * info.vocabSize, (t + 1) * info.vocabSize);
        const lse = (r: Float32Array) => Math.log(r.reduce((s, v) => s + Math.exp(v), 0));
        const [ra, rb] = [row(a), row(b)];
        const [za, zb] = [lse(ra), lse(rb)];
        for (let v = 0; v < info.vocabSize; v++) {
          if (rb[v]! - zb > -20) worst = Math.max(worst, Math.abs(ra[v]! - za - (rb[v]! - zb)));
        }
      }
      // llama.cpp keeps the KV cache in f16 (quantbench in f32): about 0.01 nats at most here.
      assert.ok(worst < 0.03, `largest log-probability difference ${worst}`);
      // Greedy generation with `until`, as the in-process engine generates.
      const prompt = [1, ...engine.tokenize("Once upon a time")];
      const [g] = await engine.generateUntil([{ prompt, maxTokens: 24, until: ["."] }]);
      const [h] = await ours.generateUntil([{ prompt, maxTokens: 24, until: ["."] }]);
      assert.equal(g!.text, h!.text);
      assert.equal(g!.stopReason, "until");
      const [rolled] = await engine.loglikelihoodRolling([{ text, maxLength: 8 }]);
      assert.equal(rolled!.tokens, ids.length - 1);
      const chat = engine.chat([{ role: "user", content: "Hi" }]);
      assert.equal(chat.source, "fallback");
      assert.equal(chat.ids[0], 1);
      const timing = await engine.timeGeneration({ prompt, newTokens: 4 });
      assert.ok(timing.prefillMs > 0 && timing.decodeMs > 0);
    } finally {
      engine.dispose();
      ours.dispose();
    }
  },
});

Deno.test("llamacpp: a missing or broken GGUF fails naming the file", async () => {
  const missing = join(await Deno.makeTempDir(), "nope.gguf");
  const model = { config: { vocabSize: 512 }, tokenizer: {} } as never;
  await assert.rejects(() => LlamaCppEngine.open(missing, model), (e: Error) => {
    assert.ok(e instanceof LlamaCppError);
    assert.match(e.message, /cannot load GGUF file .*nope\.gguf/);
    return true;
  });
  const dir = await Deno.makeTempDir();
  const suitePath = join(dir, "s.yaml");
  await Deno.writeTextFile(
    suitePath,
    `name: s
models: [{ id: gone, path: ${missing} }]
backends: [llamacpp]
formats: [native]
tasks: [{ task: throughput }]
`,
  );
  await assert.rejects(() => loadSuite(suitePath), /nope\.gguf/);
});

Deno.test({
  name:
    "llamacpp: native non-GGUF models and formats with no ggml type are skipped with the reason",
  ignore: !hasShared("models/stories260K/stories260K.bin") || ignore,
  fn: async () => {
    const suite = await parseSuite(
      `name: s
models:
  - { id: bin, path: ${sharedPath("models/stories260K/stories260K.bin")} }
  - { id: gguf, path: ${F32} }
methods: [none, rtn]
formats: [native, int8]
exclude: [{ method: none, format: int8 }, { method: rtn, format: native }]
backends: [llamacpp]
tasks: [{ task: throughput, prompt_tokens: 8, generate_tokens: 2, repeats: 1 }]
`,
      join(REPO_ROOT, "s.yaml"),
    );
    const reasons = Object.fromEntries(expandCells(suite).map((c) => [c.id, c.skipReason]));
    assert.match(reasons["bin/none/native/llamacpp"]!, /llamacpp runs GGUF files; model "bin"/);
    assert.match(reasons["gguf/rtn/int8/llamacpp"]!, /format "int8" has no ggml type/);
    assert.equal(reasons["gguf/none/native/llamacpp"], undefined);
    const results = await runSuite(suite, {
      runId: "t",
      cacheDir: await Deno.makeTempDir(),
      jobs: 1,
      quiet: true,
    });
    const status = Object.fromEntries(
      results.rows.filter((r) => r.metric === "" || r.metric === "decode_tokens_per_s")
        .map((r) => [`${r.model}/${r.method}`, r.status]),
    );
    assert.deepEqual(status, {
      "bin/none": "skipped",
      "bin/rtn": "skipped",
      "gguf/rtn": "skipped",
      "gguf/none": "ok",
    });
    const ok = results.rows.find((r) => r.status === "ok")!;
    assert.match(String(ok.extra?.engine), /^llamacpp\/node-llama-cpp@3\.21\.1/);
  },
});

Deno.test("llamacpp: a kld reference naming no model of the suite is an input error", async () => {
  await assert.rejects(
    () =>
      parseSuite(
        `name: s
models: [{ id: a, path: ${F32} }]
formats: [native]
datasets: { t: { kind: text, path: ${sharedPath("data/text/tinystories_sample.txt")} } }
tasks: [{ task: kld, dataset: t, reference: { model: f16 } }]
`,
        join(REPO_ROOT, "s.yaml"),
      ),
    /unknown reference model "f16"/,
  );
});

/**
 * The acceptance: quantbench's CPU backend and llama.cpp agree on llama.cpp's stories260K files on
 * WikiText-2 at c=512 (llama-perplexity's protocol; the first 32 chunks, `--limit 32`): with
 * activations rounded as llama.cpp rounds them (`native-ggml`), PPL within 0.1 % and KLD's mean
 * within 5 % for every file. Weight-only cells (`native`, quantbench's default) differ where
 * llama.cpp rounds activations to q8_0 blocks in its quantized matmuls (q8_0 × q8_0, q4_0 × q8_0
 * dot products); their bands are the measured differences with room. README.md lists the numbers.
 */
Deno.test({
  name: "llamacpp: PPL and KLD parity with quantbench's CPU backend (WikiText-2, c=512)",
  ignore: ignore || !hasShared(GGUF, "stories260K-q4_k_m-mixed.gguf"),
  fn: async () => {
    const suite = await loadSuite(join(REPO_ROOT, "suites/llamacpp_stories260k.yaml"));
    // 32 chunks need ~60,000 characters: tokenize only the start of WikiText-2 (same chunks).
    suite.datasets.wikitext2!.maxChars = 100000;
    const results = await runSuite(suite, {
      runId: "t",
      cacheDir: await Deno.makeTempDir(),
      limit: 32,
      quiet: true,
    });
    // `native`: quantbench's float activations and KV cache; `native-ggml`: rounded as llama.cpp's
    // CPU backend rounds them (activations to the weight type's vec_dot_type, f16 KV cache).
    const value = (model: string, backend: string, metric: string, ggml = false) => {
      const row = results.rows.find((r) =>
        r.model === model && r.backend === backend && r.metric === metric &&
        r.task === (metric === "ppl" ? "perplexity" : "kld") &&
        r.format.endsWith("(native-ggml)") === ggml
      );
      assert.equal(row?.status, "ok", `${model}/${backend} ${metric}: ${row?.detail}`);
      return row!.value!;
    };
    const rel = (model: string, metric: string, ggml = false) =>
      value(model, "cpu", metric, ggml) / value(model, "llamacpp", metric) - 1;
    const quantized = ["q8_0", "q4_0", "q4_k_m"];
    if (Deno.env.get("QUANTBENCH_PARITY_PRINT")) {
      for (const m of ["f32", ...quantized]) {
        console.log(m, rel(m, "ppl"), rel(m, "ppl", true), rel(m, "kld"), rel(m, "kld", true));
      }
    }
    // PPL within 0.1 % with F32 weights (only llama.cpp's f16 KV cache differs).
    assert.ok(Math.abs(rel("f32", "ppl")) < 0.001, `f32 ppl ${rel("f32", "ppl")}`);
    assert.ok(Math.abs(rel("f32", "ppl", true)) < 0.001, `f32 ppl ggml ${rel("f32", "ppl", true)}`);
    assert.ok(Math.abs(value("f32", "llamacpp", "kld")) < 1e-5);
    for (const m of quantized) {
      // Weight-only native cells: llama.cpp's q8 activation rounding moves single chunks' PPL by
      // up to ~0.3 %, and Q8_0's KLD (~0.001, of the size of that rounding) nearly doubles.
      assert.ok(Math.abs(rel(m, "ppl")) < 0.005, `${m} ppl ${rel(m, "ppl")}`);
      // Rounded as llama.cpp rounds: PPL within 0.1 %, KLD's mean within 5 %.
      assert.ok(Math.abs(rel(m, "kld", true)) < 0.05, `${m} kld ggml ${rel(m, "kld", true)}`);
      assert.ok(Math.abs(rel(m, "ppl", true)) < 0.001, `${m} ppl ggml ${rel(m, "ppl", true)}`);
    }
    for (const m of ["q4_0", "q4_k_m"]) {
      assert.ok(Math.abs(rel(m, "kld")) < 0.05, `${m} kld ${rel(m, "kld")}`);
    }
    assert.ok(rel("q8_0", "kld") < -0.3, `q8_0 kld ${rel("q8_0", "kld")}`);
  },
});

Deno.test({
  name: "llamacpp: quantbench-quantized cells run exported to GGUF on the fly (mini, RTN int4 g32)",
  fn: async () => {
    const heldout = join(REPO_ROOT, "fixtures", "datasets", "heldout.txt");
    const suite = await parseSuite(
      `name: s
models: [{ id: mini, path: ${join(REPO_ROOT, "fixtures", "models", "mini")} }]
datasets: { heldout: { kind: text, path: ${heldout} } }
methods: [none, rtn]
formats: [f32, { weights: int4, group: 32 }]
exclude: [{ method: none, format: "!f32" }, { method: rtn, format: f32 }]
backends: [cpu, llamacpp]
tasks: [{ task: perplexity, dataset: heldout, context: 512, protocol: gptq, max_tokens: 1024 }]
`,
      join(REPO_ROOT, "s.yaml"),
    );
    assert.ok(expandCells(suite).every((c) => c.skipReason === undefined));
    const results = await runSuite(suite, {
      runId: "t",
      cacheDir: await Deno.makeTempDir(),
      jobs: 1,
      quiet: true,
    });
    const ppl = (method: string, backend: string) => {
      const row = results.rows.find((r) => r.method === method && r.backend === backend);
      assert.equal(row?.status, "ok", row?.detail);
      return row!.value!;
    };
    // F32: llama.cpp's f16 KV cache only; int4 g32 (as q4_0): its q8_0 activations too.
    assert.ok(Math.abs(ppl("none", "llamacpp") / ppl("none", "cpu") - 1) < 0.001);
    assert.ok(Math.abs(ppl("rtn", "llamacpp") / ppl("rtn", "cpu") - 1) < 0.005);
  },
});
