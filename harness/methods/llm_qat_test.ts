import assert from "node:assert/strict";
import {
  generateSequences,
  llmQat,
  LlmQatError,
  llmQatSettings,
  llmQatTrain,
  meanKl,
  qatParams,
  quantizedModel,
  teacherLogits,
} from "./llm_qat.ts";
import { rtn } from "./rtn.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { fakeQuantTokens } from "../../kernels/cpu/fake_quant.ts";
import { quantizeActivations } from "../../kernels/formats/runtime_quant.ts";
import { lossAndGradients } from "../../kernels/cpu/backward.ts";
import { cpuBackend } from "../../kernels/cpu/backend.ts";

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin");
const skipMessage = haveStories ? "" : " (skipped: ../shared/models/stories260K is absent)";

/** W4A8KV4: int4 weights per output channel, int8 activations, a KIVI int4 cache of 16-token groups. */
const W4A8KV4: FormatSpec = {
  id: "w4a8kv4",
  weights: "int4",
  group: 0,
  symmetric: true,
  options: { activations: "int8", kv_cache: { format: "int4", group: 16, residual: 16 } },
};

Deno.test("llm_qat: options are checked with the offending value", () => {
  assert.equal(llmQatSettings({}).steps, 8, "one epoch of 8 sequences by default");
  assert.equal(llmQatSettings({ samples: 10, batch: 4 }).steps, 3);
  assert.throws(() => llmQatSettings({ lr: 0 }), LlmQatError);
  assert.throws(() => llmQatSettings({ seq_len: 4 }), /seq_len must be an integer ≥ 6, got 4/);
  assert.throws(() => llmQat.checkOptions!({ batch: 1.5 }), /batch .* got 1.5/);
  assert.match(llmQat.unsupported({ ...W4A8KV4, weights: "q4_0" }) ?? "", /integer weights/);
  assert.match(
    llmQat.unsupported({ ...W4A8KV4, options: { activations: "fp8" } }) ?? "",
    /integer activations only, got "fp8"/,
  );
  assert.equal(llmQat.unsupported(W4A8KV4), undefined);
});

Deno.test("llm_qat: per-token fake quantization is the run-time activation quantizer", () => {
  const x = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 5)));
  const runtime = quantizeActivations(x, 16, "int8");
  const { y, back } = fakeQuantTokens(Float64Array.from(x), 16, 8);
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(y[i]! - runtime[i]!) < 1e-6, `${i}`);
  // Straight through inside (−2, 2), zero outside.
  const g = back(new Float64Array(64).fill(1));
  for (let i = 0; i < x.length; i++) assert.equal(g[i], Math.abs(x[i]!) < 2 ? 1 : 0);
});

Deno.test({
  name: "llm_qat: generation is deterministic for a seed" + skipMessage,
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const settings = { count: 3, length: 24, topK: 50, seed: 7 };
    const a = await generateSequences(model, settings);
    const b = await generateSequences(model, settings);
    assert.deepEqual(a, b);
    assert.equal(a.length, 3);
    for (const s of a) assert.equal(s.length, 24);
    const c = await generateSequences(model, { ...settings, seed: 8 });
    assert.notDeepEqual(a, c);
  },
});

Deno.test({
  name: "llm_qat: on stories260K the KL falls and beats RTN at W4A8KV4 on the generated data" +
    skipMessage,
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const sequences = await generateSequences(model, { count: 2, length: 48, topK: 50, seed: 0 });
    const teacher = await teacherLogits(model, sequences);
    const { params, weights } = qatParams(model, W4A8KV4);
    assert.equal(params.runtime?.kvCache?.format, "int4");
    const losses = llmQatTrain(model, params, weights, sequences, teacher, {
      steps: 12,
      batch: 2,
      lr: 2e-3,
      weightDecay: 0,
    });
    assert.ok(losses.at(-1)! < 0.8 * losses[0]!, `KL ${losses[0]} → ${losses.at(-1)}`);
    const qat = await meanKl(quantizedModel(model, params, W4A8KV4), sequences, teacher);
    const baseline = await meanKl(
      await rtn.quantize(model, W4A8KV4, {}, { seed: 0 }),
      sequences,
      teacher,
    );
    assert.ok(qat < baseline, `KL after QAT ${qat}, RTN ${baseline}`);
  },
});

Deno.test({
  name: "llm_qat: the fake-quantized forward is the stored int4 model's (f16 scales)" + skipMessage,
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const [seq] = await generateSequences(model, { count: 1, length: 16, topK: 50, seed: 3 });
    const int4: FormatSpec = {
      id: "int4",
      weights: "int4",
      group: 0,
      symmetric: true,
      options: {},
    };
    const { params } = qatParams(model, int4);
    const V = model.config.vocabSize;
    const trained = lossAndGradients(model.config, params, seq!, {
      kind: "kl",
      teacher: new Float32Array(seq!.length * V),
    }).logits;
    const runner = await cpuBackend.load(quantizedModel(model, params, int4));
    const stored = await runner.forward(seq!, 0);
    let worst = 0;
    for (let i = 0; i < stored.length; i++) {
      worst = Math.max(worst, Math.abs(stored[i]! - trained[i]!));
    }
    // float32 (the CPU backend) against float64 (the tape): a whole code step would show as ≫ 1e-3.
    assert.ok(worst < 1e-4, `largest logit difference ${worst}`);
  },
});

Deno.test({
  name:
    "llm_qat: the method exports its sequences and returns int weights with the run-time format" +
    skipMessage,
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const path = await Deno.makeTempFile({ suffix: ".json" });
    try {
      const stats: Record<string, number> = {};
      const out = await llmQat.quantize(
        model,
        W4A8KV4,
        { samples: 2, seq_len: 8, steps: 1, lr: 1e-3, export: path },
        { seed: 5, record: (s) => Object.assign(stats, s) },
      );
      const written = JSON.parse(await Deno.readTextFile(path));
      const expected = await generateSequences(model, { count: 2, length: 8, topK: 50, seed: 5 });
      assert.deepEqual(written.sequences, expected);
      assert.equal(written.seed, 5);
      for (const layer of out.weights.layers) assert.equal(layer.wq.kind, "int");
      assert.equal(out.runtime?.activations, "int8");
      assert.equal(out.runtime?.kvCache?.format, "int4");
      assert.ok(stats.quantize_peak_bytes! > 0);
    } finally {
      await Deno.remove(path);
    }
  },
});
