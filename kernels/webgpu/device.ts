/**
 * The process-wide WebGPU device: requested once with the adapter's largest buffer limits and the
 * optional features quantbench uses (`shader-f16`, `timestamp-query`).
 *
 * @module
 */

/** Thrown when no WebGPU adapter can be had. */
export class NoAdapterError extends Error {
  override name = "NoAdapterError";
}

/** What quantbench reports about the adapter a run used. */
export interface AdapterSummary {
  /** e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (LLVM 15.0.6, 256 bits)`. */
  description: string;
  vendor: string;
  architecture: string;
  isFallbackAdapter: boolean;
  features: string[];
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/** A device with the facts kernels need about it. */
export interface Gpu {
  device: GPUDevice;
  adapter: AdapterSummary;
  /** Whether `shader-f16` was enabled on the device. */
  f16: boolean;
  /** Whether `timestamp-query` was enabled on the device. */
  timestamps: boolean;
  /** Largest storage binding in bytes (weights larger than this are split by rows). */
  maxBinding: number;
}

let pending: Promise<Gpu> | undefined;

/** Why no adapter is available, or undefined when one is. */
export async function adapterUnavailable(): Promise<string | undefined> {
  try {
    await getGpu();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The shared device, requested on first use. Rejects with {@linkcode NoAdapterError}. */
export function getGpu(): Promise<Gpu> {
  pending ??= requestGpu();
  return pending;
}

async function requestGpu(): Promise<Gpu> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  if (!gpu) throw new NoAdapterError("WebGPU is not available in this runtime (navigator.gpu)");
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    throw new NoAdapterError(`WebGPU adapter request failed: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (!adapter) {
    throw new NoAdapterError(
      "No WebGPU adapter found (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)",
    );
  }
  const wanted: GPUFeatureName[] = ["shader-f16", "timestamp-query"];
  const features = wanted.filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    },
  });
  const info = adapter.info;
  return {
    device,
    adapter: {
      description: info.description || info.device || "unknown adapter",
      vendor: info.vendor,
      architecture: info.architecture,
      isFallbackAdapter: (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
      features: [...adapter.features].sort(),
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
    },
    f16: features.includes("shader-f16"),
    timestamps: features.includes("timestamp-query"),
    // Bindings must also fit a buffer; round down to the 256-byte offset alignment.
    maxBinding: Math.floor(Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize) / 256) * 256,
  };
}
