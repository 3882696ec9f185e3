/**
 * Runs the shared conformance suite against every registered backend that can run here, plus a
 * WebGPU backend whose storage bindings are capped at 4 KiB, so that weights are split into row
 * parts and forward passes into several token slices (one compute pass each).
 *
 * With `QUANTBENCH_REQUIRE_WEBGPU=1` (set by `.ci/run` once a Vulkan driver is installed), a
 * missing WebGPU adapter fails instead of skipping.
 *
 * @module
 */
import assert from "node:assert/strict";
import { backends } from "../kernels/registry.ts";
import { describeBackendConformance } from "./backend_conformance.ts";
import { createWebGpuBackend } from "../kernels/webgpu/backend.ts";

for (const name of backends.names()) await describeBackendConformance(backends.get(name));

await describeBackendConformance(
  createWebGpuBackend({ name: "webgpu-split", maxBinding: 4096 }),
  { ops: false, suite: false, maxSeqLen: 32 },
);

Deno.test({
  name: "a WebGPU adapter is present where CI installed one",
  ignore: Deno.env.get("QUANTBENCH_REQUIRE_WEBGPU") !== "1",
  async fn() {
    assert.equal(await backends.get("webgpu").unavailable(), undefined);
  },
});
