/**
 * The deployment targets `recommend` knows, as data: which number formats each runs natively.
 * A recipe outside a target's list still runs there (decoded to a wider type), but is *emulated*:
 * its speed on another machine says nothing about that target.
 *
 * Format families (see {@linkcode formatFamily}): `float` (f32/f16/bf16), `int-weight-only`
 * (integer weights, float activations: dequantized in the kernel, which every target can do at
 * memory speed), `int8-dot` (int8 weights and int8 activations, an int8 dot product), `fp8`
 * (E4M3/E5M2 elements), `fp4` (NVFP4/MXFP4 elements), `f16-shader` (WebGPU f16 arithmetic).
 *
 * @module
 */

/** A kind of arithmetic a recipe needs to run natively. */
export type FormatFamily = "float" | "int-weight-only" | "int8-dot" | "fp8" | "fp4";

/** One deployment target. */
export interface HardwareTarget {
  id: string;
  name: string;
  /** Families the target runs natively. */
  native: readonly FormatFamily[];
  /** Where the target's results come from: the backend (and OS, when it matters) that measures it. */
  measuredBy: { backend: string; os?: RegExp };
}

/** The targets, by `--hardware` id. */
export const HARDWARE: Readonly<Record<string, HardwareTarget>> = {
  // NVIDIA H100 (Hopper, sm_90): FP8 E4M3/E5M2 tensor cores; INT8 tensor cores; no FP4.
  // Source: NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022), "FP8 Tensor Core".
  h100: {
    id: "h100",
    name: "NVIDIA H100 (Hopper)",
    native: ["float", "int-weight-only", "int8-dot", "fp8"],
    measuredBy: { backend: "cuda" },
  },
  // NVIDIA A100 (Ampere, sm_80): INT8/INT4 tensor cores, BF16/TF32; no FP8 (added in Ada/Hopper).
  // Source: NVIDIA A100 Tensor Core GPU Architecture whitepaper (2020).
  a100: {
    id: "a100",
    name: "NVIDIA A100 (Ampere)",
    native: ["float", "int-weight-only", "int8-dot"],
    measuredBy: { backend: "cuda" },
  },
  // NVIDIA L4 (Ada Lovelace, sm_89): 4th-generation tensor cores with FP8.
  // Source: NVIDIA Ada GPU Architecture whitepaper (2022), "FP8".
  l4: {
    id: "l4",
    name: "NVIDIA L4 (Ada)",
    native: ["float", "int-weight-only", "int8-dot", "fp8"],
    measuredBy: { backend: "cuda" },
  },
  // NVIDIA RTX 4090 (Ada Lovelace, sm_89): FP8 tensor cores as the L4.
  // Source: NVIDIA Ada GPU Architecture whitepaper (2022).
  rtx4090: {
    id: "rtx4090",
    name: "NVIDIA GeForce RTX 4090 (Ada)",
    native: ["float", "int-weight-only", "int8-dot", "fp8"],
    measuredBy: { backend: "cuda" },
  },
  // NVIDIA B200 (Blackwell, sm_100): 5th-generation tensor cores with NVFP4/MXFP4 and FP8.
  // Source: NVIDIA Blackwell Architecture Technical Brief (2024), "NVFP4".
  b200: {
    id: "b200",
    name: "NVIDIA B200 (Blackwell)",
    native: ["float", "int-weight-only", "int8-dot", "fp8", "fp4"],
    measuredBy: { backend: "cuda" },
  },
  // Apple M2 (ARMv8.6-A): NEON with the dot-product extension (SDOT/UDOT) for int8; no FP8/FP4.
  // Source: Arm Architecture Reference Manual, FEAT_DotProd; llama.cpp's ARM_FEATURE_DOTPROD path.
  m2: {
    id: "m2",
    name: "Apple M2 (NEON + dotprod)",
    native: ["float", "int-weight-only", "int8-dot"],
    measuredBy: { backend: "cpu", os: /^darwin-aarch64/ },
  },
  // x86-64 with AVX2 (and AVX-VNNI / AVX512-VNNI where present: VPDPBUSD int8 dot products).
  // Source: Intel 64 and IA-32 Architectures Software Developer's Manual, VPDPBUSD.
  "cpu-avx2": {
    id: "cpu-avx2",
    name: "x86-64 CPU (AVX2, VNNI)",
    native: ["float", "int-weight-only", "int8-dot"],
    measuredBy: { backend: "cpu", os: /x86_64/ },
  },
  // WebGPU: f32 everywhere, f16 arithmetic with the `shader-f16` feature; integers by unpacking
  // in the shader (weight-only); no int8 dot product, FP8 or FP4 type in WGSL.
  // Source: W3C WebGPU and WGSL specifications, feature "shader-f16"; dot4I8Packed is in WGSL
  // (packed_4x8_integer_dot_product) but not exposed by every adapter, so it is not counted.
  webgpu: {
    id: "webgpu",
    name: "WebGPU (shader-f16)",
    native: ["float", "int-weight-only"],
    measuredBy: { backend: "webgpu" },
  },
};

/**
 * The families a format id needs natively, e.g. `int4-g32` → `int-weight-only`,
 * `w8a8` / `int8-a8` → `int8-dot`, `fp8` → `fp8`, `nvfp4` → `fp4`, `f32` → `float`.
 */
export function formatFamily(format: string): FormatFamily {
  const f = format.toLowerCase();
  if (/nvfp4|mxfp4|fp4|e2m1/.test(f)) return "fp4";
  if (/fp8|e4m3|e5m2/.test(f)) return "fp8";
  if (/a8|w8a8|act/.test(f)) return "int8-dot";
  if (/^(f32|f16|bf16|fp16|fp32)/.test(f)) return "float";
  return "int-weight-only";
}

/** Whether `target` runs `format` natively. */
export function runsNatively(target: HardwareTarget, format: string): boolean {
  return target.native.includes(formatFamily(format));
}

/** Whether results of `backend` on `os` were measured on `target`. */
export function measuredOn(target: HardwareTarget, backend: string, os: string): boolean {
  return target.measuredBy.backend === backend &&
    (target.measuredBy.os === undefined || target.measuredBy.os.test(os));
}
