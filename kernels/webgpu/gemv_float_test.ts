/**
 * Every float-activation GEMV variant that `deno task perf --sweep` times computes what the CPU
 * reference does, for one and three token rows (rows of 9000 columns: a partial last chunk and,
 * past the first token, activation rows not aligned to vec4), over whole and partial steps.
 */
import { createWebGpuBackend } from "./backend.ts";
import { FLOAT_GEMV_VARIANTS } from "./perf.ts";
import { cpuOps } from "../cpu/backend.ts";
import { pseudoRandom, relativeError } from "../../core/test_values.ts";
import { quantizeInt } from "../formats/int.ts";
import { dense } from "../../core/model.ts";
import assert from "node:assert/strict";
import { slowAdapterReason } from "./test_gate.ts";

const unavailable = await createWebGpuBackend().unavailable();
// A slow software adapter (OpenGL llvmpipe) runs the first variant only (test_gate.ts).
const slow = unavailable === undefined ? await slowAdapterReason() : undefined;

for (const [i, variant] of FLOAT_GEMV_VARIANTS.entries()) {
  Deno.test({
    name: `webgpu: float-activation GEMV variant ${JSON.stringify(variant)}`,
    ignore: unavailable !== undefined || (slow !== undefined && i > 0),
    async fn() {
      const ops = createWebGpuBackend({ gemv: variant }).ops!;
      const [rows, cols] = [37, 9000];
      // Symmetric int4 in groups of 128 (constant zero point), asymmetric int4 in groups of 32
      // (zero points per group), int2, int8, and f32 (no codes).
      const cases = [[4, 128, true], [4, 32, false], [2, 64, true], [8, 0, true]] as const;
      const weights = [
        ...cases.map(([bits, group, symmetric]) => ({
          name: `int${bits} g${group}`,
          w: quantizeInt(pseudoRandom(rows * cols, 5), rows, cols, { bits, group, symmetric }),
        })),
        { name: "f32", w: dense(rows, cols, pseudoRandom(rows * cols, 5)) },
      ];
      for (const { name, w } of weights) {
        for (const T of [1, 3]) {
          const x = pseudoRandom(T * cols, 7);
          const error = relativeError(await ops.matmul(x, w), await cpuOps.matmul(x, w));
          assert.ok(error < 1e-5, `${name}, ${T} rows: relative error ${error}`);
        }
      }
    },
  });
}
