import assert from "node:assert/strict";
import { decodeMatrix, gptq, gptqQuantize } from "./gptq.ts";
import { GptqOptionsError, type GptqSettings } from "./gptq_loop.ts";
import { groupGrid } from "./grid.ts";
import { rtn } from "./rtn.ts";
import { dense } from "../../core/model.ts";
import { CALIBRATION_SETS, heldOutNll } from "./testing.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { groupParams, roundHalfEven } from "../../kernels/formats/int.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { linearBitsPerWeight } from "../models/bits.ts";

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {}, ...extra };
}

const SETTINGS: GptqSettings = { damp: 0, blockSize: 128, actOrder: false, staticGroups: false };

function random(n: number, seed: number): Float64Array {
  let s = seed;
  return Float64Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

Deno.test("gptq: two columns follow the optimal-brain-surgeon update (hand-derived)", () => {
  // H = [[2, 1], [1, 2]]: H⁻¹ = [[2, −1], [−1, 2]] / 3, so after rounding column 0 the optimal
  // compensation is w1 ← w1 − (w0 − q0) · H⁻¹₀₁ / H⁻¹₀₀ = w1 + (w0 − q0) / 2.
  const w = Float64Array.from([-0.7, 0.32]);
  const h = Float64Array.from([2, 1, 1, 2]);
  const format = spec("int4");
  const { q } = gptqQuantize(w, h, 1, 2, groupGrid(format, 1, 2), SETTINGS);
  const { scale, zero } = groupParams(Float32Array.from(w), 0, 2, 4, true);
  const rq = (x: number) =>
    scale * (Math.min(15, Math.max(0, roundHalfEven(x / scale) + zero)) - zero);
  const q0 = rq(-0.7);
  assert.equal(q[0], q0);
  assert.equal(q[1], rq(0.32 + (-0.7 - q0) / 2));
  assert.notEqual(q[1], rq(0.32), "the example must exercise the update");
});

Deno.test("gptq: a diagonal Hessian leaves nothing to compensate — the result is RTN", () => {
  const [rows, cols] = [8, 48];
  const w = random(rows * cols, 1);
  for (
    const format of [spec("int3"), spec("int4", { group: 16, symmetric: false }), spec("nvfp4")]
  ) {
    const h = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++) h[i * cols + i] = 1 + i;
    const { matrix } = gptqQuantize(w, h, rows, cols, groupGrid(format, rows, cols), {
      ...SETTINGS,
      damp: 0.01,
      blockSize: 16,
    });
    const element = elementFormats.get(format.weights);
    if (element.kind === "float") throw new Error("unreachable");
    const expected = decodeMatrix(
      element.quantize(format, dense(rows, cols, Float32Array.from(w))),
    );
    assert.deepEqual(decodeMatrix(matrix), expected, format.id);
  }
});

function identity(n: number): Float64Array {
  return Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));
}

Deno.test("gptq: dead inputs are zeroed; act_order with free groups is refused", () => {
  const w = random(4, 2);
  const h = Float64Array.from([1, 0, 0, 0]); // column 1 never sees input
  const { q } = gptqQuantize(w, h, 2, 2, groupGrid(spec("int8"), 2, 2), {
    ...SETTINGS,
    damp: 0.01,
  });
  assert.equal(q[1], 0);
  assert.equal(q[3], 0);
  assert.throws(
    () =>
      gptqQuantize(w, identity(16), 1, 16, groupGrid(spec("int4", { group: 8 }), 1, 16), {
        ...SETTINGS,
        actOrder: true,
      }),
    GptqOptionsError,
  );
});

Deno.test("gptq: lower layer-output error than RTN on correlated inputs, in every mode", () => {
  const [rows, cols, tokens] = [16, 64, 512];
  const w = random(rows * cols, 7);
  // Inputs with correlated, unequal channels: x = z·M with a random mixing M.
  const z = random(tokens * cols, 3);
  const mix = random(cols * cols, 5);
  const x = new Float64Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let k = 0; k < cols; k++) s += z[t * cols + k]! * mix[k * cols + j]! * (1 + (k % 5));
      x[t * cols + j] = s;
    }
  }
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < cols; i++) {
      for (let j = 0; j < cols; j++) {
        h[i * cols + j]! += (2 / tokens) * x[t * cols + i]! * x[t * cols + j]!;
      }
    }
  }
  const outputError = (q: Float64Array) => {
    let e = 0;
    for (let t = 0; t < tokens; t++) {
      for (let r = 0; r < rows; r++) {
        let d = 0;
        for (let c = 0; c < cols; c++) {
          d += x[t * cols + c]! * (w[r * cols + c]! - q[r * cols + c]!);
        }
        e += d * d;
      }
    }
    return e;
  };
  const modes: [FormatSpec, Partial<GptqSettings>][] = [
    [spec("int3"), {}],
    [spec("int3"), { actOrder: true }],
    [spec("int4", { group: 16, symmetric: false }), {}],
    [spec("int4", { group: 16 }), { actOrder: true, staticGroups: true }],
    [spec("int2", { group: 32 }), { blockSize: 8 }],
    [spec("fp4", { group: 16 }), {}],
    [spec("mxfp4"), {}],
    [spec("nvfp4"), {}],
  ];
  for (const [format, extra] of modes) {
    const settings = { ...SETTINGS, damp: 0.01, ...extra };
    const { q } = gptqQuantize(w, h.slice(), rows, cols, groupGrid(format, rows, cols), settings);
    const element = elementFormats.get(format.weights);
    if (element.kind === "float") throw new Error("unreachable");
    const r = decodeMatrix(element.quantize(format, dense(rows, cols, Float32Array.from(w))));
    const [eg, er] = [outputError(q), outputError(r)];
    assert.ok(eg < 0.8 * er, `${format.id} ${JSON.stringify(extra)}: GPTQ ${eg} vs RTN ${er}`);
  }
});

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

Deno.test({
  name: "gptq: stories260K int3 calibrated on tinyshakespeare beats RTN on TinyStories",
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const ids = model.tokenizer.encode(
      await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt")),
    );
    const format = spec("int3");
    const stats: Record<string, number> = {};
    const options = {
      ...structuredClone(gptq.options),
      calibration: { dataset: "shakespeare", samples: 8, seq_len: 256 },
    };
    const q = await gptq.quantize(model, format, options, {
      seed: 0,
      datasets: CALIBRATION_SETS,
      record: (s) => Object.assign(stats, s),
    });
    const r = await rtn.quantize(model, format, structuredClone(rtn.options), { seed: 0 });
    assert.equal(linearBitsPerWeight(q), linearBitsPerWeight(r));
    const [ng, nr] = [await heldOutNll(q, ids), await heldOutNll(r, ids)];
    assert.ok(ng < nr - 0.05, `GPTQ ${ng} vs RTN ${nr}`);
    assert.ok(stats.quantize_peak_bytes! > 8 * 256 * 64 * 4, JSON.stringify(stats));
    await assert.rejects(
      () => gptq.quantize(model, format, structuredClone(gptq.options), { seed: 0 }),
      /needs calibration data/,
    );
  },
});
