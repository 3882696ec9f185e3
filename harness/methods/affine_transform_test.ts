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
import { dot, gradError, randomValues } from "../../kernels/cpu/grad_check.ts";
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

// mini's attention layout in small: 4 query heads in 2 groups, half-split RoPE pairs (i, i + 2).
const GQA_HALF = { ...CONFIG, dim: 16, nHeads: 4, nKvHeads: 2, ropeStyle: "half" as const };
const GQA_SHAPES: LinearShapes = {
  wq: { rows: 16, cols: 16 },
  wk: { rows: 8, cols: 16 },
  wv: { rows: 8, cols: 16 },
  wo: { rows: 16, cols: 16 },
  w1: { rows: HIDDEN, cols: 16 },
  w2: { rows: 16, cols: HIDDEN },
  w3: { rows: HIDDEN, cols: 16 },
};

function tinyLayer(seed: number, shapes = SHAPES): FloatLayer {
  const dim = shapes.wq.cols;
  const layer = {
    attnNorm: randomValues(dim, seed, 0.3, 1),
    ffnNorm: randomValues(dim, seed + 1, 0.3, 1),
  } as FloatLayer;
  LINEAR_NAMES.forEach((n, i) => {
    layer[n] = randomValues(shapes[n].rows * shapes[n].cols, seed + 2 + i, 0.5);
  });
  return layer;
}

/** Transforms for `groups` key/value heads of width 4 over `dim` channels. */
function tinyParams(
  seed: number,
  qk: "identity" | "random",
  groups = 1,
  dim = 8,
): AffineParams {
  const n = groups * 16;
  const out = identityBlocks(groups, 4).map((v, i) => v + randomValues(n, seed, 0.2)[i]!);
  return {
    qkv: randomValues(dim, seed + 1, 0.4, 1),
    fc: randomValues(dim, seed + 2, 0.4, 1),
    out,
    qk: qk === "identity"
      ? identityBlocks(groups, 4)
      : identityBlocks(groups, 4).map((v, i) => v + randomValues(n, seed + 3, 0.2)[i]!),
  };
}

function output(
  layer: FloatLayer,
  x: Float64Array,
  config: typeof CONFIG | typeof GQA_HALF = CONFIG,
  shapes = SHAPES,
): Float64Array {
  const train = { attnNorm: layer.attnNorm, ffnNorm: layer.ffnNorm } as TrainLayer;
  for (const n of LINEAR_NAMES) train[n] = { ...shapes[n], w: layer[n] };
  return blockLossAndGradients(config, train, x, []).output;
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

Deno.test("affine transform: grouped heads with half-split RoPE keep the block's function and match finite differences", () => {
  // Each key/value head's matrices must reach exactly its group's query heads, and the q/k matrix
  // acts on the rows before RoPE whatever its pairing; a head routed to the wrong group's matrix
  // changes the block, and a wrong gradient shows against finite differences.
  const layer = tinyLayer(5, GQA_SHAPES);
  const x = randomValues(T * 16, 12, 1);
  const full = bandMask(4, 4, 0.5);
  const same = foldAffine(GQA_HALF, layer, tinyParams(6, "identity", 2, 16), {
    out: full,
    qk: bandMask(4, 1, 0.5),
  }).layer;
  const [a, b] = [output(layer, x, GQA_HALF, GQA_SHAPES), output(same, x, GQA_HALF, GQA_SHAPES)];
  assert.ok(a.every((v, i) => Math.abs(v - b[i]!) < 1e-10));
  const target = randomValues(T * 16, 13, 1);
  const masks = { out: bandMask(4, 3, 0.1), qk: bandMask(4, 4, 0.3) };
  const params = tinyParams(7, "random", 2, 16);
  const clips = Object.fromEntries(
    LINEAR_NAMES.map((
      n,
    ) => [
      n,
      initClipQuant(GQA_SHAPES[n].rows, GQA_SHAPES[n].cols, {
        bits: 4,
        group: 0,
        symmetric: false,
      }),
    ]),
  ) as Parameters<typeof affineStep>[3]["clips"];
  const state = { params, clips };
  const step = () =>
    affineStep(GQA_HALF, layer, GQA_SHAPES, state, masks, x, [target], undefined, false);
  const grads = step();
  for (const name of ["qkv", "fc", "out", "qk"] as const) {
    const err = gradError(() => step().loss, params[name], grads.params[name]);
    assert.ok(err.relative < 1e-5, `${name}: ${err.relative}`);
  }
  // The fold's own backward, where the block's function hides it (an exact v/o or diagonal
  // transform has no gradient without quantization): a random linear function of the folded
  // weights and norms, against finite differences, for each group's matrices.
  const shape = foldAffine(GQA_HALF, layer, params, masks).layer;
  const names = Object.keys(shape) as (keyof FloatLayer)[];
  const coef = {} as FloatLayer;
  names.forEach((k, i) => coef[k] = randomValues(shape[k].length, 20 + i, 1));
  const linear = () => {
    const f = foldAffine(GQA_HALF, layer, params, masks).layer;
    return names.reduce((s, k) => s + dot(f[k], coef[k]), 0);
  };
  const back = foldAffine(GQA_HALF, layer, params, masks).back(coef);
  for (const name of ["qkv", "fc", "out", "qk"] as const) {
    const err = gradError(linear, params[name], back[name]);
    assert.ok(err.relative < 1e-5, `${name} (fold): ${err.relative}`);
  }
  for (const name of ["out", "qk"] as const) {
    for (let g = 0; g < 2; g++) {
      assert.ok(back[name].subarray(g * 16, (g + 1) * 16).some((v) => Math.abs(v) > 1e-3));
    }
  }
});
