/**
 * QuIP's matmul on WebGPU (`kernels/formats/quip_format.ts`), the steps of the CPU's
 * `kernels/cpu/quip_matmul.ts` as dispatches over the parts uploaded as they are stored
 * (`PackedMatrix.codebook`, a `QuipGpuPlan`), never a decoded copy:
 *
 * 1. `u = V(x / col_scale)` and each token row's `Σu` (`quip_rotation_wgsl.ts`, `input`);
 * 2. `z = Q·u`: the codes in the packed matrix's own parts (unsigned, unit scale, zero point 0),
 *    multiplied by the integer GEMV (decode) or GEMM (prefill) of `Kernels.matmul`;
 * 3. `Uᵀ(scale · (step · z − Σu))`, placed in the output as `Kernels.matmul` places it
 *    (`quip_rotation_wgsl.ts`, `output`).
 *
 * The rotations' factors, permutations and the column scales are uploaded once per matrix and
 * host; `u`, `z`, the sums and (for rows too long for workgroup memory) the middle rows of the
 * rotations live in scratch buffers shared with the other matrices of one `Kernels`, sized for
 * as many token rows as the input buffer holds.
 *
 * @module
 */
import type { QuipGpuPlan } from "../formats/gpu_layout.ts";
import type { PackedMatrix } from "./pack.ts";
import {
  bind,
  type CodebookDispatch,
  type CodebookHost,
  CodebookMatmulError,
  type CodebookMatmulOptions,
  scratch,
  uploaded,
} from "./codebook_matmul.ts";
import { quipRotationShader } from "./quip_rotation_wgsl.ts";

/**
 * The dispatches of `out (+)= W · x` for a QuIP matrix (see the module notes), with the placement
 * of `Kernels.matmul`; `codes(u, z)` gives the dispatches of `z = Q·u` over the matrix's parts.
 */
export async function quipMatmul<D>(
  k: CodebookHost,
  step: GPUBuffer,
  m: PackedMatrix,
  x: GPUBuffer,
  out: GPUBuffer,
  o: CodebookMatmulOptions,
  codes: (u: GPUBuffer, z: GPUBuffer) => Promise<D[]>,
): Promise<(CodebookDispatch | D)[]> {
  const plan = m.codebook;
  if (plan?.kind !== "quip") {
    throw new CodebookMatmulError(`Matrix ${m.rows}x${m.cols} has no QuIP parts`);
  }
  const xStride = o.xStride ?? m.cols;
  const maxT = Math.max(1, Math.floor(x.size / 4 / xStride));
  const [colScale, vFactors, vPerms, uFactors, uPerms] = uploaded(k, plan, () => [
    plan.colScale,
    plan.v.factors,
    plan.v.perms,
    plan.u.factors,
    plan.u.perms,
  ]);
  const u = scratch(k, "quip u", maxT * m.cols * 4);
  const z = scratch(k, "quip z", maxT * m.rows * 4);
  const sums = scratch(k, "quip sums", maxT * 4);
  const maxBytes = k.device.limits.maxComputeWorkgroupStorageSize;
  const side = async (rot: QuipGpuPlan["u"], which: "input" | "output") => {
    const shared = 4 * rot.n + 4 * 256 <= maxBytes;
    const pipeline = await k.pipeline(
      which === "input" ? "usrrrrwww" : "usrrrrww",
      quipRotationShader({ ...rot, side: which, shared }),
    );
    const mids = shared ? scratch(k, "empty", 16) : scratch(k, "quip mid", maxT * rot.n * 4);
    return { pipeline, mids };
  };
  const [vSide, uSide] = await Promise.all([side(plan.v, "input"), side(plan.u, "output")]);
  const params = k.uniform([
    xStride,
    o.outOff ?? 0,
    o.outStride ?? m.rows,
    o.outPosStride ?? 0,
    o.accumulate ? 1 : 0,
    plan.scale,
    plan.step,
    0,
  ], [5, 6]);
  const stepBinding = { buffer: step, size: 16 };
  const label = `matmul ${m.rows}x${m.cols} quip`;
  const product = await codes(u, z);
  return [
    {
      label: `${label} input rotation`,
      pipeline: () => vSide.pipeline,
      bindGroup: bind(k, "usrrrrwww", [
        params,
        stepBinding,
        x,
        colScale!,
        vFactors!,
        vPerms!,
        vSide.mids,
        u,
        sums,
      ]),
      groups: (T) => [T, 1, 1],
    },
    ...product,
    {
      label: `${label} output rotation`,
      pipeline: () => uSide.pipeline,
      bindGroup: bind(k, "usrrrrww", [
        params,
        stepBinding,
        z,
        sums,
        uFactors!,
        uPerms!,
        uSide.mids,
        out,
      ]),
      groups: (T) => [T, 1, 1],
    },
  ];
}
