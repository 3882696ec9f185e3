/**
 * The double-float RMSNorm stays equal to the CPU's float64 one where the GPU's division and
 * square root are as inexact as WGSL allows (2.5 ulp each; NVIDIA's reciprocal and square root
 * units are approximations, lavapipe's LLVM rounds correctly): the shader is run with its two
 * float32 estimates pushed 8 ulp off (WGSL's bounds for `1.0 / sqrt(x)` compose to about 7), which
 * the kernel's corrections must absorb; with one correction each, 3 ulp already changed outputs.
 * Each estimate is also run with the double-float products' rounding multiply-adds contracted.
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { getGpu } from "./device.ts";
import { encodeDispatches, Kernels } from "./kernels.ts";
import { RMSNORM_DD_WGSL } from "./rmsnorm_dd_wgsl.ts";
import { doubleFloat } from "./double_float_wgsl.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import { rmsnorm } from "../cpu/ops.ts";

const unavailable = await createWebGpuBackend().unavailable();

/** The shader with its quotient and inverse square root estimates `ulps` units off. */
function inexact(ulps: number, fused: boolean): string {
  const off = (e: string) => `bitcast<f32>(bitcast<u32>(${e}) + ${ulps}u)`;
  const estimates = ["n.x / d", "1.0 / sqrt(m.x)"];
  let code = RMSNORM_DD_WGSL;
  for (const e of estimates) {
    assert.ok(code.includes(e), `the shader's estimate ${e}`);
    code = code.replace(e, off(e));
  }
  if (!fused) return code;
  for (const [e, f] of CONTRACTIONS) {
    assert.ok(code.includes(e), `the product ${e}`);
    code = code.replace(e, f);
  }
  return code;
}

/**
 * The multiply-adds of `double_float_wgsl.ts` whose product rounds, each computed as a compiler
 * may contract it (WGSL allows a fused multiply-add): the exact product plus the addend, rounded
 * once (lavapipe's `fma` is not fused, so the double-float sum stands in for it). twoProd's
 * products are exact, so fusing them changes nothing.
 */
const CONTRACTIONS: [string, string][] = [
  ["q.y + a.y * b", "ddAdd(twoProd(a.y, b), vec2<f32>(q.y, 0.0)).x"],
  ["(a.x * b.y + a.y * b.x)", "ddAdd(twoProd(a.x, b.y), vec2<f32>(a.y * b.x, 0.0)).x"],
];

/** The kernel of `code` over `rows × dim` values of `x` (as `rmsnormDdDispatch` binds it). */
async function run(
  k: Kernels,
  code: string,
  x: Float32Array,
  weight: Float32Array,
  eps: number,
): Promise<Float32Array> {
  const dim = weight.length;
  const rows = x.length / dim;
  const pipeline = await k.pipeline("usrrw", code);
  const [hi, lo] = doubleFloat(eps);
  const step = k.storage(Uint32Array.of(rows, 0, 0, 0), GPUBufferUsage.UNIFORM);
  const out = k.storage(x.byteLength);
  const bindGroup = k.device.createBindGroup({
    layout: k.layout("usrrw"),
    entries: [k.uniform([dim, hi, lo, 1], [1, 2, 3]), { buffer: step, size: 16 }].map((
      resource,
      binding,
    ) => ({ binding, resource: resource instanceof GPUBuffer ? { buffer: resource } : resource }))
      .concat(
        [k.storage(x), k.storage(weight), out].map((buffer, i) => ({
          binding: i + 2,
          resource: { buffer },
        })),
      ),
  });
  const staging = k.buffer(x.byteLength, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  const enc = k.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  encodeDispatches(
    pass,
    [{
      label: "rmsnorm (double-float), inexact estimates",
      pipeline: () => pipeline,
      bindGroup,
      groups: (T) => [T, 1, 1],
    }],
    rows,
    0,
  );
  pass.end();
  enc.copyBufferToBuffer(out, 0, staging, 0, x.byteLength);
  k.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const got = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  return got;
}

Deno.test({
  name: "webgpu: double-float RMSNorm equals the CPU's with division and sqrt ulps off",
  ignore: unavailable !== undefined,
  async fn() {
    const k = new Kernels(await getGpu());
    try {
      // TinyLlama's width; rows over six orders of magnitude, so that the estimates' errors
      // land at many points of their ulps.
      const dim = 2048;
      const rows = 96;
      const x = pseudoRandom(rows * dim, 5).map((v, i) =>
        v * 10 ** ((Math.floor(i / dim) % 7) - 3)
      );
      const weight = pseudoRandom(dim, 6);
      const expected = new Float32Array(x.length);
      rmsnorm(expected, x, weight, 1e-5);
      for (const ulps of [0, 8, -8 >>> 0]) {
        for (const fused of [false, true]) {
          const got = await run(k, inexact(ulps, fused), x, weight, 1e-5);
          const wrong = got.findIndex((v, i) => v !== expected[i]);
          assert.equal(wrong, -1, `estimates ${ulps | 0} ulp off, fused ${fused}: value ${wrong}`);
        }
      }
    } finally {
      k.destroy();
    }
  },
});
