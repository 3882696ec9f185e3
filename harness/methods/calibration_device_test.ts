import assert from "node:assert/strict";
import { calibrationDevice, CalibrationDeviceError, calibrationRun } from "./calibration_device.ts";
import { adapterUnavailable } from "../../kernels/webgpu/device.ts";
import { loadModelPath } from "../models/load.ts";
import { join } from "node:path";
import { REPO_ROOT } from "../../core/shared.ts";

Deno.test("calibration device: cpu by default, webgpu by name, anything else refused", () => {
  assert.equal(calibrationDevice("awq", undefined), "cpu");
  assert.equal(calibrationDevice("awq", "webgpu"), "webgpu");
  assert.throws(() => calibrationDevice("awq", "cuda"), CalibrationDeviceError);
});

Deno.test({
  name: "calibration device: webgpu brings window kernels, cpu none",
  ignore: (await adapterUnavailable()) !== undefined,
  async fn() {
    const { config } = await loadModelPath(join(REPO_ROOT, "fixtures/models/mini"));
    assert.equal((await calibrationRun("awq", "cpu", config)).windows, undefined);
    const gpu = await calibrationRun("awq", "webgpu", config);
    assert.equal(typeof gpu.windows?.linear, "function");
    assert.notEqual(gpu.searchWindows, gpu.windows);
  },
});
