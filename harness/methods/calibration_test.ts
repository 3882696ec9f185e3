import assert from "node:assert/strict";
import {
  CalibrationBlock,
  CalibrationError,
  calibrationWindows,
  embed,
  MemoryMeter,
  resolveCalibration,
  runWindows,
  type WindowKernels,
} from "./calibration.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { cpuBackend } from "../../kernels/cpu/backend.ts";
import { matmul, rmsnorm, swiglu } from "../../kernels/cpu/ops.ts";
import type { LinearName } from "../../core/model.ts";
import { blockShape, blockSteps } from "../../core/graph.ts";
import type { BlockValues } from "../../kernels/cpu/block_interpreter.ts";
import type { DatasetSpec } from "../../core/suite_types.ts";

const STORIES = "models/stories260K";
const ignore = !hasShared(STORIES, "stories260K.bin") ||
  !hasShared("data/text/tinyshakespeare.txt");
const shakespeare: DatasetSpec = {
  id: "shakespeare",
  kind: "text",
  path: sharedPath("data/text/tinyshakespeare.txt"),
  maxChars: 100000,
};

Deno.test({
  name: "calibration: blocks, whole or run in ranges, give exactly the CPU runner's logits",
  ignore,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const ids = model.tokenizer.encode("Once upon a time, there was a little dog named Max.");
    const block = new CalibrationBlock(model.config);
    let [x] = embed(model, [ids]);
    for (const [l, layer] of model.weights.layers.entries()) {
      if (l % 2 === 0) x = block.forward(layer, x!);
      else {
        // Resumed step by step from the values the earlier steps left.
        const steps = blockSteps(blockShape(layer));
        const values: BlockValues = new Map([["x", x!]]);
        for (let i = 0; i < steps.length; i++) {
          block.run(steps, layer, values, ids.length, { from: i, to: i + 1 });
        }
        x = values.get("out");
      }
    }
    const normed = new Float32Array(x!.length);
    rmsnorm(normed, x!, model.weights.finalNorm, model.config.normEps);
    const logits = new Float32Array(ids.length * model.config.vocabSize);
    matmul(logits, normed, model.weights.output);
    const runner = await cpuBackend.load(model);
    assert.deepEqual(logits, await runner.forward(ids, 0));
  },
});

Deno.test({
  name: "calibration: seeded windows of the token stream, repeatable, and the errors",
  ignore,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const datasets = { shakespeare, j: { ...shakespeare, id: "j", kind: "jsonl" as const } };
    const calibration = resolveCalibration(
      "gptq",
      { dataset: "shakespeare", samples: 4, seq_len: 4096 },
      { seed: 0, datasets },
      512,
    );
    assert.equal(calibration.seqLen, 512, "capped at the model's context");
    const a = await calibrationWindows(model, calibration, 0);
    const b = await calibrationWindows(model, calibration, 0);
    const c = await calibrationWindows(model, calibration, 1);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const text = (await Deno.readTextFile(shakespeare.path)).slice(0, shakespeare.maxChars);
    const stream = model.tokenizer.encode(text).join(",");
    for (const w of a) {
      assert.equal(w.length, 512);
      assert.ok(stream.includes(w.join(",")));
    }
    const ctx = { seed: 0, datasets };
    const bad = (option: unknown, re: RegExp) =>
      assert.throws(
        () => resolveCalibration("awq", option, ctx, 512),
        (e) => e instanceof CalibrationError && re.test(e.message),
      );
    bad({ dataset: "", samples: 1, seq_len: 8 }, /needs calibration data/);
    bad({ dataset: "wiki", samples: 1, seq_len: 8 }, /"wiki" is not defined/);
    bad({ dataset: "j", samples: 1, seq_len: 8 }, /jsonl; use a text one/);
    bad({ dataset: "shakespeare", samples: 0, seq_len: 8 }, /samples ≥ 1/);
    const tiny = resolveCalibration("gptq", { dataset: "shakespeare", samples: 1, seq_len: 8 }, {
      seed: 0,
      datasets: { shakespeare: { ...shakespeare, maxChars: 5 } },
    }, 512);
    await assert.rejects(() => calibrationWindows(model, tiny, 0), /windows of 8 need more/);
  },
});

Deno.test("calibration: the memory meter counts the most bytes held at once", () => {
  const meter = new MemoryMeter();
  const held = meter.hold(new Float32Array(10), [new Uint8Array(3), new Float64Array(2)]);
  assert.equal(held, 40 + 3 + 16);
  meter.release(held);
  meter.hold(new Float32Array(5));
  assert.equal(meter.peak, 59);
});

Deno.test({
  name: "calibration: windows run step by step on window kernels give window-by-window values",
  ignore,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const text = "Once upon a time, there was a little dog named Max. He liked to run.";
    const windows = [model.tokenizer.encode(text), model.tokenizer.encode(text.slice(20))];
    const block = new CalibrationBlock(model.config);
    const tokens = windows.map((w) => w.length);
    const layer = model.weights.layers[0]!;
    const steps = blockSteps(blockShape(layer));
    // Without and with the fused gate, up and SwiGLU.
    for (const fuse of [false, true]) {
      const calls: string[] = [];
      const linear = (xs: Float32Array[], name: LinearName) =>
        xs.map((x, i) => block.kernels(tokens[i]!).linear(x, name, layer));
      // The CPU's own kernels behind the batched interface: the driver alone is under test.
      const cpu: WindowKernels = {
        linear(xs, name) {
          calls.push(name);
          return Promise.resolve(linear(xs, name));
        },
        attention(qs, ks, vs) {
          calls.push("attention");
          return Promise.resolve(
            qs.map((q, i) => block.kernels(tokens[i]!).attention(q, ks[i]!, vs[i]!)),
          );
        },
        cpuStep(op, seconds) {
          assert.ok(seconds >= 0);
          calls.push(`cpu:${op}`);
        },
        ...(fuse
          ? {
            gated(xs: Float32Array[], gate: LinearName, up: LinearName) {
              calls.push(`${gate}+${up}`);
              const [gs, us] = [linear(xs, gate), linear(xs, up)];
              gs.forEach((g, i) => swiglu(g, us[i]!));
              return Promise.resolve(gs);
            },
          }
          : {}),
      };
      const hidden = embed(model, windows);
      const values: BlockValues[] = hidden.map((x) => new Map([["x", x]]));
      // In two ranges, as the sequential driver resumes between groups.
      await runWindows(block, cpu, steps, layer, values, tokens, { from: 0, to: 5 });
      await runWindows(block, cpu, steps, layer, values, tokens, { from: 5, to: steps.length });
      hidden.forEach((x, i) => assert.deepEqual(values[i]!.get("out"), block.forward(layer, x)));
      const kernelCalls = calls.filter((c) => !c.startsWith("cpu:"));
      const mlp = fuse ? ["w1+w3"] : ["w1", "w3"];
      assert.deepEqual(kernelCalls, ["wq", "wk", "wv", "attention", "wo", ...mlp, "w2"]);
      // Every other step is timed on the CPU, once per step.
      const cpuSteps = steps.filter((s) =>
        s.op !== "linear" && s.op !== "attention" && !(fuse && s.op === "swiglu")
      );
      assert.deepEqual(
        calls.filter((c) => c.startsWith("cpu:")),
        cpuSteps.map((s) => `cpu:${s.op}`),
      );
    }
  },
});
