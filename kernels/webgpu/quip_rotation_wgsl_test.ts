import assert from "node:assert/strict";
import { adapterUnavailable, getGpu } from "./device.ts";
import { Kernels } from "./kernels.ts";
import {
  quipRotationKey,
  quipRotationShader,
  QuipRotationShaderError,
} from "./quip_rotation_wgsl.ts";
import { quipGpuPlan, quipMatrix, quipParts } from "../formats/quip_format.ts";
import { applyQuipRotation, type QuipProjMode } from "../formats/quip_rotation.ts";
import { pseudoRandom, relativeError } from "../../core/test_values.ts";

const unavailable = await adapterUnavailable();

/** Runs one side's shader over `T` token rows; returns the written buffers' contents. */
async function run(
  k: Kernels,
  sig: string,
  code: string,
  T: number,
  params: GPUBuffer,
  buffers: GPUBuffer[],
  read: GPUBuffer[],
): Promise<Float32Array[]> {
  const pipeline = await k.pipeline(sig, code);
  const step = k.uniform([T, 2, 0, 0]);
  const all = [params, step, ...buffers];
  const group = k.device.createBindGroup({
    layout: k.layout(sig),
    entries: all.map((buffer, binding) => ({
      binding,
      resource: binding === 1 ? { buffer, size: 16 } : { buffer },
    })),
  });
  const encoder = k.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group, [0]);
  pass.dispatchWorkgroups(T);
  pass.end();
  const copies = read.map((b) => {
    const copy = k.buffer(b.size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    encoder.copyBufferToBuffer(b, 0, copy, 0, b.size);
    return copy;
  });
  k.device.queue.submit([encoder.finish()]);
  return await Promise.all(copies.map(async (c) => {
    await c.mapAsync(GPUMapMode.READ);
    const data = new Float32Array(c.getMappedRange().slice(0));
    c.unmap();
    return data;
  }));
}

Deno.test({
  name: "webgpu: QuIP's rotations of both sides match applyQuipRotation (strides, placement, " +
    "accumulation, middle row in workgroup memory or storage)",
  ignore: unavailable !== undefined,
  async fn() {
    const k = new Kernels(await getGpu());
    try {
      // 37 (prime) × 172 (86 · 2), 64 × 48 (8 · 8, 8 · 6): every variant.
      for (const [rows, cols, mode] of [[37, 172, 0], [64, 48, 1], [48, 64, 2]] as const) {
        const m = quipMatrix(rows, cols, 2, new Uint8Array(rows * cols), {
          scale: 0.7,
          colScale: pseudoRandom(cols, 1).map((v) => 1 + v),
          seedU: 5,
          seedV: 6,
          mode: mode as QuipProjMode,
        });
        const plan = quipGpuPlan(m);
        const { u, v, colScale } = quipParts(m);
        const T = 3;
        const xStride = cols + 5;
        const x = pseudoRandom(T * xStride, 2);
        const z = pseudoRandom(T * rows, 3);
        const sums = pseudoRandom(T, 4);
        const [outOff, outStride, outPosStride] = [7, rows + 2, 100];
        const outSize = outOff + 2 * outPosStride + T * outStride;
        const tmp = new Float64Array(Math.max(rows, cols));
        const wantU = new Float64Array(T * cols);
        const wantSums = new Float64Array(T);
        const wantOut = new Float64Array(outSize).fill(1);
        for (let t = 0; t < T; t++) {
          const row = wantU.subarray(t * cols, (t + 1) * cols);
          for (let c = 0; c < cols; c++) row[c] = x[t * xStride + c]! / colScale[c]!;
          applyQuipRotation(v, row, 0, false, tmp);
          wantSums[t] = row.reduce((a, b) => a + b, 0);
          const zz = Float64Array.from(
            z.subarray(t * rows, (t + 1) * rows),
            (q) => plan.scale * (plan.step * q - sums[t]!),
          );
          applyQuipRotation(u, zz, 0, true, tmp);
          const at = outOff + 2 * outPosStride + t * outStride;
          for (let r = 0; r < rows; r++) wantOut[at + r]! += zz[r]!;
        }
        const params = k.uniform(
          [xStride, outOff, outStride, outPosStride, 1, plan.scale, plan.step, 0],
          [5, 6],
        );
        for (const shared of [true, false]) {
          const what = `${rows} × ${cols} mode ${mode}${shared ? "" : " (storage)"}`;
          const mids = k.storage(T * Math.max(rows, cols) * 4);
          const [uOut, sumsOut] = [k.storage(T * cols * 4), k.storage(T * 4)];
          const [gotU, gotSums] = await run(
            k,
            "usrrrrwww",
            quipRotationShader({ ...plan.v, side: "input", shared }),
            T,
            params,
            [
              k.storage(x),
              k.storage(colScale),
              k.storage(plan.v.factors),
              k.storage(plan.v.perms),
              mids,
              uOut,
              sumsOut,
            ],
            [uOut, sumsOut],
          );
          const f32 = (a: Float64Array) => Float32Array.from(a);
          assert.ok(relativeError(gotU!.subarray(0, T * cols), f32(wantU)) <= 1e-6, what);
          assert.ok(relativeError(gotSums!.subarray(0, T), f32(wantSums)) <= 1e-5, what);
          const out = k.storage(new Float32Array(outSize).fill(1));
          const [gotOut] = await run(
            k,
            "usrrrrww",
            quipRotationShader({ ...plan.u, side: "output", shared }),
            T,
            params,
            [
              k.storage(z),
              k.storage(sums),
              k.storage(plan.u.factors),
              k.storage(plan.u.perms),
              mids,
              out,
            ],
            [out],
          );
          assert.ok(relativeError(gotOut!.subarray(0, outSize), f32(wantOut)) <= 1e-6, what);
        }
      }
    } finally {
      k.destroy();
    }
  },
});

Deno.test("QuIP rotation shaders: keys differ by what the WGSL is built for; bad shapes throw", () => {
  const o = { side: "input", n: 172, p0: 86, p1: 2, count0: 2, count1: 86, shared: true } as const;
  const keys = new Set([
    quipRotationKey(o),
    quipRotationKey({ ...o, side: "output" }),
    quipRotationKey({ ...o, shared: false }),
    quipRotationKey({ ...o, count0: 1, count1: 1 }),
    quipRotationKey({ ...o, n: 172, p0: 2, p1: 86, count0: 86, count1: 2 }),
  ]);
  assert.equal(keys.size, 5);
  assert.ok(quipRotationShader(o).startsWith(`// ${quipRotationKey(o)}`));
  assert.throws(() => quipRotationShader({ ...o, p0: 43 }), QuipRotationShaderError);
  assert.throws(() => quipRotationShader({ ...o, count0: 3 }), QuipRotationShaderError);
});
