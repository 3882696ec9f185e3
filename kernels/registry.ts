/**
 * Registry of backends.
 *
 * @module
 */
import { Registry } from "../core/registry.ts";
import type { Backend } from "./backend.ts";
import { cpuBackend } from "./cpu/backend.ts";
import { webgpuBackend } from "./webgpu/backend.ts";

/** All known backends by name. */
export const backends = new Registry<Backend>("backend", [
  ["cpu", cpuBackend],
  ["webgpu", webgpuBackend],
]);
