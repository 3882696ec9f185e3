/**
 * The `AᵀB` kernel on its own, against float64 sums: both layouts, rectangles and bands that are
 * no whole tiles, strides that are no multiples of 4, depths that are no whole steps, a negative
 * `α` accumulated into `O`; what lies outside the rectangle (and, with `upper` or `lower`, in the
 * tiles wholly below or above the diagonal) stays as it was.
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import {
  ATB_TILE,
  ATB_TILE_COLS,
  atbGroups,
  type AtbLayout,
  type AtbParams,
  atbShader,
  type AtbTriangle,
  atbUniform,
} from "./atb_wgsl.ts";
import { Kernels } from "./kernels.ts";
import { getGpu } from "./device.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await createWebGpuBackend().unavailable();

/** Runs one dispatch over `o` (the band's rows) and returns `O` after it. */
async function atb(
  k: Kernels,
  triangle: AtbTriangle,
  layout: AtbLayout,
  p: AtbParams,
  a: Float32Array,
  b: Float32Array,
  o: Float32Array,
): Promise<Float32Array> {
  const pipeline = await k.pipeline(
    "urrw",
    atbShader(triangle, layout),
  );
  const out = k.storage(o);
  const bind = k.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [k.uniform([...atbUniform(p)]), k.storage(a), k.storage(b), out].map((
      buffer,
      binding,
    ) => ({ binding, resource: { buffer } })),
  });
  const staging = k.buffer(out.size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  const enc = k.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(...atbGroups(p));
  pass.end();
  enc.copyBufferToBuffer(out, 0, staging, 0, out.size);
  k.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const got = new Float32Array(staging.getMappedRange().slice(0, o.byteLength));
  staging.unmap();
  return got;
}

/**
 * A case: `I` rows of A's `i`, `J` columns of B's `j`, `pad` added to every row stride, the
 * rectangle [i0, i1) × [j0, j1) of a band of O from row `row0`, and the tiles kept.
 */
type AtbCase = [
  depth: number,
  I: number,
  J: number,
  pad: number,
  i0: number,
  i1: number,
  j0: number,
  j1: number,
  row0: number,
  triangle: AtbTriangle,
];

Deno.test({
  name: "webgpu: AᵀB over rectangles, bands and partial tiles in both layouts",
  ignore: unavailable !== undefined,
  async fn() {
    const k = new Kernels(await getGpu());
    const cases: AtbCase[] = [
      [37, 150, 150, 0, 0, 150, 0, 150, 0, "upper"],
      [21, 200, 200, 0, 64, 200, 0, 200, 64, "upper"],
      [19, 300, 300, 0, 40, 300, 40, 300, 0, "lower"],
      [1, 7, 9, 3, 0, 7, 0, 9, 0, "all"],
      [100, 130, 257, 5, 5, 129, 3, 250, 2, "all"],
      [33, 300, 70, 1, 17, 290, 11, 69, 10, "all"],
    ];
    for (const [depth, I, J, pad, i0, i1, j0, j1, row0, triangle] of cases) {
      const upper = triangle === "upper";
      const lower = triangle === "lower";
      for (const layout of triangle !== "all" ? ["rows"] as const : ["rows", "cols"] as const) {
        const name = `${layout} ${triangle} ${depth}×${I}×${J} [${i0},${i1})×[${j0},${j1})`;
        const lda = (layout === "rows" ? I : depth) + pad;
        const ldb = triangle !== "all" ? lda : (layout === "rows" ? J : depth) + pad;
        const a = pseudoRandom(layout === "rows" ? depth * lda : I * lda, depth);
        const b = triangle !== "all"
          ? a
          : pseudoRandom(layout === "rows" ? depth * ldb : J * ldb, I);
        const at = (m: Float32Array, ld: number, t: number, e: number) =>
          m[layout === "rows" ? t * ld + e : e * ld + t]!;
        const ldo = J + pad;
        const o = pseudoRandom((i1 - row0) * ldo, J);
        const alpha = -0.75;
        const p = { depth, lda, ldb, ldo, i0, i1, j0, j1, row0, alpha };
        const got = await atb(k, triangle, layout, p, a, b, o);
        for (let r = 0; r < i1 - row0; r++) {
          for (let j = 0; j < ldo; j++) {
            const i = r + row0;
            const v = got[r * ldo + j]!;
            const before = o[r * ldo + j]!;
            const inside = i >= i0 && i < i1 && j >= j0 && j < j1;
            // With `upper` (`lower`), a workgroup whose tile lies wholly below (above) the
            // diagonal writes nothing.
            const tileI = i0 + Math.floor((i - i0) / ATB_TILE) * ATB_TILE;
            const tileJ = j0 + Math.floor((j - j0) / ATB_TILE_COLS) * ATB_TILE_COLS;
            const skipped = (upper && tileJ + ATB_TILE_COLS <= tileI) ||
              (lower && tileI + ATB_TILE <= tileJ);
            if (!inside || skipped) {
              assert.equal(v, before, `${name}: O[${i}][${j}] written`);
              continue;
            }
            let s = 0;
            let size = 0;
            for (let t = 0; t < depth; t++) {
              const prod = at(a, lda, t, i) * at(b, ldb, t, j);
              s += prod;
              size += Math.abs(prod);
            }
            const want = before + alpha * s;
            // Only the kept triangle is promised; written values across the diagonal are sums.
            if (((upper && j < i) || (lower && i < j)) && v === before) continue;
            assert.ok(
              Math.abs(v - want) <= 1e-6 * (1 + size),
              `${name}: O[${i}][${j}] = ${v}, want ${want}`,
            );
          }
        }
      }
    }
    k.destroy();
  },
});
