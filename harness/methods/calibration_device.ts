/**
 * The `device` option of the calibrated methods that capture a float block's inputs (AWQ,
 * SmoothQuant): `cpu` runs the calibration forward window by window on the CPU backend's kernels
 * (the reference numbers); `webgpu` runs the whole block on a WebGPU device, all windows at
 * once, with the window kernels GPTQ's `device: webgpu` uses (`gptq_webgpu.ts`'s
 * `gpuWindowKernels`), and reads back the captures and the block's outputs once a layer. `QUANTBENCH_PROFILE=1` prints the seconds per phase
 * and layer on stderr on either device (`gptq_profile.ts`).
 *
 * @module
 */
import type { LlamaConfig } from "../../core/model.ts";
import { adapterUnavailable, getGpu } from "../../kernels/webgpu/device.ts";
import { GpuWindowInputs } from "../../kernels/webgpu/window_inputs.ts";
import type { WindowKernels } from "./calibration.ts";
import { gpuWindowKernels } from "./gptq_webgpu.ts";
import { GptqProfile, profileRequested } from "./gptq_profile.ts";

/** Values of the `device` option. */
export const CALIBRATION_DEVICES = ["cpu", "webgpu"] as const;

/** A value of the `device` option. */
export type CalibrationDevice = typeof CALIBRATION_DEVICES[number];

/** Thrown for a `device` option that names no device, or a device that is not there. */
export class CalibrationDeviceError extends Error {
  override name = "CalibrationDeviceError";
}

/** The `device` option of `method` (default `cpu`); throws on any other value. */
export function calibrationDevice(method: string, value: unknown): CalibrationDevice {
  const device = CALIBRATION_DEVICES.find((d) => d === (value ?? "cpu"));
  if (device === undefined) {
    throw new CalibrationDeviceError(
      `Method "${method}"'s device must be one of ${CALIBRATION_DEVICES.join(", ")}, got ` +
        JSON.stringify(value),
    );
  }
  return device;
}

/** Where a method's calibration runs, and its profile when `QUANTBENCH_PROFILE=1`. */
export interface CalibrationRun {
  device: CalibrationDevice;
  /** The forward's window kernels on the GPU; undefined on the CPU. */
  windows?: WindowKernels;
  /**
   * The same kernels for searches that re-run parts of a block and are timed as phases of their
   * own (their kernels' seconds are not added to the forward's phases).
   */
  searchWindows?: WindowKernels;
  profile?: GptqProfile;
}

/**
 * The calibration run of `method` on `device` for a model of `config`; throws
 * {@linkcode CalibrationDeviceError} when `webgpu` has no adapter.
 */
export async function calibrationRun(
  method: string,
  device: CalibrationDevice,
  config: LlamaConfig,
): Promise<CalibrationRun> {
  const profile = profileRequested() ? new GptqProfile(undefined, method) : undefined;
  if (device === "cpu") return { device, profile };
  const why = await adapterUnavailable();
  if (why !== undefined) {
    throw new CalibrationDeviceError(
      `Method "${method}" with device: webgpu needs a WebGPU adapter: ${why}`,
    );
  }
  return {
    device,
    // The forward's activations stay on the device between readers; the searches' inputs are
    // rescaled in place by the methods, so theirs go up each time.
    windows: gpuWindowKernels(config, profile, new GpuWindowInputs(await getGpu())),
    searchWindows: gpuWindowKernels(config),
    profile,
  };
}
