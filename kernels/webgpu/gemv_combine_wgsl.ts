/**
 * WGSL letting the float GEMV (`gemvShader`'s `combine` input) read split decode attention's
 * partial results (`decode_attention_wgsl.ts`) and combine them as it loads its input vector, so
 * that a one-token decode step needs no combine dispatch before the output projection.
 *
 * Why: each decode dispatch cost an H100 6–20 µs whatever its bytes (kernels/webgpu/PERF.md,
 * "decode step at position 256"); the combine moves a few KiB. Every workgroup of the GEMV
 * recomputes each head's maximum and total (a few blocks' worth of loads) and each activation's
 * weighted sum over the blocks, through the functions the combine kernel runs too
 * ({@linkcode combineFunctionsWgsl}), so the values equal the combine dispatch's.
 *
 * @module
 */
/**
 * The split attention a fused GEMV combines: its heads, head size, blocks per head, positions per
 * block and floats per block (its maximum, its sum, then `headDim` values: the partial kernel's
 * `DECODE_SPLIT_KEYS` and `decodePartialFloats`, passed in so this file needs not import that one).
 */
export interface CombineShape {
  nHeads: number;
  headDim: number;
  nSplits: number;
  splitKeys: number;
  blockFloats: number;
}

/** Thrown for a shape the fused combine is not built for. */
export class GemvCombineError extends Error {
  override name = "GemvCombineError";
}

/** Most heads a fused combine takes (their maxima and totals sit in workgroup memory). */
export const COMBINE_MAX_HEADS = 256;

const positive = (n: number) => Number.isInteger(n) && n > 0;

/** Throws {@linkcode GemvCombineError} unless `s` is a shape the fused combine takes. */
export function validateCombineShape(s: CombineShape): void {
  if (!(positive(s.headDim) && s.headDim % 4 === 0 && s.headDim <= 256)) {
    throw new GemvCombineError(`Head size ${s.headDim} is not a multiple of 4 up to 256`);
  }
  if (!positive(s.nHeads) || s.nHeads > COMBINE_MAX_HEADS) {
    throw new GemvCombineError(`Head count ${s.nHeads} is not between 1 and ${COMBINE_MAX_HEADS}`);
  }
  if (!positive(s.nSplits) || !positive(s.splitKeys)) {
    throw new GemvCombineError(`Blocks ${s.nSplits} of ${s.splitKeys} keys are not positive`);
  }
  if (s.blockFloats !== s.headDim + 2) {
    throw new GemvCombineError(
      `A block of ${s.blockFloats} floats is not a maximum, a sum and a head`,
    );
  }
}

/**
 * WGSL declarations of the fused combine: each head's (maximum, total) in workgroup memory and
 * `cx(c)` / `cx4(c)`, the combined attention output at column `c` (0 past `p.cols`; `cx4` needs
 * `c` a multiple of 4). The partial results are the GEMV's `x` binding (vec4s; the buffer is
 * padded to whole vec4s).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const shape = { nHeads: 4, headDim: 8, nSplits: 2, splitKeys: 64, blockFloats: 10 };
 * assert.ok(combineDeclarationsWgsl(shape).includes("fn cx4"));
 * ```
 */
export function combineDeclarationsWgsl(s: CombineShape): string {
  validateCombineShape(s);
  return `var<workgroup> hm: array<vec2<f32>, ${s.nHeads}>;
fn pf(i: u32) -> f32 { return x[i >> 2u][i & 3u]; }
${combineFunctionsWgsl(s.blockFloats)}
fn cx(c: u32) -> f32 {
  if (c >= p.cols) { return 0.0; }
  let h = c / ${s.headDim}u;
  let blocks = (st.pos + ${s.splitKeys}u) / ${s.splitKeys}u;
  return combineValue(h * ${s.nSplits * s.blockFloats}u, blocks, hm[h].x, c % ${s.headDim}u) /
    hm[h].y;
}
fn cx4(c: u32) -> vec4<f32> { return vec4<f32>(cx(c), cx(c + 1u), cx(c + 2u), cx(c + 3u)); }
`;
}

/**
 * WGSL of the fused combine's prologue: the workgroup's threads take heads and write each one's
 * largest block maximum and its total (the combine kernel's loops) to `hm`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const shape = { nHeads: 4, headDim: 8, nSplits: 2, splitKeys: 64, blockFloats: 10 };
 * assert.ok(combinePrologueWgsl(shape, 256).includes("workgroupBarrier"));
 * ```
 */
export function combinePrologueWgsl(s: CombineShape, workgroup: number): string {
  validateCombineShape(s);
  return `  {
    let blocks = (st.pos + ${s.splitKeys}u) / ${s.splitKeys}u;
    for (var h = lid; h < ${s.nHeads}u; h += ${workgroup}u) {
      let first = h * ${s.nSplits * s.blockFloats}u;
      let mx = combineMax(first, blocks);
      let total = combineTotal(first, blocks, mx);
      hm[h] = vec2<f32>(mx, total);
    }
    workgroupBarrier();
  }`;
}

/**
 * WGSL of the combine's arithmetic over one head's blocks of partial results (`blockFloats`
 * floats a block: its maximum, its sum, then the head's values), read through `pf(i)`, which the
 * including shader defines: `combineMax(first, blocks)`, the largest block maximum;
 * `combineTotal(first, blocks, mx)`, the blocks' sums rescaled to it; `combineValue(first, blocks,
 * mx, d)`, value `d` likewise (divided by the total, the combined output). The combine kernel
 * (`decodeCombineShader`) and the fused GEMV share these, so their values are equal.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.ok(combineFunctionsWgsl(66).includes("fn combineValue"));
 * ```
 */
export function combineFunctionsWgsl(blockFloats: number): string {
  const F = blockFloats;
  return `fn combineMax(first: u32, blocks: u32) -> f32 {
  var mx = -3.0e38;
  for (var b = 0u; b < blocks; b++) { mx = max(mx, pf(first + b * ${F}u)); }
  return mx;
}
fn combineTotal(first: u32, blocks: u32, mx: f32) -> f32 {
  var total = 0.0;
  for (var b = 0u; b < blocks; b++) {
    let o = first + b * ${F}u;
    total += pf(o + 1u) * exp(pf(o) - mx);
  }
  return total;
}
fn combineValue(first: u32, blocks: u32, mx: f32, d: u32) -> f32 {
  var acc = 0.0;
  for (var b = 0u; b < blocks; b++) {
    let o = first + b * ${F}u;
    acc += pf(o + 2u + d) * exp(pf(o) - mx);
  }
  return acc;
}`;
}
