/**
 * GPTQ's factor of a (damped) Hessian on the GPU, in float32 as PyTorch's reference computes it
 * there: `L = cholesky(H)`, `H⁻¹ = L⁻ᵀ·L⁻¹` (`cholesky_inverse`), and `U = cholesky(H⁻¹)ᵀ` (the
 * upper factor), with the kernels of `cholesky_wgsl.ts` and the `AᵀB` GEMM (`atb_wgsl.ts`) for
 * `H⁻¹ = XᵀX`, `X = L⁻¹`. The CPU's float64 `linalg.ts` takes about `4/3·n³` multiply-adds in
 * JavaScript for the same (a minute and more at `n = 5632`); here each of the `2n` column steps
 * streams the trailing triangle once.
 *
 * @module
 */
import { getGpu, type Gpu } from "./device.ts";
import { Kernels } from "./kernels.ts";
import { atbGroups, atbShader, atbUniform } from "./atb_wgsl.ts";
import {
  CHOLESKY_STEP_STRIDE,
  CHOLESKY_TILE,
  diagonalShader,
  finishShader,
  schurShader,
  trinvShader,
} from "./cholesky_wgsl.ts";

/** Thrown when the Hessian is too large for a binding or not positive definite. */
export class GpuFactorError extends Error {
  override name = "GpuFactorError";
}

/**
 * `U`, the upper Cholesky factor of `h⁻¹` (`n × n`, row-major, float32), for `h` symmetric
 * positive definite (`n × n`, row-major, rounded to float32; only its lower triangle is read),
 * computed on the device (default the shared one).
 */
export async function gpuInverseFactor(
  h: Float64Array | Float32Array,
  n: number,
  gpu?: Gpu,
): Promise<Float32Array> {
  const k = new Kernels(gpu ?? await getGpu());
  try {
    return await factor(k, h, n);
  } finally {
    k.destroy();
  }
}

async function factor(
  k: Kernels,
  h: Float64Array | Float32Array,
  n: number,
): Promise<Float32Array> {
  const bytes = n * n * 4;
  if (h.length !== n * n || bytes > k.gpu.maxBinding) {
    throw new GpuFactorError(
      `A ${n} × ${n} Hessian (${h.length} values, ${bytes} bytes) does not fit one storage ` +
        `binding of ${k.gpu.maxBinding} bytes`,
    );
  }
  const { device } = k;
  const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const a = k.buffer(bytes, storage);
  const h32 = h instanceof Float32Array ? h : Float32Array.from(h);
  device.queue.writeBuffer(a, 0, h32 as Float32Array<ArrayBuffer>);
  const x = k.buffer(bytes, storage);
  const hinv = k.buffer(bytes, storage);
  const d = k.buffer(Math.max(16, n * 4), storage);
  // One uniform slot per step `k`, read at a dynamic offset.
  const steps = k.buffer(n * CHOLESKY_STEP_STRIDE, GPUBufferUsage.UNIFORM, true);
  const words = new Uint32Array(steps.getMappedRange());
  for (let s = 0; s < n; s++) words.set([n, s], (s * CHOLESKY_STEP_STRIDE) / 4);
  steps.unmap();
  const [schur, trinv, diagonal, chol, inv, identity, atb] = await Promise.all([
    k.pipeline("sw", schurShader()),
    k.pipeline("srw", trinvShader()),
    k.pipeline("srw", diagonalShader()),
    k.pipeline("srw", finishShader("chol")),
    k.pipeline("srw", finishShader("trinv")),
    k.pipeline("srw", finishShader("identity")),
    k.pipeline("urrw", atbShader(false)),
  ]);
  const bind = (sig: string, buffers: GPUBuffer[]) =>
    device.createBindGroup({
      layout: k.layout(sig),
      entries: buffers.map((buffer, binding) => ({
        binding,
        resource: binding === 0 ? { buffer, size: 16 } : { buffer },
      })),
    });
  const tiles = Math.ceil(n / CHOLESKY_TILE);
  const run = (
    pass: GPUComputePassEncoder,
    pipeline: GPUComputePipeline,
    group: GPUBindGroup,
    step: number,
    wx: number,
    wy = 1,
  ) => {
    if (wx === 0 || wy === 0) return;
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group, [step * CHOLESKY_STEP_STRIDE]);
    pass.dispatchWorkgroups(wx, wy);
  };
  // The lower factor of `m`, in place.
  const cholesky = (pass: GPUComputePassEncoder, m: GPUBuffer) => {
    const g = bind("sw", [steps, m]);
    for (let s = 0; s + 1 < n; s++) {
      const t = Math.ceil((n - s - 1) / CHOLESKY_TILE);
      run(pass, schur, g, s, t, t);
    }
    run(pass, diagonal, bind("srw", [steps, m, d]), 0, Math.ceil(n / 256));
    run(pass, chol, bind("srw", [steps, d, m]), 0, tiles, tiles);
  };
  const enc = device.createCommandEncoder();
  const first = enc.beginComputePass();
  cholesky(first, a);
  // X = L⁻¹ from X = I.
  run(first, identity, bind("srw", [steps, a, x]), 0, tiles, tiles);
  const gt = bind("srw", [steps, a, x]);
  for (let s = 0; s + 1 < n; s++) {
    const [wx, wy] = [Math.ceil((s + 1) / CHOLESKY_TILE), Math.ceil((n - s - 1) / CHOLESKY_TILE)];
    run(first, trinv, gt, s, wx, wy);
  }
  run(first, inv, gt, 0, tiles, tiles);
  first.end();
  // H⁻¹ = XᵀX, then its lower factor, whose transpose is U.
  const p = { depth: n, lda: n, ldb: n, ldo: n, i0: 0, i1: n, j0: 0, j1: n, row0: 0, alpha: 1 };
  const u = k.buffer(64, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  device.queue.writeBuffer(u, 0, atbUniform(p));
  const gemm = enc.beginComputePass();
  gemm.setPipeline(atb);
  gemm.setBindGroup(
    0,
    device.createBindGroup({
      layout: k.layout("urrw"),
      entries: [u, x, x, hinv].map((buffer, binding) => ({ binding, resource: { buffer } })),
    }),
  );
  gemm.dispatchWorkgroups(...atbGroups(p));
  gemm.end();
  const second = enc.beginComputePass();
  cholesky(second, hinv);
  second.end();
  const staging = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  enc.copyBufferToBuffer(hinv, 0, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const l = new Float32Array(staging.getMappedRange());
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    if (!(l[i * n + i]! > 0)) {
      staging.unmap();
      staging.destroy();
      throw new GpuFactorError(
        `The Hessian is not positive definite in float32: pivot ${i} of H⁻¹'s factor is ` +
          `${l[i * n + i]} (increase the dampening)`,
      );
    }
  }
  // U = Lᵀ, tile by tile, so the transposed reads stay within a few cache lines.
  const T = 64;
  for (let i0 = 0; i0 < n; i0 += T) {
    for (let j0 = 0; j0 <= i0; j0 += T) {
      const [i1, j1] = [Math.min(n, i0 + T), Math.min(n, j0 + T)];
      for (let j = j0; j < j1; j++) {
        for (let i = Math.max(i0, j); i < i1; i++) out[j * n + i] = l[i * n + j]!;
      }
    }
  }
  staging.unmap();
  staging.destroy();
  return out;
}
