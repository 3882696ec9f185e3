import assert from "node:assert/strict";
import { GatedLossError, GpuGatedLoss, GpuTargetLoss } from "./gated_loss.ts";
import { adapterUnavailable } from "./device.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await adapterUnavailable();

/** `Σ ‖N·(silu(x·Gᵀ)·(x·Uᵀ) − y)‖²` in float64. */
function reference(
  xs: Float32Array[],
  ys: Float32Array[],
  g: Float32Array,
  u: Float32Array,
  next: Float32Array,
  cols: number,
  hidden: number,
  out: number,
): number {
  let sum = 0;
  const e = new Float64Array(hidden);
  xs.forEach((x, w) => {
    for (let t = 0; t < x.length / cols; t++) {
      for (let h = 0; h < hidden; h++) {
        let a = 0;
        let b = 0;
        for (let c = 0; c < cols; c++) {
          a += x[t * cols + c]! * g[h * cols + c]!;
          b += x[t * cols + c]! * u[h * cols + c]!;
        }
        e[h] = a / (1 + Math.exp(-a)) * b - ys[w]![t * hidden + h]!;
      }
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let h = 0; h < hidden; h++) s += next[o * hidden + h]! * e[h]!;
        sum += s * s;
      }
    }
  });
  return sum;
}

Deno.test({
  name: "gated loss: the GPU's error through the next linear equals float64's, in chunks or not",
  ignore: unavailable !== undefined,
  async fn() {
    const [cols, hidden, out] = [24, 72, 20];
    const xs = [pseudoRandom(70 * cols, 1), pseudoRandom(33 * cols, 2)];
    const ys = [pseudoRandom(70 * hidden, 3), pseudoRandom(33 * hidden, 4)];
    const next = pseudoRandom(out * hidden, 5);
    for (const chunkRows of [8192, 40, 33]) {
      const loss = await GpuGatedLoss.create({ cols, hidden, out }, xs, ys, next, chunkRows);
      try {
        // Two candidates: the same buffers serve every call.
        for (const seed of [6, 8]) {
          const [g, u] = [pseudoRandom(hidden * cols, seed), pseudoRandom(hidden * cols, seed + 1)];
          const want = reference(xs, ys, g, u, next, cols, hidden, out);
          const got = await loss.loss(g, u);
          assert.ok(Math.abs(got / want - 1) < 1e-5, `chunks of ${chunkRows}: ${got} vs ${want}`);
        }
      } finally {
        loss.destroy();
      }
    }
  },
});

Deno.test({
  name: "gated loss: shapes that do not pair up are refused",
  ignore: unavailable !== undefined,
  async fn() {
    const shape = { cols: 4, hidden: 8, out: 2 };
    await assert.rejects(
      () =>
        GpuGatedLoss.create(
          shape,
          [new Float32Array(12)],
          [new Float32Array(16)],
          new Float32Array(16),
        ),
      GatedLossError,
    );
  },
});

Deno.test({
  name: "gated loss: a module's outputs against resident targets through the next linear",
  ignore: unavailable !== undefined,
  async fn() {
    const [hidden, out] = [40, 12];
    const ys = [pseudoRandom(50 * hidden, 1), pseudoRandom(21 * hidden, 2)];
    const next = pseudoRandom(out * hidden, 3);
    for (const chunkRows of [8192, 30]) {
      const loss = await GpuTargetLoss.create(hidden, out, ys, next, chunkRows);
      try {
        for (const seed of [4, 6]) {
          const os = ys.map((y, i) =>
            y.map((v, j) => v + 0.1 * pseudoRandom(y.length, seed + i)[j]!)
          );
          let want = 0;
          os.forEach((o, w) => {
            for (let t = 0; t < o.length / hidden; t++) {
              for (let r = 0; r < out; r++) {
                let s = 0;
                for (let h = 0; h < hidden; h++) {
                  s += next[r * hidden + h]! * (o[t * hidden + h]! - ys[w]![t * hidden + h]!);
                }
                want += s * s;
              }
            }
          });
          const got = await loss.loss(os);
          assert.ok(Math.abs(got / want - 1) < 1e-5, `chunks of ${chunkRows}: ${got} vs ${want}`);
        }
        await assert.rejects(() => loss.loss([ys[0]!]), GatedLossError);
      } finally {
        loss.destroy();
      }
    }
  },
});
