import assert from "node:assert/strict";
import { seededRandom } from "../../core/random.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import { aqlmInit, fitKmeans } from "./aqlm_kmeans.ts";

Deno.test("aqlm k-means: separated clusters are found; each point gets its nearest centroid", () => {
  const centers = [[0, 0], [10, 0], [0, 10], [10, 10]];
  const noise = pseudoRandom(400 * 2, 1);
  const data = Float64Array.from({ length: 800 }, (_, i) => {
    const p = i >> 1;
    return centers[p % 4]![i & 1]! + 0.1 * noise[i]!;
  });
  const { centroids, codes } = fitKmeans(data, 400, 2, 4, 100, seededRandom(0, "k-means"));
  const found = Array.from({ length: 4 }, (_, c) => [centroids[2 * c]!, centroids[2 * c + 1]!]);
  for (const center of centers) {
    assert.ok(
      found.some(([x, y]) => Math.hypot(x! - center[0]!, y! - center[1]!) < 0.1),
      `${found}`,
    );
  }
  for (let p = 0; p < 400; p++) {
    const c = codes[p]!;
    const d = (k: number) =>
      Math.hypot(data[2 * p]! - found[k]![0]!, data[2 * p + 1]! - found[k]![1]!);
    for (let k = 0; k < 4; k++) assert.ok(d(c) <= d(k));
  }
});

Deno.test("aqlm k-means: no more points than centroids keeps every point exactly", () => {
  const data = Float64Array.of(1, 2, 3, 4, 5, 6);
  const { centroids, codes } = fitKmeans(data, 3, 2, 4, 100, seededRandom(1, "k-means"));
  for (let p = 0; p < 3; p++) {
    assert.deepEqual([...centroids.subarray(2 * codes[p]!, 2 * codes[p]! + 2)], [
      ...data.subarray(2 * p, 2 * p + 2),
    ]);
  }
  assert.deepEqual([...centroids.subarray(2 * 3)], [0, 0]);
});

Deno.test("aqlm init: row scales are norms; each residual codebook lowers the error", () => {
  const [rows, cols] = [32, 24];
  const w = pseudoRandom(rows * cols, 9);
  const error = (M: number) => {
    const init = aqlmInit(
      w,
      rows,
      cols,
      { codebooks: M, bits: 4, groupSize: 4 },
      100,
      seededRandom(0, "init"),
    );
    let e = 0;
    for (let r = 0; r < rows; r++) {
      let norm = 0;
      for (let c = 0; c < cols; c++) norm += w[r * cols + c]! ** 2;
      assert.ok(Math.abs(init.scales[r]! - Math.sqrt(norm)) < 1e-6);
      for (let c = 0; c < cols; c++) {
        let v = 0;
        const j = Math.floor(c / 4);
        for (let m = 0; m < M; m++) {
          v += init.codebooks[(m * 16 + init.codes[(r * 6 + j) * M + m]!) * 4 + c % 4]!;
        }
        e += (v * init.scales[r]! - w[r * cols + c]!) ** 2;
      }
    }
    return e;
  };
  const [one, two, three] = [error(1), error(2), error(3)];
  assert.ok(three < two && two < one, `${one} ${two} ${three}`);
});
