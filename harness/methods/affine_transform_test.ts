import assert from "node:assert/strict";
import {
  type AffineParams,
  bandMask,
  type FloatLayer,
  foldAffine,
  identityBlocks,
  invert,
  maskBand,
  truncateSmall,
} from "./affine_transform.ts";
import { affineStep, type LinearShapes } from "./affinequant.ts";
import { gradError, randomValues } from "../../kernels/cpu/grad_check.ts";
import { blockLossAndGradients, type TrainLayer } from "../../kernels/cpu/backward.ts";
import { LINEAR_NAMES } from "../../core/model.ts";
import { initClipQuant } from "../../kernels/cpu/clip_quant.ts";

// A tiny grouped-query block: 2 query heads share 1 key/value head of width 4.
const CONFIG = {
  dim: 8,
  nHeads: 2,
  nKvHeads: 1,
  headDim: 4,
  vocabSize: 3,
  normEps: 1e-5,
  ropeTheta: 10,
  ropeStyle: "interleaved" as const,
};
const HIDDEN = 12;
const T = 5;
const SHAPES: LinearShapes = {
  wq: { rows: 8, cols: 8 },
  wk: { rows: 4, cols: 8 },
  wv: { rows: 4, cols: 8 },
  wo: { rows: 8, cols: 8 },
  w1: { rows: HIDDEN, cols: 8 },
  w2: { rows: 8, cols: HIDDEN },
  w3: { rows: HIDDEN, cols: 8 },
};

function tinyLayer(seed: number): FloatLayer {
  const layer = {
    attnNorm: randomValues(8, seed, 0.3, 1),
    ffnNorm: randomValues(8, seed + 1, 0.3, 1),
  } as FloatLayer;
  LINEAR_NAMES.forEach((n, i) => {
    layer[n] = randomValues(SHAPES[n].rows * SHAPES[n].cols, seed + 2 + i, 0.5);
  });
  return layer;
}

function tinyParams(seed: number, qk: "identity" | "random"): AffineParams {
  const out = identityBlocks(1, 4).map((v, i) => v + randomValues(16, seed, 0.2)[i]!);
  return {
    qkv: randomValues(8, seed + 1, 0.4, 1),
    fc: randomValues(8, seed + 2, 0.4, 1),
    out,
    qk: qk === "identity"
      ? identityBlocks(1, 4)
      : identityBlocks(1, 4).map((v, i) => v + randomValues(16, seed + 3, 0.2)[i]!),
  };
}

function output(layer: FloatLayer, x: Float64Array): Float64Array {
  const train = { attnNorm: layer.attnNorm, ffnNorm: layer.ffnNorm } as TrainLayer;
  for (const n of LINEAR_NAMES) train[n] = { ...SHAPES[n], w: layer[n] };
  return blockLossAndGradients(CONFIG, train, x, []).output;
}

Deno.test("affine transform: the gradual mask and its band (hand-computed)", () => {
  assert.deepEqual([...bandMask(3, 2, 0.1)], [1, 0.1, 0, 0.1, 1, 0.1, 0, 0.1, 1]);
  assert.deepEqual([...bandMask(2, 1, 0.1)], [1, 0, 0, 1]);
  // headDim 128 over 20 epochs: int(127 / 19 · e) + 1.
  assert.deepEqual([0, 1, 10, 19].map((e) => maskBand(128, e, 20)), [1, 7, 67, 128]);
  assert.equal(maskBand(8, 0, 1), 8);
  const p = Float64Array.from([0, 5e-3, -1e-3, 0.5]);
  truncateSmall(p);
  assert.deepEqual([...p], [0, 1e-2, -1e-2, 0.5]);
});

Deno.test("affine transform: inverse", () => {
  const m = Float64Array.from([0, 2, 1, 1, 1, 0, 3, 0, 1]);
  const inv = invert(m, 3);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 3; k++) s += m[i * 3 + k]! * inv[k * 3 + j]!;
      assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-12);
    }
  }
  assert.throws(() => invert(Float64Array.from([1, 2, 2, 4]), 2), /singular/);
});

Deno.test("affine transform: folded norm, v/o and diagonal transforms keep the block's function", () => {
  const layer = tinyLayer(1);
  const x = randomValues(T * 8, 9, 1);
  const masks = { out: bandMask(4, 4, 0.5), qk: bandMask(4, 1, 0.5) };
  const folded = foldAffine(CONFIG, layer, tinyParams(2, "identity"), masks).layer;
  const [a, b] = [output(layer, x), output(folded, x)];
  assert.ok(a.every((v, i) => Math.abs(v - b[i]!) < 1e-10));
  // q/k before RoPE: a non-identity B changes the block (the loss sees it).
  const rotated = foldAffine(CONFIG, layer, tinyParams(2, "random"), {
    out: masks.out,
    qk: bandMask(4, 4, 0.5),
  }).layer;
  assert.ok(output(rotated, x).some((v, i) => Math.abs(v - a[i]!) > 1e-6));
});

Deno.test("affine transform: gradients of every transform match finite differences", () => {
  const layer = tinyLayer(3);
  const x = randomValues(T * 8, 10, 1);
  const target = randomValues(T * 8, 11, 1);
  const masks = { out: bandMask(4, 3, 0.1), qk: bandMask(4, 2, 0.3) };
  const params = tinyParams(4, "random");
  const clips = Object.fromEntries(
    LINEAR_NAMES.map((
      n,
    ) => [
      n,
      initClipQuant(SHAPES[n].rows, SHAPES[n].cols, { bits: 4, group: 0, symmetric: false }),
    ]),
  ) as Parameters<typeof affineStep>[3]["clips"];
  const state = { params, clips };
  const loss = () =>
    affineStep(CONFIG, layer, SHAPES, state, masks, x, [target], undefined, false).loss;
  const grads = affineStep(CONFIG, layer, SHAPES, state, masks, x, [target], undefined, false);
  for (const name of ["qkv", "fc", "out", "qk"] as const) {
    const err = gradError(loss, params[name], grads.params[name]);
    assert.ok(err.relative < 1e-5, `${name}: ${err.relative}`);
  }
  // Entries outside the mask get no gradient.
  assert.ok(grads.params.out[3] === 0);
});
