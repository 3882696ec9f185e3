/**
 * Entry point of the WebGPU perf run that imports no npm packages, so it runs on a machine with
 * no registry access (the GPU machine): `deno run -A kernels/webgpu/perf_main.ts [--rows N]
 * [--out DIR] [--formats a,b] [--quick] [--sweep] [--sweep-codebook] [--sweep-gemm
 * [--gemm-tilings A,B]] [--atb]`. `deno task perf --backend webgpu` runs the same code through
 * `main.ts`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runWebGpuPerf } from "./perf.ts";
import { parseGemmTiling } from "./gemm_wgsl.ts";

/** Parses perf flags and runs the benchmarks. */
export async function perfMain(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      rows: { type: "string" },
      out: { type: "string" },
      formats: { type: "string" },
      quick: { type: "boolean" },
      sweep: { type: "boolean" },
      "sweep-gemm": { type: "boolean" },
      "sweep-codebook": { type: "boolean" },
      "gemm-tilings": { type: "string" },
      atb: { type: "boolean" },
    },
    strict: true,
  });
  await runWebGpuPerf({
    rows: values.rows === undefined ? undefined : Number(values.rows),
    out: values.out,
    formats: values.formats?.split(","),
    quick: values.quick,
    sweep: values.sweep,
    sweepGemm: values["sweep-gemm"],
    sweepCodebook: values["sweep-codebook"],
    gemmTilings: values["gemm-tilings"]?.split(",").map(parseGemmTiling),
    atb: values.atb,
  });
}

if (import.meta.main) await perfMain(Deno.args);
