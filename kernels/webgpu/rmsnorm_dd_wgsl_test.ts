/**
 * The double-float RMSNorm stays equal to the CPU's float64 one where the GPU's division and
 * square root are as inexact as WGSL allows (2.5 ulp each; NVIDIA's reciprocal and square root
 * units are approximations, lavapipe's LLVM rounds correctly): the shader is run with its two
 * float32 estimates pushed 8 ulp off (WGSL's bounds for `1.0 / sqrt(x)` compose to about 7), which
 * the kernel's corrections must absorb; with one correction each, 3 ulp already changed outputs.
 * Each estimate is also run with products by 1.0 put into the two-sums, which a compiler doing
 * real-number algebra used to turn into other numbers (`double_float_wgsl.ts`'s `keep`).
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { getGpu } from "./device.ts";
import { encodeDispatches, Kernels } from "./kernels.ts";
import { RMSNORM_DD_WGSL, rmsnormDdGroups } from "./rmsnorm_dd_wgsl.ts";
import { doubleFloat } from "./double_float_wgsl.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import { rmsnorm } from "../cpu/ops.ts";

const unavailable = await createWebGpuBackend().unavailable();

/** The shader with its quotient and inverse square root estimates `ulps` units off. */
function inexact(ulps: number, rewritten: boolean): string {
  const off = (e: string) => `bitcast<f32>(bitcast<u32>(${e}) + ${ulps}u)`;
  const estimates = ["n.x / d", "1.0 / sqrt(m.x)"];
  let code = RMSNORM_DD_WGSL;
  for (const e of estimates) {
    assert.ok(code.includes(e), `the shader's estimate ${e}`);
    code = code.replace(e, off(e));
  }
  if (!rewritten) return code;
  for (const [e, f] of REWRITES) {
    assert.ok(code.includes(e), `the statement ${e}`);
    code = code.replaceAll(e, f);
  }
  return code;
}

/**
 * Products by `ddOne` (1.0, unknown to the compiler) put into the two-sums: the same numbers,
 * unless a compiler rewrites the arithmetic as real numbers (Mesa's factored such a product into
 * the error term when the two-sums were not kept opaque, and outputs changed).
 */
const REWRITES: [string, string][] = [
  ["let s = keep(a + b);", "let s = keep((a + b) * ddOne);"],
  ["let bb = keep(s - a);", "let bb = keep((s - a) * ddOne);"],
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
      groups: rmsnormDdGroups,
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
        for (const rewritten of [false, true]) {
          const got = await run(k, inexact(ulps, rewritten), x, weight, 1e-5);
          const wrong = got.findIndex((v, i) => v !== expected[i]);
          assert.equal(
            wrong,
            -1,
            `estimates ${ulps | 0} ulp off, rewritten ${rewritten}: value ${wrong}`,
          );
        }
      }
    } finally {
      k.destroy();
    }
  },
});

Deno.test("rmsnorm_dd: rows past 65,535 workgroups go along y", () => {
  assert.deepEqual(rmsnormDdGroups(512), [512, 1, 1]);
  // Qwen3's head norms over a 2048-token window of 32 heads: one row more than x takes.
  assert.deepEqual(rmsnormDdGroups(2048 * 32), [65535, 2, 1]);
  assert.deepEqual(rmsnormDdGroups(0)[1], 0);
});

Deno.test({
  name: "webgpu: double-float RMSNorm over more rows than one dispatch dimension takes",
  ignore: unavailable !== undefined,
  async fn() {
    const k = new Kernels(await getGpu());
    try {
      const [dim, rows] = [2, 65535 + 37];
      const x = pseudoRandom(rows * dim, 7);
      const weight = pseudoRandom(dim, 8);
      const expected = new Float32Array(x.length);
      rmsnorm(expected, x, weight, 1e-6);
      const got = await run(k, RMSNORM_DD_WGSL, x, weight, 1e-6);
      assert.equal(got.findIndex((v, i) => v !== expected[i]), -1);
    } finally {
      k.destroy();
    }
  },
});
