import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { getGpu } from "./device.ts";
import { deviceChecked, DeviceStepError } from "./device_checked.ts";

const unavailable = await createWebGpuBackend().unavailable();

Deno.test({
  name: "webgpu: deviceChecked turns a refused command into an error naming the step",
  ignore: unavailable !== undefined,
  async fn() {
    const { device } = await getGpu();
    const label = { what: "the test step over 2 windows", advice: "use fewer windows" };
    // A clean step: its result.
    assert.equal(await deviceChecked(device, label, () => Promise.resolve(7)), 7);
    // A buffer WebGPU refuses (mappable for reading and storage at once): the step itself goes
    // on without an exception, which the check turns into one.
    const bad = deviceChecked(device, label, () => {
      const b = device.createBuffer({
        size: 16,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE,
      });
      b.destroy();
      return Promise.resolve(1);
    });
    await assert.rejects(bad, (e: Error) => {
      assert.ok(e instanceof DeviceStepError);
      assert.match(e.message, /^The GPU refused the test step over 2 windows: /);
      return true;
    });
    // The step's own exception, where the device saw nothing wrong; the scopes are popped.
    await assert.rejects(
      deviceChecked(device, label, () => Promise.reject(new RangeError("own"))),
      RangeError,
    );
    assert.equal(await device.popErrorScope().catch(() => "empty"), "empty");
  },
});
