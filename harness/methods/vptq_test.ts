import assert from "node:assert/strict";
import { vptq, VptqOptionsError, vptqQuantize, type VptqSettings } from "./vptq.ts";
import { gptq } from "./gptq.ts";
import { rtn } from "./rtn.ts";
import { CALIBRATION_SETS, heldOutNll } from "./testing.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import type { CodedMatrix } from "../../core/coded.ts";
import { seededRandom } from "../../core/random.ts";
import { nearestCentroid } from "../../kernels/formats/kmeans.ts";
import { halves, parseVptqName, roundHalf } from "../../kernels/formats/vptq.ts";
import { matrixBits } from "../../kernels/formats/matrix.ts";
import { columnVectors } from "../../kernels/formats/vptq_format.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { linearBitsPerWeight } from "../models/bits.ts";

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {}, ...extra };
}

const SETTINGS: VptqSettings = {
  damp: 0.01,
  blockSize: 128,
  kiter: 100,
  ktol: 1e-5,
  hessianWeights: true,
  npercent: 0,
  perm: false,
  norm: false,
};

function random(n: number, seed: number): Float64Array {
  let s = seed;
  return Float64Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

/** A Hessian 2/N · XᵀX of `n` random correlated inputs of `cols`. */
function hessianOf(cols: number, n: number, seed: number): Float64Array {
  const x = random(n * cols, seed);
  for (let t = 0; t < n; t++) {
    for (let c = 1; c < cols; c++) x[t * cols + c]! += 0.8 * x[t * cols + c - 1]!;
  }
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < cols; i++) {
      for (let j = 0; j < cols; j++) {
        h[i * cols + j]! += 2 / n * x[t * cols + i]! * x[t * cols + j]!;
      }
    }
  }
  return h;
}

/** tr((W − Q) H (W − Q)ᵀ): the output error over the inputs H summarises. */
function proxyLoss(w: Float64Array, q: Float64Array, h: Float64Array, rows: number, cols: number) {
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < cols; i++) {
      for (let j = 0; j < cols; j++) {
        loss += (w[r * cols + i]! - q[r * cols + i]!) * h[i * cols + j]! *
          (w[r * cols + j]! - q[r * cols + j]!);
      }
    }
  }
  return loss;
}

Deno.test("vptq: with an uncorrelated Hessian every vector takes its nearest centroid", () => {
  const [rows, cols] = [6, 40];
  const w = random(rows * cols, 3);
  const h = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) h[i * cols + i] = 1 + (i % 5);
  const config = parseVptqName("vptq-v2-k16-0");
  const { matrix, q } = vptqQuantize(w, h, rows, cols, config, SETTINGS, seededRandom(0, "t"));
  const centroids = Float64Array.from(halves((matrix as CodedMatrix).sides!.centroids!));
  const vectors = columnVectors(w, rows, cols, 2);
  const coded = columnVectors(q, rows, cols, 2);
  for (let i = 0; i < vectors.length / 2; i++) {
    const c = nearestCentroid(vectors, i * 2, centroids, 16, 2);
    assert.deepEqual([...coded.subarray(i * 2, i * 2 + 2)], [
      ...centroids.subarray(c * 2, c * 2 + 2),
    ]);
  }
});

Deno.test("vptq: column feedback and the residual codebook lower the Hessian-weighted error", () => {
  const [rows, cols] = [16, 48];
  const w = random(rows * cols, 7);
  const h = hessianOf(cols, 200, 11);
  const run = (name: string, settings: Partial<VptqSettings> = {}) =>
    vptqQuantize(
      w,
      h,
      rows,
      cols,
      parseVptqName(name),
      { ...SETTINGS, ...settings },
      seededRandom(0, "t"),
    );
  const plain = run("vptq-v2-k16-0");
  // Without feedback: the same codebook, every original vector coded by its nearest centroid.
  const centroids = Float64Array.from(halves((plain.matrix as CodedMatrix).sides!.centroids!));
  const vectors = columnVectors(w, rows, cols, 2);
  const nearest = new Float64Array(rows * cols);
  for (let c = 0; c < cols; c++) {
    for (let g = 0; g < rows / 2; g++) {
      const k = nearestCentroid(vectors, (c * rows / 2 + g) * 2, centroids, 16, 2);
      for (let j = 0; j < 2; j++) nearest[(g * 2 + j) * cols + c] = centroids[k * 2 + j]!;
    }
  }
  const loss = (q: Float64Array) => proxyLoss(w, q, h, rows, cols);
  assert.ok(loss(plain.q) < 0.8 * loss(nearest), `${loss(plain.q)} vs ${loss(nearest)}`);
  const residual = run("vptq-v2-k16-16");
  assert.ok(loss(residual.q) < 0.5 * loss(plain.q), `${loss(residual.q)} vs ${loss(plain.q)}`);
  assert.equal(matrixBits(residual.matrix), matrixBits(plain.matrix) + (16 * 2 * 16 + 384 * 4));
  // Outliers, permutation and norm: the first stored columns (largest H_ii) kept in half.
  const all = run("vptq-v2-k16-0", { npercent: 10, perm: true, norm: true });
  const sides = (all.matrix as CodedMatrix).sides!;
  const perm = [...sides.perm!];
  const order = Array.from({ length: cols }, (_, i) => i)
    .sort((a, b) => h[b * cols + b]! - h[a * cols + a]! || a - b);
  assert.deepEqual(perm, order);
  assert.equal(sides.outliers!.length, rows * 5);
  for (let r = 0; r < rows; r++) {
    const c = perm[0]!;
    const s = halves(sides.norm_scale!)[0]!;
    const b = halves(sides.norm_bias!)[0]!;
    const stored = halves(sides.outliers!)[r * 5]!;
    assert.equal(stored, roundHalf((w[r * cols + c]! - b) / s));
    assert.equal(all.q[r * cols + c], Math.fround(stored * s + b));
  }
  // Codes, codebook, 5 × 16 outlier halves, 48 permutation entries, 48 + 48 norm halves.
  const codes = (48 - 5) * 8 * 4 + 16 * 2 * 16;
  assert.equal(matrixBits(all.matrix), Math.ceil(codes / 8) * 8 + (80 + 48 * 3) * 16);
  assert.match(vptq.unsupported(spec("int2")) ?? "", /vptq-v<v>-k<k>-<r> formats/);
  assert.match(vptq.unsupported(spec("vptq-v2-k16-0", { group: 32 })) ?? "", /codebook/);
});

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

Deno.test({
  name: "vptq: stories260K at 2 bits beats GPTQ and RTN int2 g32 and plain k-means",
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const ids = model.tokenizer.encode(
      await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt")),
    );
    const calibration = { dataset: "shakespeare", samples: 8, seq_len: 256 };
    const ctx = { seed: 0, datasets: CALIBRATION_SETS };
    const format = spec("vptq-v2-k16-0");
    const v = await vptq.quantize(model, format, { calibration, kiter: 20 }, ctx);
    const int2 = spec("int2", { group: 32 });
    const g = await gptq.quantize(model, int2, { calibration }, ctx);
    const r = await rtn.quantize(model, int2, {}, ctx);
    const k = await rtn.quantize(model, format, {}, ctx);
    assert.ok(linearBitsPerWeight(v) < linearBitsPerWeight(g));
    const lv = await heldOutNll(v, ids);
    const lg = await heldOutNll(g, ids);
    const lr = await heldOutNll(r, ids);
    const lk = await heldOutNll(k, ids);
    assert.ok(
      lv < lg - 0.3 && lv < lr && lv < lk - 0.3,
      `VPTQ ${lv}, GPTQ ${lg}, RTN ${lr}, VQ ${lk}`,
    );
    await assert.rejects(
      () => vptq.quantize(model, format, { kiter: 0, calibration }, ctx),
      VptqOptionsError,
    );
  },
});
