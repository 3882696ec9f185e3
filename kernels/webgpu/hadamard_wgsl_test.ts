import assert from "node:assert/strict";
import { adapterUnavailable, getGpu } from "./device.ts";
import {
  blockHadamardShader,
  hadamardFactorData,
  hadamardKey,
  hadamardShader,
  HadamardShaderError,
} from "./hadamard_wgsl.ts";
import { hadamardTransform } from "../cpu/hadamard.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await adapterUnavailable();

/** Runs the shader over `rows` rows of `x` with `signs` on the shared device. */
async function run(
  n: number,
  transpose: boolean,
  x: Float32Array,
  signs: Float32Array,
): Promise<Float32Array> {
  const { device } = await getGpu();
  const rows = x.length / n;
  const storage = (data: Float32Array) => {
    const b = device.createBuffer({
      size: Math.max(16, data.byteLength),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(b, 0, new Float32Array(data));
    return b;
  };
  const params = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(params, 0, Uint32Array.of(rows, 0, 0, 0));
  const out = device.createBuffer({
    size: x.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: x.byteLength,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const module = device.createShaderModule({ code: hadamardShader(n, transpose) });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const buffers = [params, storage(x), out, storage(signs), storage(hadamardFactorData(n))];
  const bind = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(rows);
  pass.end();
  encoder.copyBufferToBuffer(out, 0, read, 0, x.byteLength);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const result = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  for (const b of [...buffers, read]) b.destroy();
  return result;
}

Deno.test({
  name: "webgpu: Hadamard transform with signs matches the CPU (powers of two, 12·2^k, 172)",
  ignore: unavailable !== undefined,
  async fn() {
    for (const n of [64, 256, 768, 172]) {
      for (const transpose of [false, true]) {
        const rows = 3;
        const x = pseudoRandom(rows * n, n);
        const signs = Float32Array.from(pseudoRandom(n, n + 1), (v) => (v < 0 ? -1 : 1));
        const want = new Float64Array(rows * n);
        for (let i = 0; i < want.length; i++) want[i] = x[i]! * signs[i % n]!;
        hadamardTransform(want, n, transpose);
        const got = await run(n, transpose, x, signs);
        for (let i = 0; i < want.length; i++) {
          assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5, `n=${n} t=${transpose} [${i}]`);
        }
      }
    }
  },
});

Deno.test("hadamardShader refuses rows beyond workgroup memory; keys differ by size and side", () => {
  assert.throws(() => hadamardShader(8192, false), HadamardShaderError);
  assert.notEqual(hadamardKey(64, false), hadamardKey(64, true));
  assert.notEqual(hadamardKey(64, false), hadamardKey(128, false));
  assert.notEqual(
    hadamardKey(64, false, { step: true }),
    hadamardKey(64, false, { step: true, place: true }),
  );
  assert.throws(() => hadamardShader(64, false, { place: true }), HadamardShaderError);
  // A device with more workgroup memory takes longer rows.
  assert.match(hadamardShader(8192, false, { maxBytes: 32768 }), /array<f32, 8192>/);
});

Deno.test("blockHadamardShader: in place at the step's rows; refuses rows beyond workgroup memory", () => {
  const wgsl = blockHadamardShader(172);
  assert.match(wgsl, /const K = 172u;\nconst P = 1u;/);
  assert.match(wgsl, /buf\[base \+ o\] = acc \* scale;/);
  assert.match(wgsl, /st\.pos \* params\.posStride/);
  assert.throws(() => blockHadamardShader(8192), HadamardShaderError);
});
