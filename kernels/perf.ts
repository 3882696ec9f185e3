/**
 * `deno task perf`: quantized GEMV (decode, one activation row) and GEMM (prefill, many rows) for
 * every registered weight format ({@linkcode perfFormats}) on the CPU backend, with effective
 * bandwidth over the bytes the format stores and the ratio to a plain copy of as many bytes
 * measured in the same run. Output: a markdown table on stdout and, with `--out DIR`, `perf.csv`.
 *
 * @module
 */
import { join } from "node:path";
import { matmul } from "./cpu/ops.ts";
import { matrixBits } from "./formats/matrix.ts";
import { elementFormats } from "./formats/registry.ts";
import { perfFormats } from "./perf_formats.ts";
import { codebookPerfFormats } from "./perf_codebook_formats.ts";
import { dense, type Matrix } from "../core/model.ts";
import { UnknownNameError } from "../core/registry.ts";
import { markdownTable } from "../core/markdown_table.ts";
import { rowsToCsvTable } from "./perf_csv.ts";
import { writeFileAtomic } from "../core/atomic.ts";

/** Options of a perf run. */
export interface PerfOptions {
  /** Activation rows for GEMM (default 128). */
  rows?: number;
  /** Matrix side (default 1024: CPU-sized; GPU backends take LLM sizes). */
  size?: number;
  /** Directory for perf.csv. */
  out?: string;
  /** `webgpu` runs `kernels/webgpu/perf.ts` instead (default: the CPU kernels). */
  backend?: string;
  /** Only these formats (labels as in the table, e.g. `int4-g128`); default all. */
  formats?: string[];
  /** WebGPU only: also time variants of the int4-g128 integer-activation GEMV. */
  sweep?: boolean;
  /** WebGPU only: also time the prefill GEMM's tilings at the 1.1B Llama shapes. */
  sweepGemm?: boolean;
  /** WebGPU only: also time the codebook formats' kernel knobs at 8192². */
  sweepCodebook?: boolean;
  /** WebGPU only: also time GPTQ calibration's `AᵀB` kernel. */
  atb?: boolean;
}

/** One measurement. */
export interface PerfResult {
  backend: string;
  format: string;
  /**
   * `gemv-a8`: decode on run-time int8 activation codes (WebGPU); `quantize`: making them; `atb`:
   * GPTQ's calibration kernel (WebGPU, `--atb`).
   */
  kernel: "gemv" | "gemm" | "gemv-a8" | "quantize" | "atb";
  shape: string;
  median_ms: number;
  weight_bytes: number;
  gbps: number;
  copy_ratio: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time(fn: () => void, minMs = 200): number {
  fn(); // warm-up
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < 5 || (performance.now() - start < minMs && samples.length < 50)) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  return median(samples);
}

/** Runs the CPU micro-benchmarks and prints the table. */
export async function runPerf(options: PerfOptions = {}): Promise<PerfResult[]> {
  const known = perfFormats().map((f) => f.label);
  // QuIP#'s codecs and VPTQ's release scheme are no element formats (perf_codebook_formats.ts).
  const extra = codebookPerfFormats().filter((f) => !known.includes(f.name));
  known.push(...extra.map((f) => f.name));
  for (const name of options.formats ?? []) {
    if (!known.includes(name)) throw new UnknownNameError("perf format", name, known);
  }
  if (options.backend === "webgpu") {
    return (await import("./webgpu/perf.ts")).runWebGpuPerf(options);
  }
  const n = options.size ?? 1024;
  const rows = options.rows ?? 128;
  let s = 1;
  const w = Float32Array.from({ length: n * n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
  const weights = dense(n, n, w);
  const results: PerfResult[] = [];
  const wanted = (label: string) => !options.formats || options.formats.includes(label);
  const matrices: { format: string; make(): Matrix | undefined }[] = [
    ...perfFormats().filter((f) => wanted(f.label)).map(({ label, weights: name, settings }) => ({
      format: label,
      make(): Matrix {
        const element = elementFormats.get(name);
        return element.kind === "float"
          ? weights
          : element.kind === "coded" && element.timingMatrix
          ? element.timingMatrix(settings, n, n)
          : element.quantize(settings, weights);
      },
    })),
    ...extra.filter((f) => wanted(f.name)).map((f) => ({
      format: f.name,
      make: () => f.make(n, n),
    })),
  ];
  for (const { format, make } of matrices) {
    const m = make();
    if (m === undefined) {
      console.error(`perf: ${format} cannot take a ${n}×${n} matrix; skipped`);
      continue;
    }
    const bytes = Math.ceil(matrixBits(m) / 8);
    const src = new Uint8Array(bytes);
    const dst = new Uint8Array(bytes);
    const copyMs = time(() => dst.set(src));
    for (const [kernel, T] of [["gemv", 1], ["gemm", rows]] as const) {
      const x = w.subarray(0, T * n);
      const out = new Float32Array(T * n);
      const ms = time(() => matmul(out, x, m));
      results.push({
        backend: "cpu",
        format,
        kernel,
        shape: `${T}x${n}x${n}`,
        median_ms: ms,
        weight_bytes: bytes,
        gbps: bytes / (ms * 1e6),
        copy_ratio: copyMs / ms,
      });
    }
  }
  const table = markdownTable(
    ["backend", "format", "kernel", "shape", "median ms", "weight MB", "GB/s", "÷ copy"],
    results.map((r) => [
      r.backend,
      r.format,
      r.kernel,
      r.shape,
      r.median_ms.toFixed(3),
      (r.weight_bytes / 1e6).toFixed(3),
      r.gbps.toFixed(3),
      r.copy_ratio.toFixed(4),
    ]),
  );
  console.log(`adapter: cpu (${Deno.build.arch}, ${navigator.hardwareConcurrency} threads)\n`);
  console.log(table);
  if (options.out) await writeFileAtomic(join(options.out, "perf.csv"), rowsToCsvTable(results));
  return results;
}
