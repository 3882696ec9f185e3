import assert from "node:assert/strict";
import { aqlm, AqlmLinear, aqlmQuantize, type AqlmSettings, meanGram } from "./aqlm.ts";
import { decodeMatrix, gptq } from "./gptq.ts";
import { rtn } from "./rtn.ts";
import { CALIBRATION_SETS, heldOutNll } from "./testing.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { seededRandom } from "../../core/random.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import type { AqlmScheme } from "../../kernels/formats/aqlm.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { linearBitsPerWeight } from "../models/bits.ts";

function spec(weights: string, group = 0): FormatSpec {
  return { id: weights, weights, group, symmetric: true, options: {} };
}

/** A problem: weights, inputs X (`tokens × cols`) and its mean Gram matrix. */
function problem(rows: number, cols: number, tokens: number, seed: number) {
  const w = Float64Array.from(pseudoRandom(rows * cols, seed));
  // Correlated inputs: a shared component plus noise, so XXᵀ is far from diagonal.
  const base = pseudoRandom(tokens, seed + 1);
  const noise = pseudoRandom(tokens * cols, seed + 2);
  const x = Float32Array.from(
    { length: tokens * cols },
    (_, i) => base[Math.floor(i / cols)]! * (1 + (i % cols) / cols) + 0.5 * noise[i]!,
  );
  return { w, x, xtx: meanGram([x], cols) };
}

/** ‖(Ŵ − W)X‖² / (tokens · rows), straight from the inputs. */
function directLoss(
  wq: Float64Array,
  w: Float64Array,
  x: Float32Array,
  rows: number,
  cols: number,
): number {
  const tokens = x.length / cols;
  let s = 0;
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let y = 0;
      for (let c = 0; c < cols; c++) y += (wq[r * cols + c]! - w[r * cols + c]!) * x[t * cols + c]!;
      s += y * y;
    }
  }
  return s / tokens / rows;
}

function linearOf(scheme: AqlmScheme, rows: number, cols: number, seed: number) {
  const { w, x, xtx } = problem(rows, cols, 64, seed);
  const groups = Math.ceil(cols / scheme.groupSize);
  const size = 2 ** scheme.bits;
  const random = seededRandom(seed, "aqlm test");
  const codes = Int32Array.from(
    { length: rows * groups * scheme.codebooks },
    () => Math.floor(random() * size),
  );
  const codebooks = Float64Array.from(
    { length: scheme.codebooks * size * scheme.groupSize },
    () => random() - 0.5,
  );
  const scales = Float64Array.from({ length: rows }, () => 0.5 + random());
  const linear = new AqlmLinear(scheme, rows, cols, w, xtx, codes, codebooks, scales);
  const decoded = () => {
    const raw = linear.raw();
    return Float64Array.from(
      { length: rows * cols },
      (_, i) =>
        raw[Math.floor(i / cols) * linear.width + i % cols]! * scales[Math.floor(i / cols)]!,
    );
  };
  return { linear, w, x, decoded };
}

Deno.test("aqlm: the loss is ‖(Ŵ−W)X‖²/rows and its gradients match finite differences", () => {
  // 10 columns in groups of 4: the last group is padded.
  const scheme = { codebooks: 2, bits: 2, groupSize: 4 };
  const { linear, w, x, decoded } = linearOf(scheme, 3, 10, 4);
  const grads = {
    codebooks: new Float64Array(linear.codebooks.length),
    scales: new Float64Array(3),
  };
  const loss = linear.loss();
  linear.gradients(grads);
  const direct = directLoss(decoded(), w, x, 3, 10);
  assert.ok(Math.abs(loss - direct) < 1e-9 * direct, `${loss} vs ${direct}`);
  const h = 1e-6;
  for (
    const [name, params] of [["codebooks", linear.codebooks], ["scales", linear.scales]] as const
  ) {
    for (let i = 0; i < params.length; i++) {
      const v = params[i]!;
      params[i] = v + h;
      const up = linear.loss();
      params[i] = v - h;
      const down = linear.loss();
      params[i] = v;
      const numeric = (up - down) / (2 * h);
      assert.ok(
        Math.abs(numeric - grads[name][i]!) < 1e-5 * (1 + Math.abs(numeric)),
        `${name}[${i}]`,
      );
    }
  }
});

Deno.test("aqlm: gradient_precision float64 gives the exact product; float32 is within its rounding", () => {
  const scheme = { codebooks: 2, bits: 2, groupSize: 4 };
  const { linear } = linearOf(scheme, 5, 12, 4);
  const grad = () => ({
    codebooks: new Float64Array(linear.codebooks.length),
    scales: new Float64Array(5),
  });
  const [g32, g64] = [grad(), grad()];
  linear.gradients(g32);
  linear.float64Gradients = true;
  linear.gradients(g64);
  // The float64 product, written out: ∂L/∂scale_r = 2/rows · Σ_c ((Ŵ − W)XXᵀ)_rc · raw_rc.
  const { rows, width } = linear;
  const raw = linear.raw();
  const delta = raw.map((v, i) => v * linear.scales[Math.floor(i / width)]! - linear.w[i]!);
  for (let r = 0; r < rows; r++) {
    let gs = 0;
    for (let c = 0; c < width; c++) {
      let p = 0;
      for (let k = 0; k < width; k++) p += delta[r * width + k]! * linear.xtx[k * width + c]!;
      gs += p * raw[r * width + c]!;
    }
    const exact = (2 / rows) * gs;
    assert.ok(Math.abs(g64.scales[r]! - exact) <= 1e-12 * Math.abs(exact), `scale ${r}`);
    assert.ok(Math.abs(g32.scales[r]! - exact) <= 1e-5 * Math.abs(exact), `scale ${r} float32`);
  }
  assert.notDeepEqual(g32.codebooks, g64.codebooks);
  assert.throws(
    () => aqlm.checkOptions!({ gradient_precision: "float16" }),
    /gradient_precision must be "float32" or "float64", got "float16"/,
  );
});

Deno.test("aqlm: a wide enough beam finds the best codes of a group; a narrow one never loses", () => {
  // One row, one group of 3, two codebooks of 4: 16 combinations. A beam of 4 keeps every value of
  // the first codebook searched, so the second step sees all 16.
  const scheme = { codebooks: 2, bits: 2, groupSize: 3 };
  const { linear, w, x, decoded } = linearOf(scheme, 1, 3, 7);
  let best = Infinity;
  for (let a = 0; a < 4; a++) {
    for (let b = 0; b < 4; b++) {
      linear.codes.set([a, b]);
      best = Math.min(best, directLoss(decoded(), w, x, 1, 3));
    }
  }
  linear.codes.set([0, 0]);
  linear.beamSearch(4, seededRandom(0, "order"));
  assert.ok(Math.abs(directLoss(decoded(), w, x, 1, 3) - best) < 1e-12, "beam 4");
  const big = linearOf({ codebooks: 2, bits: 3, groupSize: 2 }, 6, 12, 8).linear;
  for (let round = 0; round < 3; round++) {
    const before = big.loss();
    big.beamSearch(1, seededRandom(round, "order"));
    assert.ok(big.loss() <= before + 1e-12, `round ${round}: ${big.loss()} > ${before}`);
  }
});

const SETTINGS: AqlmSettings = {
  beamSize: 1,
  lr: 1e-4,
  maxEpochs: 30,
  stepsPerEpoch: 20,
  relativeMseTolerance: 0.01,
  initMaxIter: 100,
};

Deno.test("aqlm: epochs lower the loss from k-means until the relative-MSE rule stops them", () => {
  const [rows, cols] = [16, 32];
  const { w, xtx } = problem(rows, cols, 128, 11);
  const scheme = { codebooks: 2, bits: 4, groupSize: 4 };
  const run = (settings: AqlmSettings) =>
    aqlmQuantize(w, xtx, rows, cols, scheme, settings, seededRandom(0, "aqlm"));
  const result = run(SETTINGS);
  const { losses, epochs } = result;
  assert.ok(epochs >= 1 && epochs < SETTINGS.maxEpochs, `${epochs} epochs`);
  // The rule: the last loss is within 1 % of the best before it; every earlier one improved.
  const last = losses.at(-1)!;
  assert.ok(last / Math.min(...losses.slice(0, -1)) > 0.99, `${losses}`);
  for (let e = 1; e < losses.length - 1; e++) {
    assert.ok(losses[e]! / Math.min(...losses.slice(0, e)) <= 0.99, `${losses}`);
  }
  assert.ok(last < losses[0]! * 0.8, `${losses}`);
  // No epoch: the k-means initialisation, whose loss is the first one recorded.
  const init = run({ ...SETTINGS, maxEpochs: 0 });
  assert.equal(init.epochs, 0);
  assert.equal(init.losses.length, 1);
  assert.ok(Math.abs(init.losses[0]! - losses[0]!) < 1e-12);
  // The stored matrix decodes to weights (halves) whose loss is the last one.
  const stored = new AqlmLinear(
    scheme,
    rows,
    cols,
    w,
    xtx,
    new Int32Array(0),
    new Float64Array(0),
    new Float64Array(0),
  );
  const wq = decodeMatrix(result.matrix);
  let direct = 0;
  for (let r = 0; r < rows; r++) {
    for (let a = 0; a < cols; a++) {
      for (let b = 0; b < cols; b++) {
        direct += (wq[r * cols + a]! - w[r * cols + a]!) * stored.xtx[a * cols + b]! *
          (wq[r * cols + b]! - w[r * cols + b]!);
      }
    }
  }
  assert.ok(Math.abs(direct / rows / last - 1) < 0.02, `${direct / rows} vs ${last}`);
});

Deno.test("aqlm: formats other than aqlm_<M>x<B> are named reasons", () => {
  assert.match(aqlm.unsupported(spec("int2"))!, /aqlm_<M>x<B>/);
  assert.match(aqlm.unsupported(spec("f32"))!, /aqlm_<M>x<B>/);
  assert.equal(aqlm.unsupported(spec("aqlm_2x8")), undefined);
  assert.match(aqlm.unsupported({ ...spec("aqlm_1x16"), symmetric: false })!, /zero point/);
  assert.match(aqlm.unsupported(spec("aqlm_1x4_g2", 8))!, /groups of 2/);
});

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

Deno.test({
  name: "aqlm: stories260K 1x4 in groups of 2 beats its k-means start and GPTQ int2 g32",
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const ids = model.tokenizer.encode(
      await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt")),
    ).slice(0, 1024);
    const calibration = { dataset: "shakespeare", samples: 4, seq_len: 128 };
    const ctx = { seed: 0, datasets: CALIBRATION_SETS };
    const format = spec("aqlm_1x4_g2");
    const options = {
      ...structuredClone(aqlm.options),
      calibration,
      relative_mse_tolerance: 0.01,
      steps_per_epoch: 10,
      max_epochs: 4,
    };
    const q = await aqlm.quantize(model, format, options, ctx);
    const k = await rtn.quantize(model, format, {}, ctx);
    const g = await gptq.quantize(model, spec("int2", 32), {
      ...structuredClone(gptq.options),
      calibration,
    }, ctx);
    // Codes 2 bits, a 16 × 2 codebook and a scale per row: ≈ 2.29 against int2 g32's ≈ 2.51.
    assert.ok(linearBitsPerWeight(q) < linearBitsPerWeight(g), `${linearBitsPerWeight(q)}`);
    const [nq, nk, ng] = [heldOutNll(q, ids), heldOutNll(k, ids), heldOutNll(g, ids)];
    const [aq, km, gp] = await Promise.all([nq, nk, ng]);
    assert.ok(aq < km - 0.1 && aq < gp - 0.5, `AQLM ${aq}, k-means ${km}, GPTQ int2 g32 ${gp}`);
  },
});
