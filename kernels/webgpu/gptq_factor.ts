/**
 * GPTQ's factor of a (damped) Hessian on the GPU, in float32 as PyTorch's reference computes it
 * there: `L = cholesky(H)`, `H⁻¹ = L⁻ᵀ·L⁻¹` (`cholesky_inverse`), and `U = cholesky(H⁻¹)ᵀ` (the
 * upper factor), with the blocked kernels of `cholesky_wgsl.ts` (panels of 64 columns: the
 * diagonal block in one workgroup, the panel's rows by substitution, the trailing update as the
 * `AᵀB` GEMM of `atb_wgsl.ts`) and that GEMM for `H⁻¹ = XᵀX`, `X = L⁻¹` (its lower triangle, all
 * the second factor reads). The CPU's float64 `linalg.ts` takes about `4/3·n³` multiply-adds in
 * JavaScript for the same (a minute and more at `n = 5632`). At `n = 5632` the whole factor is one
 * submit of 700 dispatches (262 a Cholesky, 175 for the inverse, one GEMM), where the per-column
 * kernels it replaced took 16 900 (`n + 1` each for the two Cholesky factors and the inverse).
 *
 * @module
 */
import { getGpu, type Gpu } from "./device.ts";
import { Kernels } from "./kernels.ts";
import { atbGroups, type AtbParams, atbShader, atbUniform } from "./atb_wgsl.ts";
import {
  blockSolveShader,
  CHOLESKY_BLOCK,
  CHOLESKY_SOLVE_THREADS,
  CHOLESKY_STEP_STRIDE,
  diagonalCholeskyShader,
  panelSolveShader,
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
  const b = CHOLESKY_BLOCK;
  const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const a = k.buffer(bytes, storage);
  const h32 = h instanceof Float32Array ? h : Float32Array.from(h);
  device.queue.writeBuffer(a, 0, h32 as Float32Array<ArrayBuffer>);
  // Lᵀ's panels (for the GEMMs), X = L⁻¹ (WebGPU zeroes new buffers), X's latest block row.
  const lt = k.buffer(bytes, storage);
  const x = k.buffer(bytes, storage);
  const r = k.buffer(b * n * 4, storage);
  const hinv = k.buffer(bytes, storage);
  const panels = Math.ceil(n / b);
  // Per panel: its `Step` (n, k0) at a dynamic offset, then the uniforms of its two GEMMs (the
  // Cholesky's trailing update, the inverse's rows below), then the one of XᵀX.
  const slots = 3 * panels + 1;
  const uniforms = k.buffer(slots * CHOLESKY_STEP_STRIDE, GPUBufferUsage.UNIFORM, true);
  const words = new Uint32Array(uniforms.getMappedRange());
  const gemmUniform = (slot: number, p: AtbParams) => {
    words.set(atbUniform(p), (slot * CHOLESKY_STEP_STRIDE) / 4);
    return p;
  };
  const trailing: AtbParams[] = [];
  const below: AtbParams[] = [];
  for (let s = 0; s < panels; s++) {
    const k0 = s * b;
    words.set([n, k0], (s * CHOLESKY_STEP_STRIDE) / 4);
    // The last panel has no rows below it, so no GEMMs.
    if (k0 + b >= n) break;
    const base = { depth: b, lda: n, ldb: n, ldo: n, i0: k0 + b, i1: n, row0: 0, alpha: -1 };
    trailing.push(gemmUniform(panels + s, { ...base, j0: k0 + b, j1: n }));
    below.push(gemmUniform(2 * panels + s, { ...base, j0: 0, j1: k0 + b }));
  }
  const gram = gemmUniform(3 * panels, {
    depth: n,
    lda: n,
    ldb: n,
    ldo: n,
    i0: 0,
    i1: n,
    j0: 0,
    j1: n,
    row0: 0,
    alpha: 1,
  });
  uniforms.unmap();
  // One GEMM pipeline for all three: `lower` skips no tile of the inverse's rectangles below
  // the diagonal, and half of the others'.
  const [diagonal, panel, block, update] = await Promise.all([
    k.pipeline("sw", diagonalCholeskyShader()),
    k.pipeline("sww", panelSolveShader()),
    k.pipeline("srww", blockSolveShader()),
    k.pipeline("urrw", atbShader("lower")),
  ]);
  type Binding = GPUBuffer | [GPUBuffer, number, number];
  const bind = (sig: string, buffers: Binding[]) =>
    device.createBindGroup({
      layout: k.layout(sig),
      entries: buffers.map((e, binding) => {
        const [buffer, offset, size] = Array.isArray(e) ? e : [e, 0, undefined];
        return { binding, resource: { buffer, offset, size } };
      }),
    });
  const step = [uniforms, 0, 16] as [GPUBuffer, number, number];
  const slot = (s: number) =>
    [uniforms, s * CHOLESKY_STEP_STRIDE, 64] as [GPUBuffer, number, number];
  // Rows k0 … k0 + b of Lᵀ: the panel's `A` (and `B`) of the GEMMs. Its offset is a multiple of
  // 256 bytes (k0 of 64), the storage binding offset alignment.
  const ltPanel = (k0: number) => [lt, k0 * n * 4, b * n * 4] as [GPUBuffer, number, number];
  const run = (
    pass: GPUComputePassEncoder,
    pipeline: GPUComputePipeline,
    group: GPUBindGroup,
    groups: [number, number, number],
    s?: number,
  ) => {
    pass.setPipeline(pipeline);
    if (s === undefined) pass.setBindGroup(0, group);
    else pass.setBindGroup(0, group, [s * CHOLESKY_STEP_STRIDE]);
    pass.dispatchWorkgroups(...groups);
  };
  const solveGroups = (rows: number): [number, number, number] => [
    Math.ceil(rows / CHOLESKY_SOLVE_THREADS),
    1,
    1,
  ];
  // The lower factor of `m`, in place (its panels' transposes in `lt`).
  const cholesky = (pass: GPUComputePassEncoder, m: GPUBuffer) => {
    const [gd, gp] = [bind("sw", [step, m]), bind("sww", [step, m, lt])];
    for (let s = 0; s < panels; s++) {
      const k0 = s * b;
      run(pass, diagonal, gd, [1, 1, 1], s);
      if (k0 + b >= n) break;
      run(pass, panel, gp, solveGroups(n - k0 - b), s);
      const p = trailing[s]!;
      run(
        pass,
        update,
        bind("urrw", [slot(panels + s), ltPanel(k0), ltPanel(k0), m]),
        atbGroups(p),
      );
    }
  };
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  cholesky(pass, a);
  // X = L⁻¹ by block rows.
  const gb = bind("srww", [step, a, x, r]);
  for (let s = 0; s < panels; s++) {
    const k0 = s * b;
    run(pass, block, gb, solveGroups(Math.min(n, k0 + b)), s);
    if (k0 + b >= n) break;
    const p = below[s]!;
    run(pass, update, bind("urrw", [slot(2 * panels + s), ltPanel(k0), r, x]), atbGroups(p));
  }
  // H⁻¹ = XᵀX (its lower triangle), then its lower factor, whose transpose is U.
  run(pass, update, bind("urrw", [slot(3 * panels), x, x, hinv]), atbGroups(gram));
  cholesky(pass, hinv);
  pass.end();
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
    const pivot = l[i * n + i]!;
    if (!(pivot > 0)) {
      staging.unmap();
      staging.destroy();
      throw new GpuFactorError(
        `The Hessian is not positive definite in float32: pivot ${i} of H⁻¹'s factor is ` +
          `${pivot} (increase the dampening)`,
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
