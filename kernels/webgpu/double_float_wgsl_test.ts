/**
 * `divRn` rounds float32 quotients as IEEE division does, whatever the GPU's division: its
 * correction (`divFrom`) is run from estimates pushed up to 5 ulp off the GPU's own `a / b` (WGSL
 * allows 2.5; NVIDIA's is that inexact, lavapipe's rounds correctly), and every result must equal
 * the CPU's `fround(a / b)` (float64 division rounded to float32, which is float32's correctly
 * rounded quotient: 53 ≥ 2 · 24 + 2 bits).
 */
import assert from "node:assert/strict";
import { adapterUnavailable, getGpu } from "./device.ts";
import { Kernels } from "./kernels.ts";
import { DOUBLE_FLOAT_WGSL } from "./double_float_wgsl.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await adapterUnavailable();

const SHADER = `struct P { one: f32, ulps: i32, n: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${DOUBLE_FLOAT_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  ddOne = p.one;
  let i = gid.x;
  if (i >= p.n) { return; }
  let q = a[i] / b[i];
  out[i] = divFrom(a[i], b[i], bitcast<f32>(bitcast<i32>(q) + p.ulps));
}
`;

/** Dividends over ±1e±12 and positive divisors over 1e±12, with the FP8 maxima among them. */
function operands(n: number): [Float32Array, Float32Array] {
  const u = pseudoRandom(4 * n, 9);
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a[i] = u[4 * i]! * 10 ** Math.round(12 * u[4 * i + 1]!);
    b[i] = i % 5 === 0 ? [448, 57344, 6, 7, 3][i % 25 / 5]! : Math.abs(u[4 * i + 2]!) *
        10 ** Math.round(12 * u[4 * i + 3]!) + 1e-30;
  }
  return [a, b];
}

Deno.test({
  name: "webgpu: divRn rounds quotients as IEEE division from estimates ulps off",
  ignore: unavailable !== undefined,
  async fn() {
    const k = new Kernels(await getGpu());
    try {
      const n = 4096;
      const [a, b] = operands(n);
      const pipeline = await k.pipeline("urrw", SHADER);
      const out = k.storage(n * 4);
      let checked = 0;
      for (const ulps of [0, 1, -1, 3, -3, 5, -5]) {
        const uniform = new Uint32Array(4);
        new Float32Array(uniform.buffer)[0] = 1;
        new Int32Array(uniform.buffer)[1] = ulps;
        uniform[2] = n;
        const bindGroup = k.device.createBindGroup({
          layout: k.layout("urrw"),
          entries: [
            k.storage(uniform, GPUBufferUsage.UNIFORM),
            k.storage(a),
            k.storage(b),
            out,
          ].map((buffer, binding) => ({ binding, resource: { buffer } })),
        });
        const staging = k.buffer(n * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
        const enc = k.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(n / 64);
        pass.end();
        enc.copyBufferToBuffer(out, 0, staging, 0, n * 4);
        k.device.queue.submit([enc.finish()]);
        await staging.mapAsync(GPUMapMode.READ);
        const got = new Float32Array(staging.getMappedRange().slice(0));
        staging.unmap();
        for (let i = 0; i < n; i++) {
          const want = Math.fround(a[i]! / b[i]!);
          assert.equal(got[i], want, `${a[i]} / ${b[i]} from ${ulps} ulp off: ${got[i]}`);
          checked++;
        }
      }
      assert.equal(checked, 7 * n);
    } finally {
      k.destroy();
    }
  },
});
