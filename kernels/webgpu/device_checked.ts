/**
 * A device step whose WebGPU errors become exceptions. WebGPU reports a failed allocation or a
 * refused command to error scopes (or the device's `uncapturederror` event), not to the caller:
 * a buffer the device had no memory for is an invalid object, every submission that uses it is
 * dropped, and the step's outputs stay zero without a word — a calibration forward then
 * quantizes from zero Hessians. {@linkcode deviceChecked} runs a step inside out-of-memory and
 * validation scopes and throws {@linkcode DeviceStepError}, naming the step and what to do,
 * when either caught something.
 *
 * @module
 */

/** Thrown when the device ran out of memory, or refused a command, during a checked step. */
export class DeviceStepError extends Error {
  override name = "DeviceStepError";
}

/** What a checked step is, for its error. */
export interface DeviceStepLabel {
  /** The step and its shape, e.g. "the gated linear over 128 windows of 512 tokens". */
  what: string;
  /** What a user short of device memory can change (the options that shrink the step). */
  advice: string;
}

/**
 * `step()` with the device's out-of-memory and validation errors caught (see the module notes):
 * its result, or a {@linkcode DeviceStepError} naming `label.what` (and, for memory,
 * `label.advice`). A device error takes precedence over the step's own exception, which it
 * usually explains (a map of a buffer that could not be made); the latter is kept as `cause`.
 */
export async function deviceChecked<T>(
  device: GPUDevice,
  label: DeviceStepLabel | (() => DeviceStepLabel),
  step: () => Promise<T>,
): Promise<T> {
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let result: T | undefined;
  let failure: { error: unknown } | undefined;
  try {
    result = await step();
  } catch (error) {
    failure = { error };
  }
  const invalid = await device.popErrorScope();
  const memory = await device.popErrorScope();
  if (memory || invalid) {
    const { what, advice } = typeof label === "function" ? label() : label;
    const message = memory
      ? `Out of GPU memory in ${what} (${memory.message}): ${advice}`
      : `The GPU refused ${what}: ${invalid!.message}`;
    throw new DeviceStepError(message, failure && { cause: failure.error });
  }
  if (failure) throw failure.error;
  return result as T;
}
