/**
 * The matmul of the codebook formats on WebGPU — QuIP#'s E8P (`e8p_wgsl.ts`), AQLM
 * (`aqlm_wgsl.ts`) and VPTQ (`vptq_wgsl.ts`) — as dispatches over their parts uploaded as they are
 * stored (`PackedMatrix.codebook`, made by the format's `GpuCodebookPlan`), never a decoded copy:
 *
 * - AQLM: one kernel writing the output;
 * - E8P: the input's signs and Hadamard transform (`hadamard_wgsl.ts`; rows longer than workgroup
 *   memory holds in passes, `hadamard_wide_wgsl.ts`), the codes' product, and
 *   the output's Hadamard transform, which applies `sv` and places the rows (its `place` form);
 * - VPTQ: the permuted, normed input (`vptqPrepShader`), the column splits' partial sums, and the
 *   epilogue adding them and the norm's bias term (`codebook_epilogue_wgsl.ts`).
 *
 * Every kernel takes token rows from the pass's `Step` uniform; decoding (`T ≤ 4`) runs one
 * token row per thread, prefill {@linkcode PREFILL_TOKENS} at once, so each decoded weight serves
 * that many. Intermediate rows live in scratch buffers shared by the matrices of one `Kernels`
 * (dispatches of a pass run one after another), sized for as many token rows as the input buffer
 * holds. Codebooks of at most 8 KiB (AQLM 2x8, VPTQ k256) sit in workgroup memory, larger ones are
 * read through the cache (never AQLM 1x16's 65,536 codewords in workgroup memory); the sweeps'
 * `Layout.codebookShared` forces either where they fit (for E8P: the E81B grid of `rvq3`; its 256
 * patterns always sit there); `Layout.codebookUnroll` sets how much each thread takes per
 * step, and `Layout.codebookLanes` how many lanes share a row of E8P's and AQLM's kernels (decode
 * and prefill alike; workgroups of 256 then take `256 / lanes` rows): 8 unless set, and 8 stays
 * the default until the GPU sweep (`perf.ts`, `CODEBOOK_VARIANTS`) says otherwise.
 *
 * @module
 */
import type { GpuCodebookPlan } from "../formats/gpu_layout.ts";
import type { PackedMatrix } from "./pack.ts";
import { AQLM_LANES, aqlmCodebookWords, aqlmShader } from "./aqlm_wgsl.ts";
import { E8P_LANES, E8P_TABLE_WORDS, e8pShader, e8pSharedWords, e8pTable } from "./e8p_wgsl.ts";
import {
  VPTQ_GROUPS_PER_WORKGROUP,
  VPTQ_SLICES,
  vptqPrepGroups,
  vptqPrepShader,
  vptqShader,
} from "./vptq_wgsl.ts";
import { epilogueShader, rowsPerWorkgroup } from "./codebook_epilogue_wgsl.ts";
import { hadamardFactorData, hadamardShader } from "./hadamard_wgsl.ts";
import { wideHadamardPasses } from "./hadamard_wide_wgsl.ts";

/** Token rows per thread of the prefill kernels (decode: 1). */
export const PREFILL_TOKENS = 8;

/** Codebook bytes up to which they sit in workgroup memory unless `Layout.codebookShared` says. */
const SHARED_BY_DEFAULT = 8192;

/** Token rows up to which each thread takes one (as the GEMV's `GEMV_MAX_ROWS`). */
const DECODE_ROWS = 4;

/** Workgroups the VPTQ kernel aims for when it splits the columns. */
const VPTQ_TARGET_GROUPS = 512;

/** A kernel launch, as `kernels.ts` records them. */
export interface CodebookDispatch {
  label: string;
  pipeline(T: number): GPUComputePipeline;
  bindGroup: GPUBindGroup;
  groups(T: number): [number, number, number];
}

/** What the op needs of `Kernels` (`kernels.ts`, which calls it from `matmul`). */
export interface CodebookHost {
  readonly device: GPUDevice;
  layout(sig: string): GPUBindGroupLayout;
  pipeline(sig: string, code: string): Promise<GPUComputePipeline>;
  storage(data: ArrayBufferView | number): GPUBuffer;
  uniform(words: number[], floats?: number[]): GPUBuffer;
}

/** Output placement, as `Kernels.matmul` takes it. */
export interface CodebookMatmulOptions {
  xStride?: number;
  outOff?: number;
  outStride?: number;
  outPosStride?: number;
  accumulate?: boolean;
}

/** Thrown for a matrix or input the codebook kernels cannot take. */
export class CodebookMatmulError extends RangeError {
  override name = "CodebookMatmulError";
}

const uploads = new WeakMap<CodebookHost, WeakMap<GpuCodebookPlan, GPUBuffer[]>>();
const scratches = new WeakMap<CodebookHost, Map<string, GPUBuffer>>();

/** A plan's buffers on the device, uploaded once per host. */
export function uploaded(k: CodebookHost, plan: GpuCodebookPlan, make: () => ArrayBufferView[]) {
  let byPlan = uploads.get(k);
  if (!byPlan) uploads.set(k, byPlan = new WeakMap());
  let bufs = byPlan.get(plan);
  if (!bufs) byPlan.set(plan, bufs = make().map((d) => k.storage(d)));
  return bufs;
}

/** A shared scratch buffer `name` of at least `bytes` (a larger one replaces it for later users). */
export function scratch(k: CodebookHost, name: string, bytes: number): GPUBuffer {
  let byName = scratches.get(k);
  if (!byName) scratches.set(k, byName = new Map());
  const found = byName.get(name);
  if (found && found.size >= bytes) return found;
  const made = k.storage(bytes);
  byName.set(name, made);
  return made;
}

/** A bind group of signature `sig` over `buffers`, in binding order. */
export function bind(k: CodebookHost, sig: string, buffers: (GPUBuffer | GPUBufferBinding)[]) {
  return k.device.createBindGroup({
    layout: k.layout(sig),
    entries: buffers.map((b, binding) => ({
      binding,
      resource: b instanceof GPUBuffer ? { buffer: b } : b,
    })),
  });
}

/** Workgroups for `n` threads of 256, folded into two dimensions past 65535. */
function flatGroups(n: number): [number, number, number] {
  const wgs = Math.max(1, Math.ceil(n / 256));
  const x = Math.min(wgs, 65535);
  return [x, Math.ceil(wgs / x), 1];
}

const tokensFor = (T: number) => (T <= DECODE_ROWS ? 1 : PREFILL_TOKENS);

/**
 * The dispatches of `out (+)= W · x` for a codebook matrix (see the module notes), with the
 * placement of `Kernels.matmul`.
 */
export async function codebookMatmul(
  k: CodebookHost,
  step: GPUBuffer,
  m: PackedMatrix,
  x: GPUBuffer,
  out: GPUBuffer,
  o: CodebookMatmulOptions,
): Promise<CodebookDispatch[]> {
  const plan = m.codebook;
  if (!plan) throw new CodebookMatmulError(`Matrix ${m.rows}x${m.cols} has no codebook parts`);
  const xStride = o.xStride ?? m.cols;
  const maxT = Math.max(1, Math.floor(x.size / 4 / xStride));
  const params = (rows: number, splits = 1) =>
    k.uniform([
      rows,
      m.cols,
      xStride,
      o.outOff ?? 0,
      o.outStride ?? m.rows,
      o.outPosStride ?? 0,
      o.accumulate ? 1 : 0,
      splits,
    ]);
  const stepBinding = { buffer: step, size: 16 };
  // Unset, small codebooks (AQLM 2x8's 8 KiB, VPTQ k256's) go to workgroup memory: random
  // codeword reads there cost a bank access, through the cache a line each.
  const shared = (bytes: number) => m.layout.codebookShared ?? bytes <= SHARED_BY_DEFAULT;
  const unroll = m.layout.codebookUnroll;
  const lanes = m.layout.codebookLanes;
  const fits = (bytes: number) => bytes <= k.device.limits.maxComputeWorkgroupStorageSize;
  const label = `matmul ${m.rows}x${m.cols} ${plan.kind}`;
  const both = async (make: (tokens: number) => string, sig: string) => {
    const [one, many] = await Promise.all(
      [1, PREFILL_TOKENS].map((t) => k.pipeline(sig, make(t))),
    );
    return (T: number) => (tokensFor(T) === 1 ? one! : many!);
  };
  const epilogue = async (
    partial: GPUBuffer,
    tokenAdd: GPUBuffer | undefined,
    tokenParts: number,
    splits: number,
  ): Promise<CodebookDispatch> => {
    const pipe = await k.pipeline(
      "usrrw",
      epilogueShader({ tokenParts: tokenAdd === undefined ? 0 : tokenParts }),
    );
    return {
      label: `${label} epilogue`,
      pipeline: () => pipe,
      bindGroup: bind(k, "usrrw", [
        params(m.rows, splits),
        stepBinding,
        partial,
        tokenAdd ?? scratch(k, "empty", 16),
        out,
      ]),
      groups: (T) => flatGroups(T * m.rows),
    };
  };
  switch (plan.kind) {
    case "quip":
      // Its product needs the matrix's parts, which `Kernels.matmul` hands to `quipMatmul`.
      throw new CodebookMatmulError(
        `QuIP matrix ${m.rows}x${m.cols} runs through quipMatmul, not the codebook kernels`,
      );
    case "aqlm": {
      const [codes, codebook, scales] = uploaded(k, plan, () => [
        plan.codes,
        plan.codebook,
        plan.scales,
      ]);
      const onShared = shared(aqlmCodebookWords(plan) * 4) &&
        fits(aqlmCodebookWords(plan) * 4 + 1024);
      const pipeline = await both(
        (tokens) =>
          aqlmShader({ ...plan, cols: m.cols, xStride, tokens, shared: onShared, unroll, lanes }),
        "usrrrwr",
      );
      const rowsPerGroup = rowsPerWorkgroup(lanes ?? AQLM_LANES);
      return [{
        label,
        pipeline,
        bindGroup: bind(k, "usrrrwr", [
          params(m.rows),
          stepBinding,
          x,
          codes!,
          codebook!,
          out,
          scales!,
        ]),
        groups: (T) => [Math.ceil(m.rows / rowsPerGroup), Math.ceil(T / tokensFor(T)), 1],
      }];
    }
    case "e8p": {
      if (xStride !== m.cols) {
        throw new CodebookMatmulError(
          `E8P inputs are whole rows of ${m.cols}; an input stride of ${xStride} is not`,
        );
      }
      const [codes, second, su, sv, table, factorIn, factorOut, ones] = uploaded(k, plan, () => [
        plan.codes,
        plan.second,
        plan.su,
        plan.sv,
        e8pTable(plan.rvq),
        hadamardFactorData(m.cols),
        hadamardFactorData(m.rows),
        new Float32Array(m.rows).fill(1),
      ]);
      const maxBytes = k.device.limits.maxComputeWorkgroupStorageSize;
      const u = scratch(k, "e8p u", maxT * m.cols * 4);
      const z = scratch(k, "e8p z", maxT * m.rows * 4);
      const gridBytes = e8pSharedWords({ rvq: plan.rvq, shared: true }) * 4;
      const onShared = (m.layout.codebookShared ?? false) &&
        fits(gridBytes + E8P_TABLE_WORDS * 4 + 1024);
      // One row per workgroup: a thread per 16-value block of the butterflies' register rounds
      // (`radixButterflies`), within the limits.
      const threads = (n: number) =>
        Math.min(
          k.device.limits.maxComputeInvocationsPerWorkgroup,
          k.device.limits.maxComputeWorkgroupSizeX,
          1024,
          Math.max(64, 2 ** Math.ceil(Math.log2(n / 16))),
        );
      const [outOff, outStride, outPosStride] = [
        o.outOff ?? 0,
        o.outStride ?? m.rows,
        o.outPosStride ?? 0,
      ];
      const accumulate = o.accumulate ? 1 : 0;
      // A side whose row fits the device's workgroup memory is one dispatch; a longer one goes
      // through global memory in passes (`hadamard_wide_wgsl.ts`).
      const input = 4 * m.cols <= maxBytes
        ? [{
          label: `${label} input transform`,
          pipeline: await k.pipeline(
            "urwrrs",
            hadamardShader(m.cols, true, { step: true, maxBytes, workgroup: threads(m.cols) }),
          ),
          sig: "urwrrs",
          buffers: [k.uniform([0]), x, u, su!, factorIn!, stepBinding],
          groups: (T: number): [number, number, number] => [T, 1, 1],
        }]
        : await Promise.all(
          wideHadamardPasses(m.cols, true, { input: "source", output: "work" }).map(async (p) => ({
            label: `${label} input (${p.name}) transform`,
            pipeline: await k.pipeline(p.sig, p.code),
            sig: p.sig,
            buffers: [
              k.uniform([0, 0, m.cols, 0, 0, 0, 0, 0]),
              stepBinding,
              u,
              factorIn!,
              ...(p.sig.length > 4 ? [su!, x] : []),
            ],
            groups: (T: number): [number, number, number] => [p.groups, T, 1],
          })),
        );
      const output = 4 * m.rows <= maxBytes
        ? [{
          label: `${label} output transform`,
          pipeline: await k.pipeline(
            "urwrrsr",
            hadamardShader(m.rows, false, {
              step: true,
              place: true,
              maxBytes,
              workgroup: threads(m.rows),
            }),
          ),
          sig: "urwrrsr",
          buffers: [
            k.uniform([0, outOff, outStride, outPosStride, accumulate]),
            z,
            out,
            ones!,
            factorOut!,
            stepBinding,
            sv!,
          ],
          groups: (T: number): [number, number, number] => [T, 1, 1],
        }]
        : await Promise.all(
          wideHadamardPasses(m.rows, false, { input: "work", output: "target" }).map(async (
            p,
          ) => ({
            label: `${label} output (${p.name}) transform`,
            pipeline: await k.pipeline(p.sig, p.code),
            sig: p.sig,
            buffers: [
              k.uniform([0, 0, m.rows, outOff, outPosStride, outStride, accumulate, 0]),
              stepBinding,
              z,
              factorOut!,
              ...(p.sig.length > 4 ? [sv!, out] : []),
            ],
            groups: (T: number): [number, number, number] => [p.groups, T, 1],
          })),
        );
      const transform = (
        d: {
          label: string;
          pipeline: GPUComputePipeline;
          sig: string;
          buffers: (GPUBuffer | GPUBufferBinding)[];
          groups: CodebookDispatch["groups"];
        },
      ): CodebookDispatch => ({
        label: d.label,
        pipeline: () => d.pipeline,
        bindGroup: bind(k, d.sig, d.buffers),
        groups: d.groups,
      });
      const pipeline = await both(
        (tokens) => e8pShader({ ...plan, cols: m.cols, tokens, shared: onShared, unroll, lanes }),
        "usrrrwr",
      );
      const rowsPerGroup = rowsPerWorkgroup(lanes ?? E8P_LANES);
      return [
        ...input.map(transform),
        {
          label,
          pipeline,
          bindGroup: bind(k, "usrrrwr", [
            params(m.rows),
            stepBinding,
            u,
            codes!,
            table!,
            z,
            second!,
          ]),
          groups: (T) => [Math.ceil(m.rows / rowsPerGroup), Math.ceil(T / tokensFor(T)), 1],
        },
        ...output.map(transform),
      ];
    }
    case "vptq": {
      const side = new Uint32Array(3 * m.cols);
      side.set(plan.perm);
      side.set(new Uint32Array(plan.normScale.buffer, plan.normScale.byteOffset, m.cols), m.cols);
      side.set(new Uint32Array(plan.normBias.buffer, plan.normBias.byteOffset, m.cols), 2 * m.cols);
      const codebook = new Float32Array(plan.codebook.length + plan.outliers.length);
      codebook.set(plan.codebook);
      codebook.set(plan.outliers, plan.codebook.length);
      const [sideBuf, indices, cb] = uploaded(k, plan, () => [side, plan.indices, codebook]);
      const v = plan.vectorLen;
      const groupsX = Math.ceil(Math.ceil(m.rows / v) / VPTQ_GROUPS_PER_WORKGROUP);
      const quantized = m.cols - plan.outlierCols;
      const wanted = Math.max(
        1,
        Math.min(
          Math.ceil(VPTQ_TARGET_GROUPS / groupsX),
          Math.floor(quantized / (VPTQ_SLICES * 32)),
        ),
      );
      // The partial sums of all splits fit one binding.
      const limits = k.device.limits;
      const binding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
      const splits = Math.max(1, Math.min(wanted, Math.floor(binding / (maxT * m.rows * 4))));
      const xs = scratch(k, "vptq xs", maxT * m.cols * 4);
      const prepGroups = vptqPrepGroups(m.cols);
      const bsum = scratch(k, "vptq bias", maxT * prepGroups * 4);
      const partial = scratch(k, "vptq partial", splits * maxT * m.rows * 4);
      const mainFloats = plan.centroids * v;
      const resFloats = plan.resCentroids * v;
      const onShared = shared((mainFloats + resFloats) * 4) &&
        fits((mainFloats + resFloats + 256 * v) * 4);
      const prep = await k.pipeline("usrrww", vptqPrepShader(m.cols, plan.norm));
      const pipeline = await both((tokens) =>
        vptqShader({
          vectorLen: v,
          bits: Math.log2(plan.centroids),
          resBits: plan.resCentroids > 0 ? Math.log2(plan.resCentroids) : 0,
          resOffset: plan.resOffset,
          mainFloats,
          resFloats,
          rows: m.rows,
          cols: m.cols,
          outlierCols: plan.outlierCols,
          splits,
          tokens,
          shared: onShared,
          unroll,
        }), "usrrrw");
      return [
        {
          label: `${label} input`,
          pipeline: () => prep,
          bindGroup: bind(k, "usrrww", [params(m.rows), stepBinding, x, sideBuf!, xs, bsum]),
          groups: (T) => [prepGroups, T, 1],
        },
        {
          label,
          pipeline,
          bindGroup: bind(k, "usrrrw", [
            params(m.rows, splits),
            stepBinding,
            xs,
            indices!,
            cb!,
            partial,
          ]),
          groups: (T) => [groupsX, Math.ceil(T / tokensFor(T)), splits],
        },
        await epilogue(partial, plan.norm ? bsum : undefined, prepGroups, splits),
      ];
    }
  }
}
