/**
 * Every integer-activation GEMV variant that `deno task perf --sweep` times computes what the CPU
 * reference does, on rows long enough for whole unchecked iterations and a partial last one.
 */
import { createWebGpuBackend } from "./backend.ts";
import { GEMV_VARIANTS } from "./perf.ts";
import { cpuOps } from "../cpu/backend.ts";
import { pseudoRandom, relativeError } from "../../core/test_values.ts";
import { quantizeInt } from "../formats/int.ts";
import assert from "node:assert/strict";
import { slowAdapterReason } from "./test_gate.ts";

const unavailable = await createWebGpuBackend().unavailable();
// A slow software adapter (OpenGL llvmpipe) runs the first variant only (test_gate.ts).
const slow = unavailable === undefined ? await slowAdapterReason() : undefined;

for (const [i, variant] of GEMV_VARIANTS.entries()) {
  Deno.test({
    name: `webgpu: integer-activation GEMV variant ${JSON.stringify(variant)}`,
    ignore: unavailable !== undefined || (slow !== undefined && i > 0),
    async fn() {
      const ops = createWebGpuBackend({ gemv: variant }).ops!;
      // 9000 columns: 282 chunks, so every unroll × lanes leaves a partial last iteration;
      // 37 rows: a partial workgroup. Symmetric int4 and int2 take signed codes (or code sums with
      // gemvXsum), asymmetric int4 zero points per group, int8 the whole byte.
      const cases = [[4, 128, true], [4, 32, false], [2, 64, true], [8, 0, true]] as const;
      for (const [bits, group, symmetric] of cases) {
        const w = quantizeInt(pseudoRandom(37 * 9000, 5), 37, 9000, { bits, group, symmetric });
        const x = pseudoRandom(9000, 7);
        const error = relativeError(
          await ops.matmul(x, w, "int8"),
          await cpuOps.matmul(x, w, "int8"),
        );
        assert.ok(error < 1e-5, `int${bits} g${group}: relative error ${error}`);
      }
    },
  });
}
