/**
 * GPTQ's whole column loop on the device for an integer grid: for each block of columns, the
 * block's rows of `U` are copied out of the factor, the block is quantized by
 * `gptq_block_wgsl.ts` (codes, free groups' parameters, the block's errors) and the later
 * columns are updated by the `AᵀB` GEMM (`gptq_columns.ts`) — one submit per block and no read
 * back until the matrix is done, when the codes, parameters and per-row losses come back in one
 * copy.
 *
 * @module
 */
import { GpuGptqColumns } from "./gptq_columns.ts";
import {
  GptqBlockArgumentError,
  gptqBlockGroups,
  gptqBlockShader,
  gptqBlockUniform,
  gptqBlockUnsupported,
  gptqCodeStride,
  type GptqIntGrid,
} from "./gptq_block_wgsl.ts";
import type { Gpu } from "./device.ts";

/** What the column loop starts from. */
export interface GptqBlocksInput {
  /** The weights (`rows × cols`, row-major) in quantization order, as the loop starts on them. */
  w: Float64Array;
  /** `U`, the upper Cholesky factor of `H⁻¹` (`cols × cols`), quantization order. */
  u: Float64Array | Float32Array;
  rows: number;
  cols: number;
  /** The original column of each quantization position (act_order), or undefined. */
  perm?: readonly number[];
  /** Columns per group, by original column; `cols` for one group a row. */
  groupSize: number;
  /** Columns per block. */
  blockSize: number;
  /**
   * The parameters fixed before the loop (`rows × groups` scales and zero points; per channel,
   * per tensor and static groups), or zeros where free groups are fitted in the loop.
   */
  scales: Float32Array;
  zeros: Uint8Array;
}

/** What the loop gives: codes by original column, the parameters, `Σ (w − q)² / U_ii² / 2`. */
export interface GptqBlocksResult {
  codes: Uint8Array;
  scales: Float32Array;
  zeros: Uint8Array;
  loss: number;
}

/**
 * Runs the column loop of `input` on the integer grid `grid` (its `block` at least the block
 * size) on the device (default the shared one).
 */
export async function gptqBlocksWebGpu(
  input: GptqBlocksInput,
  grid: GptqIntGrid,
  gpu?: Gpu,
): Promise<GptqBlocksResult> {
  const { rows, cols, groupSize, blockSize } = input;
  const groups = Math.ceil(cols / groupSize);
  const why = gptqBlockUnsupported(grid);
  if (
    why !== undefined || blockSize > grid.block || input.u.length !== cols * cols ||
    input.scales.length !== rows * groups || input.zeros.length !== rows * groups ||
    (input.perm !== undefined && input.perm.length !== cols)
  ) {
    throw new GptqBlockArgumentError(
      `GPTQ's device loop cannot take a ${rows} × ${cols} matrix with blocks of ${blockSize}, ` +
        `groups of ${groupSize}, ${input.scales.length} scales and ${input.perm?.length} ` +
        `permuted columns on this grid${why === undefined ? "" : ` (${why})`}`,
    );
  }
  const columns = await GpuGptqColumns.create(input.w, rows, cols, blockSize, gpu);
  try {
    const k = columns.kernels;
    const { device } = k;
    columns.setFactor(input.u);
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const perm = k.buffer(cols * 4, storage);
    device.queue.writeBuffer(
      perm,
      0,
      input.perm ? Uint32Array.from(input.perm) : Uint32Array.from({ length: cols }, (_, i) => i),
    );
    const words = new Uint32Array(2 * rows * groups);
    const scaleBits = new Uint32Array(input.scales.buffer, input.scales.byteOffset, rows * groups);
    for (let i = 0; i < rows * groups; i++) {
      words[2 * i] = scaleBits[i]!;
      words[2 * i + 1] = input.zeros[i]!;
    }
    const params = k.buffer(words.byteLength, storage);
    device.queue.writeBuffer(params, 0, words);
    const stride = gptqCodeStride(cols);
    const codes = k.buffer(rows * stride * 4, storage);
    const loss = k.buffer(Math.max(16, rows * 4), storage);
    const uniform = k.buffer(32, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    const pipeline = await k.pipeline("urrrwwww", gptqBlockShader(grid));
    const { wt, hinv, err } = columns.buffers;
    const bind = device.createBindGroup({
      layout: k.layout("urrrwwww"),
      entries: [uniform, wt, hinv, perm, params, codes, err, loss].map((buffer, binding) => ({
        binding,
        resource: { buffer },
      })),
    });
    for (let i1 = 0; i1 < cols; i1 += blockSize) {
      const i2 = Math.min(cols, i1 + blockSize);
      const p = { rows, cols, i1, count: i2 - i1, groupSize, codeStride: stride };
      device.queue.writeBuffer(uniform, 0, gptqBlockUniform(p, grid));
      const enc = device.createCommandEncoder();
      columns.encodeFactorRows(enc, i1, i2);
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(...gptqBlockGroups(rows));
      pass.end();
      columns.encodeUpdate(enc, i1, i2);
      device.queue.submit([enc.finish()]);
    }
    // One read back: codes, then parameters, then losses.
    const sizes = [codes.size, params.size, loss.size];
    const staging = device.createBuffer({
      size: sizes[0]! + sizes[1]! + sizes[2]!,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(codes, 0, staging, 0, sizes[0]!);
    enc.copyBufferToBuffer(params, 0, staging, sizes[0]!, sizes[1]!);
    enc.copyBufferToBuffer(loss, 0, staging, sizes[0]! + sizes[1]!, sizes[2]!);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const mapped = staging.getMappedRange();
    const packed = new Uint8Array(mapped, 0, rows * stride * 4);
    const out: GptqBlocksResult = {
      codes: new Uint8Array(rows * cols),
      scales: new Float32Array(rows * groups),
      zeros: new Uint8Array(rows * groups),
      loss: 0,
    };
    for (let r = 0; r < rows; r++) {
      out.codes.set(packed.subarray(r * stride * 4, r * stride * 4 + cols), r * cols);
    }
    const got = new Uint32Array(mapped, sizes[0]!, 2 * rows * groups);
    const outBits = new Uint32Array(out.scales.buffer);
    for (let i = 0; i < rows * groups; i++) {
      outBits[i] = got[2 * i]!;
      out.zeros[i] = got[2 * i + 1]!;
    }
    const losses = new Float32Array(mapped, sizes[0]! + sizes[1]!, rows);
    for (const l of losses) out.loss += l;
    staging.unmap();
    staging.destroy();
    return out;
  } finally {
    columns.destroy();
  }
}
