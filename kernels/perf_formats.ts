/**
 * The weight formats `deno task perf` times, on the CPU and WebGPU alike.
 *
 * @module
 */
import { elementFormats, type FormatSettings } from "./formats/registry.ts";

/**
 * The formats a perf run measures: every registered element format with its default settings,
 * plus groups of 128 and 32 for integer formats and of 128 for scaled minifloats (whose group is
 * free); fixed-block formats (MX, NVFP4, ggml) have one setting. Labels as suite ids (`int4-g32`).
 */
export function perfFormats(): { label: string; weights: string; settings: FormatSettings }[] {
  return elementFormats.names().flatMap((weights) => {
    const element = elementFormats.get(weights);
    const groups = element.kind === "int"
      ? [0, 128, 32]
      : element.kind === "coded" && element.block === undefined
      ? [0, 128]
      : [0];
    return groups.map((group) => ({
      label: weights + (group ? `-g${group}` : ""),
      weights,
      settings: { group, symmetric: true, options: {} },
    }));
  });
}
