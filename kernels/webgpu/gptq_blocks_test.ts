/**
 * GPTQ's device column loop against the CPU's integer rounding. With `U = I` GPTQ spreads no
 * error, so each row's codes, scales and zero points are round-to-nearest of the weights with
 * group parameters fitted to them: exactly `quantizeInt` (`kernels/formats/int.ts`), float64
 * decisions included — ties of `w / scale` and of scales at f16 midpoints, and an asymmetric
 * range `hi − lo` that float32 rounds onto a midpoint. With a general `U` the loop is compared
 * with the CPU's GPTQ in `harness/methods/gptq_webgpu_test.ts`.
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { gptqBlocksWebGpu } from "./gptq_blocks.ts";
import type { GptqIntGrid } from "./gptq_block_wgsl.ts";
import { groupsPerRow, quantizeInt } from "../formats/int.ts";
import type { ScaleDtype } from "../../core/model.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await createWebGpuBackend().unavailable();

interface Case {
  bits: number;
  symmetric: boolean;
  restricted?: boolean;
  scaleDtype: ScaleDtype;
  /** The suite's group (0 per channel, -1 per tensor). */
  group: number;
  block: number;
}

/** Rows with ties: `2·amax / 15` and `(hi − lo) / 15` on f16 midpoints, `w / scale` at k + ½. */
function withTies(w: Float32Array, cols: number): void {
  // 3001 · 2⁻¹³ lies halfway between the f16 values 1500 · 2⁻¹² (even) and 1501 · 2⁻¹².
  const mid = 3001 * 2 ** -13;
  const scale = 1500 * 2 ** -12;
  const row0 = w.subarray(0, cols);
  row0.fill(0.01);
  row0.set([7.5 * mid, 2.5 * scale, -3.5 * scale, 0.5 * scale, -1.5 * scale]);
  // hi − lo = 15·mid + 2⁻³⁰ rounds to the midpoint in float32; in float64 it is above it.
  const row1 = w.subarray(cols, 2 * cols);
  row1.fill(0.02);
  row1.set([15 * mid, -(2 ** -30), 4.5 * (1501 * 2 ** -12)]);
}

async function check(c: Case, rows: number, cols: number, seed: number): Promise<void> {
  const w = pseudoRandom(rows * cols, seed);
  withTies(w, cols);
  const expected = quantizeInt(w, rows, cols, {
    bits: c.bits,
    group: c.group,
    symmetric: c.symmetric,
    scaleDtype: c.scaleDtype,
    ...(c.restricted ? { restricted: true } : {}),
  });
  const groupSize = expected.groupSize;
  const fit = groupSize < cols;
  const grid: GptqIntGrid = {
    bits: c.bits,
    symmetric: c.symmetric,
    restricted: c.restricted === true,
    scaleDtype: c.scaleDtype,
    fit,
    block: c.block,
  };
  const groups = groupsPerRow(expected);
  const half = 1 << (c.bits - 1);
  const u = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) u[i * cols + i] = 1;
  const got = await gptqBlocksWebGpu({
    w: Float64Array.from(w),
    u,
    rows,
    cols,
    groupSize,
    blockSize: c.block,
    // Free groups are fitted on the device; one group a row is fixed beforehand.
    scales: fit ? new Float32Array(rows * groups) : expected.scales,
    zeros: fit
      ? new Uint8Array(rows * groups)
      : expected.zeros ?? new Uint8Array(rows * groups).fill(half),
  }, grid);
  const label = JSON.stringify(c);
  assert.deepEqual(got.scales, expected.scales, `${label}: scales`);
  if (expected.zeros) assert.deepEqual(got.zeros, expected.zeros, `${label}: zeros`);
  let moved = 0;
  for (let i = 0; i < rows * cols; i++) if (got.codes[i] !== expected.codes[i]) moved++;
  assert.equal(moved, 0, `${label}: ${moved} codes differ`);
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    for (let col = 0; col < cols; col++) {
      const g = r * groups + Math.floor(col / groupSize);
      const zero = expected.zeros ? expected.zeros[g]! : half;
      const q = expected.scales[g]! * (expected.codes[r * cols + col]! - zero);
      loss += (w[r * cols + col]! - q) ** 2 / 2;
    }
  }
  assert.ok(Math.abs(got.loss / loss - 1) < 1e-5, `${label}: loss ${got.loss} vs ${loss}`);
}

Deno.test({
  name: "webgpu: GPTQ device loop with U = I rounds as quantizeInt (formats, groups, ties)",
  ignore: unavailable !== undefined,
  async fn() {
    // 70 rows: a partial workgroup; 102 columns: code words straddle rows, the last group is
    // short (102 = 2·48 + 6), and groups of 48 straddle blocks of 32.
    const [rows, cols] = [70, 102];
    const cases: Case[] = [
      { bits: 4, symmetric: true, scaleDtype: "f16", group: 48, block: 32 },
      { bits: 4, symmetric: false, scaleDtype: "f16", group: 16, block: 40 },
      { bits: 3, symmetric: true, scaleDtype: "bf16", group: 32, block: 128 },
      { bits: 8, symmetric: false, scaleDtype: "f32", group: 64, block: 8 },
      { bits: 2, symmetric: false, scaleDtype: "bf16", group: 8, block: 16 },
      { bits: 4, symmetric: true, restricted: true, scaleDtype: "f16", group: 32, block: 32 },
      // One group a row (fixed before the loop): per channel and per tensor.
      { bits: 4, symmetric: false, scaleDtype: "f16", group: 0, block: 64 },
      { bits: 8, symmetric: true, scaleDtype: "f16", group: -1, block: 64 },
    ];
    for (const [i, c] of cases.entries()) await check(c, rows, cols, 20 + i);
  },
});
