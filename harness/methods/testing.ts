/**
 * Helpers shared by the methods' tests: held-out NLL on stories260K, the calibration dataset, a
 * seeded generator and LDLQ's proxy loss.
 *
 * @module
 */
import type { LlamaModel } from "../../core/model.ts";
import type { DatasetSpec } from "../../core/suite_types.ts";
import { cpuBackend } from "../../kernels/cpu/backend.ts";
import { sharedPath } from "../../core/shared.ts";

/** Mean next-token NLL of `ids` in windows of 256. */
export async function heldOutNll(model: LlamaModel, ids: number[]): Promise<number> {
  const runner = await cpuBackend.load(model);
  const V = model.config.vocabSize;
  let total = 0;
  let n = 0;
  for (let w = 0; (w + 1) * 256 <= ids.length; w++) {
    const window = ids.slice(w * 256, (w + 1) * 256);
    runner.reset();
    const logits = await runner.forward(window, 0);
    for (let t = 0; t + 1 < window.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      const max = row.reduce((m, v) => Math.max(m, v), -Infinity);
      total += max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) -
        row[window[t + 1]!]!;
      n++;
    }
  }
  return total / n;
}

/** The suite datasets a calibrated test uses. */
export const CALIBRATION_SETS: Record<string, DatasetSpec> = {
  shakespeare: {
    id: "shakespeare",
    kind: "text",
    path: sharedPath("data/text/tinyshakespeare.txt"),
    maxChars: 100000,
  },
};

/** A linear congruential generator in [0, 1) (glibc's constants), for test data. */
export function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

/** `tr((W − Q) H (W − Q)ᵀ)`: the layer-output error LDLQ minimises. */
export function proxyLoss(w: Float64Array, q: Float64Array, h: Float64Array, m: number, n: number) {
  let loss = 0;
  const d = new Float64Array(n);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) d[c] = w[r * n + c]! - q[r * n + c]!;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += h[i * n + j]! * d[j]!;
      loss += d[i]! * s;
    }
  }
  return loss;
}
