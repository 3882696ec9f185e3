/**
 * Which WebGPU tests run on the adapter at hand. On a GPU, or on Mesa's Vulkan software driver
 * (lavapipe, which `.ci/run` and the README's setup line install), all of them. On a slow software
 * adapter — llvmpipe reached through OpenGL, what a machine without a Vulkan driver offers, about
 * a hundred times slower than lavapipe on these kernels (a minute per case) — a representative
 * subset ({@linkcode SLOW_ADAPTER_SUBSET}: plain and block-coded matmul, the element-wise ops,
 * attention), with a message saying so, so that `deno task test` still tests
 * WebGPU there and ends in minutes. `QUANTBENCH_FULL_WEBGPU=1` runs everything anyway;
 * `QUANTBENCH_REQUIRE_WEBGPU=1` (CI) does too.
 *
 * @module
 */
import { getGpu } from "./device.ts";

/** Conformance cases (by name, after `webgpu…: `) a slow software adapter still runs. */
export const SLOW_ADAPTER_SUBSET: readonly RegExp[] = [
  /: matmul f32$/,
  /: matmul q4_0$/,
  /: rmsnorm$/,
  /: rope$/,
  /: swiglu$/,
  /: attention$/,
];

/**
 * Why only {@linkcode SLOW_ADAPTER_SUBSET} should run here, or undefined to run every WebGPU test
 * (also when there is no adapter: those tests are skipped by their own gate).
 */
export async function slowAdapterReason(): Promise<string | undefined> {
  const env = (name: string) => Deno.env.get(name) === "1";
  if (env("QUANTBENCH_FULL_WEBGPU") || env("QUANTBENCH_REQUIRE_WEBGPU")) return undefined;
  let adapter;
  try {
    adapter = (await getGpu()).adapter;
  } catch {
    return undefined;
  }
  const software = adapter.isFallbackAdapter ||
    /llvmpipe|softpipe|swiftshader/i.test(adapter.description);
  // wgpu's OpenGL backend offers no shader-f16; lavapipe (Vulkan) does.
  if (!software || adapter.features.includes("shader-f16")) return undefined;
  return `the adapter is ${adapter.description} through OpenGL, a slow software path; ` +
    `install lavapipe (apt-get install mesa-vulkan-drivers libvulkan1) or set ` +
    `QUANTBENCH_FULL_WEBGPU=1 to run all of them`;
}

/**
 * Runs `register` with `Deno.test` registering only the tests whose names `keep` accepts; the
 * others are registered as ignored, so the summary still counts them.
 */
export function registerOnly(keep: (name: string) => boolean, register: () => void): void {
  const test = Deno.test;
  const only = (...args: unknown[]) => {
    const [first] = args;
    if (typeof first === "object" && first !== null && args.length === 1) {
      const def = first as Deno.TestDefinition;
      return test({ ...def, ignore: def.ignore || !keep(def.name) });
    }
    return (test as (...a: unknown[]) => void)(...args);
  };
  (Deno as { test: unknown }).test = only;
  try {
    register();
  } finally {
    (Deno as { test: unknown }).test = test;
  }
}
