/**
 * The codebook formats in `deno task perf` (`perf.ts`): QuIP#'s E8P (`e8p12`, `-rvq3`, `-rvq4`),
 * every AQLM scheme suites name and the VPTQ ones (plus the release's `vptq-v8-k65536-256`), and
 * QuIP's `quip-int2`/`-int3`, as the backend runs them (`codebook_matmul.ts`, `quip_matmul.ts`:
 * every dispatch of the product, QuIP#'s Hadamard transforms and QuIP's rotations included).
 * Matrices have random codes (speed does not depend on them) and are uploaded from the host, one
 * `Kernels` per format and shape so their memory is freed after it. Decode rotates over copies of
 * at least 256 MiB, as the other formats' GEMV does; bytes are everything the format uploads
 * (codes, codebooks, scales, signs, norms, rotation factors and permutations). The decode of
 * QuIP# and QuIP gets a second row, `(product only)`, without their transforms on either side.
 *
 * @module
 */
import type { Gpu } from "./device.ts";
import { type Dispatch, encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";
import { packMatrix } from "./pack_matrix.ts";
import type { GemvTuning, PackedMatrix } from "./pack.ts";
import type { CodebookPerfFormat } from "../perf_codebook_formats.ts";
import type { GpuCodebookPlan } from "../formats/gpu_layout.ts";

/** One timing of {@linkcode codebookPerf}. */
export interface CodebookTiming {
  format: string;
  kernel: "gemv" | "gemm";
  T: number;
  N: number;
  K: number;
  ms: number;
  bytes: number;
}

/** What the perf run lends: its timer, activations and log. */
export interface CodebookPerfHost {
  gpu: Gpu;
  /** Activations for up to the largest `T × K` (f32). */
  x: GPUBuffer;
  /** `Timer.timeAuto` of `perf.ts`. */
  timeAuto(
    encode: (pass: GPUComputePassEncoder, i: number) => void,
    targetMs: number,
    minN: number,
  ): Promise<number>;
}

/** Knob settings of a timing, labelled; `kinds`: the only kernels the knobs change (else all). */
export interface CodebookVariant {
  tuning: GemvTuning;
  label: string;
  kinds?: readonly GpuCodebookPlan["kind"][];
}

/** Bytes decode rotates over. */
const ROTATE_BYTES = 256 * 2 ** 20;

/** Bytes a codebook matrix uploads: its plan's arrays and its parts (QuIP's codes). */
function planBytes(p: PackedMatrix): number {
  const plan = p.codebook;
  const arrays = plan?.kind === "quip"
    ? [plan.colScale, plan.u.factors, plan.u.perms, plan.v.factors, plan.v.perms]
    : Object.values(plan ?? {});
  return p.parts.reduce(
    (n, part) => n + part.codes.byteLength + part.scales.byteLength,
    arrays.reduce((n: number, v) => n + (ArrayBuffer.isView(v) ? v.byteLength : 0), 0),
  );
}

/**
 * Times each format at each `[N, K]` for each of `tokenRows` (1: the GEMV row, more: prefill),
 * with the knobs of `variant` (its label appended to the format's); shapes a format cannot take
 * (E8P needs Hadamard sizes) or that fall back to f32, and formats whose kernel the variant's
 * knobs do not change, are skipped with a log line.
 */
export async function codebookPerf(
  host: CodebookPerfHost,
  formats: readonly CodebookPerfFormat[],
  shapes: readonly [number, number][],
  tokenRows: readonly number[],
  log: (line: string) => void,
  variant: CodebookVariant = { tuning: {}, label: "" },
): Promise<CodebookTiming[]> {
  const out: CodebookTiming[] = [];
  for (const f of formats) {
    for (const [N, K] of shapes) {
      const m = f.make(N, K);
      const plain = m && packMatrix(m, host.gpu.maxBinding);
      const packed = plain && { ...plain, layout: { ...plain.layout, ...variant.tuning } };
      if (!packed?.codebook) {
        log(`${f.name} ${N}×${K}: not timed (${packed?.fallback ?? "no matrix of this shape"})`);
        continue;
      }
      if (variant.kinds && !variant.kinds.includes(packed.codebook.kind)) {
        log(`${f.name}${variant.label} ${N}×${K}: not timed (the knobs do not change its kernel)`);
        continue;
      }
      const bytes = planBytes(packed);
      for (const rowsT of tokenRows) {
        const k = new Kernels(host.gpu);
        try {
          const step = k.buffer(STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
          k.device.queue.writeBuffer(step, 0, Uint32Array.of(rowsT, 0, 0, 0));
          const copies = rowsT === 1
            ? Math.max(1, Math.min(32, Math.ceil(ROTATE_BYTES / bytes)))
            : 1;
          const sets: Dispatch[][] = [];
          try {
            for (let c = 0; c < copies; c++) {
              // A copy of the plan object is uploaded anew (uploads are kept per plan).
              const copy: PackedMatrix = { ...packed, codebook: { ...packed.codebook } };
              const out = k.storage(rowsT * N * 4);
              sets.push(await k.matmul(step, copy, k.upload(copy), host.x, out, {}));
            }
          } catch (e) {
            // A shape the kernels refuse (a `CodebookMatmulError`, a pipeline the device rejects).
            log(`${f.name} ${N}×${K}: not timed (${(e as Error).message})`);
            continue;
          }
          // QuIP#'s and QuIP's decode are also timed without their transforms (Hadamard;
          // rotations): the product alone.
          const parts: [string, Dispatch[][]][] = [["", sets]];
          const { kind } = packed.codebook;
          if ((kind === "e8p" || kind === "quip") && rowsT === 1 && variant.label === "") {
            parts.push([
              " (product only)",
              sets.map((set) => set.filter((d) => !/(transform|rotation)$/.test(d.label))),
            ]);
          }
          for (const [suffix, timed] of parts) {
            const ms = await host.timeAuto(
              (pass, i) => encodeDispatches(pass, timed[i % timed.length]!, rowsT, 0),
              rowsT === 1 ? 5 : 20,
              rowsT === 1 ? 20 : 3,
            );
            out.push({
              format: f.name + variant.label + suffix,
              kernel: rowsT === 1 ? "gemv" : "gemm",
              T: rowsT,
              N,
              K,
              ms,
              bytes,
            });
          }
        } finally {
          k.destroy();
        }
      }
    }
  }
  return out;
}

/**
 * Knob settings `--sweep` times for the codebook formats (the default first): codebooks in
 * workgroup memory or through the cache, steps of 1, 4 and 16 units (groups' or codewords' code
 * words, VPTQ columns) per thread, and 4, 16 and 32 lanes a row (E8P and AQLM; default 8).
 */
export const CODEBOOK_VARIANTS: readonly CodebookVariant[] = [
  { tuning: {}, label: " (default)" },
  { tuning: { codebookShared: true }, label: " shared" },
  { tuning: { codebookShared: false }, label: " cache" },
  { tuning: { codebookUnroll: 1 }, label: " unroll 1" },
  { tuning: { codebookUnroll: 4 }, label: " unroll 4" },
  { tuning: { codebookUnroll: 16 }, label: " unroll 16" },
  ...[4, 16, 32].map((lanes) => ({
    tuning: { codebookLanes: lanes },
    label: ` lanes ${lanes}`,
    kinds: ["e8p", "aqlm"] as const,
  })),
];

/** Formats the sweep times: the 2-bit schemes of each format and a small-codebook AQLM. */
export const CODEBOOK_SWEEP_FORMATS = [
  "e8p12",
  "aqlm_1x16",
  "aqlm_2x8",
  "aqlm_1x8_g4",
  "vptq-v4-k256-0",
];
