import assert from "node:assert/strict";
import { maxInto, smoothingScales, smoothquant } from "./smoothquant.ts";
import { rtn } from "./rtn.ts";
import { dense } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { cpuBackend } from "../../kernels/cpu/backend.ts";
import { CALIBRATION_SETS, heldOutNll } from "./testing.ts";

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {}, ...extra };
}

Deno.test("smoothquant: smoothing factors (hand-computed)", () => {
  const max = new Float32Array(2);
  maxInto(max, Float32Array.from([1, -4, -3, 2]));
  assert.deepEqual([...max], [3, 4]);
  // act [4, 1], column maxima over both linears [1, 0.25]; α = 1/2: [2/1, 1/0.5] = [2, 2].
  const a = dense(1, 2, Float32Array.from([1, -0.1]));
  const b = dense(2, 2, Float32Array.from([0.5, 0.25, -0.2, 0]));
  assert.deepEqual([...smoothingScales(Float32Array.from([4, 1]), [a, b], 0.5)], [2, 2]);
  // α = 0.75: 4^0.75 / 1^0.25 and 1 / 0.25^0.25; a zero column is clamped at 1e-5.
  assert.deepEqual([...smoothingScales(Float32Array.from([4, 1]), [a, b], 0.75)], [
    Math.fround(Math.pow(4, 0.75)),
    Math.fround(1 / Math.pow(0.25, 0.25)),
  ]);
  const zero = dense(1, 1, Float32Array.from([0]));
  assert.deepEqual([...smoothingScales(Float32Array.from([1]), [zero], 0.5)], [
    Math.fround(1 / Math.sqrt(1e-5)),
  ]);
});

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

Deno.test({
  name: "smoothquant: smoothing keeps the float function; W8A8 stays within 1 % of float",
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const ids = model.tokenizer.encode(
      await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt")),
    );
    const options = {
      ...structuredClone(smoothquant.options),
      calibration: { dataset: "shakespeare", samples: 4, seq_len: 256 },
    };
    const ctx = { seed: 0, datasets: CALIBRATION_SETS };
    const logits = async (m: typeof model) => {
      const runner = await cpuBackend.load(m);
      return await runner.forward(ids.slice(0, 64), 0);
    };
    const base = await logits(model);
    const diff = async (m: typeof model) =>
      (await logits(m)).reduce((d, v, i) => Math.max(d, Math.abs(v - base[i]!)), 0);
    const smoothed = await diff(await smoothquant.quantize(model, spec("f16"), options, ctx));
    const rounded = await diff(
      await rtn.quantize(model, spec("f16"), structuredClone(rtn.options), ctx),
    );
    assert.ok(smoothed < 3 * rounded + 1e-3, `smoothed f16 ${smoothed} vs f16 ${rounded}`);
    const w8a8 = spec("int8", { options: { activations: "int8" } });
    const q = await smoothquant.quantize(model, w8a8, options, ctx);
    assert.deepEqual(q.runtime, { activations: "int8" });
    const [nq, nf] = [await heldOutNll(q, ids), await heldOutNll(model, ids)];
    assert.ok(Math.abs(Math.exp(nq - nf) - 1) < 0.01, `W8A8 ${nq} vs float ${nf}`);
  },
});
