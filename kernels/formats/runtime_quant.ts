/**
 * Quantization applied while a model runs, not to its stored weights, as a suite format asks for
 * it with `activations:` and `kv_cache:`:
 *
 * - **Activations** (SmoothQuant's W8A8 and its FP8 variant): the input of every transformer
 *   linear is quantized per token, dynamically. Integer `int<b>`: SmoothQuant's
 *   `quantize_activation_per_token_absmax` — `scale = max(amax, 1e-5) / (2^(b−1) − 1)`, codes
 *   `round(x / scale)` (ties to even, the division in float32 as on float32 tensors). FP8 (`fp8` E4M3, `fp8_e5m2`): vLLM's dynamic per-token FP8,
 *   `scale = max(amax / elem_max, 1 / (elem_max · 512))`, codes the saturating cast of `x / scale`.
 *   The matmul then multiplies the dequantized values `code · scale` (the products an int8 GEMM
 *   would sum, up to float32 rounding).
 * - **KV cache** (KIVI, Liu et al. 2024): keys are quantized per channel over groups of `group`
 *   tokens, values per token over groups of `group` channels of one head, both asymmetric
 *   (`scale = (max − min) / (2^b − 1)`, `x ≈ code · scale + min`, scale and minimum held in f16 as
 *   KIVI's fp16 cache holds them); FP8 uses a symmetric scale `amax / elem_max` per group instead.
 *   The `residual` most recent tokens stay in full precision: a value is quantized once it is
 *   `residual` tokens old; keys are quantized a block of `residual` tokens at a time, when the
 *   block is full (without a residual window, a group at a time). A query at position `p` thus
 *   reads exactly what a token-by-token decode would hold at step `p`, so a prefill of many
 *   tokens scores like that decode.
 *
 * @module
 */
import type { RuntimeQuantization } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { roundHalfEven } from "./int.ts";
import { GGML_ACTIVATIONS } from "./ggml_activations.ts";
import { FP8_E4M3, FP8_E5M2, type Minifloat } from "./minifloat.ts";
import { scaledMinifloatScale } from "./scaled_minifloat.ts";

/** Residual window when a suite gives none: KIVI's `residual_length` default. */
export const DEFAULT_KV_RESIDUAL = 128;

/** A quantizer element: signed integers or a minifloat. */
type Element = { kind: "int"; bits: number } | { kind: "float"; minifloat: Minifloat };

const ELEMENTS: Readonly<Record<string, Element>> = {
  int8: { kind: "int", bits: 8 },
  int6: { kind: "int", bits: 6 },
  int4: { kind: "int", bits: 4 },
  int3: { kind: "int", bits: 3 },
  int2: { kind: "int", bits: 2 },
  fp8: { kind: "float", minifloat: FP8_E4M3 },
  fp8_e5m2: { kind: "float", minifloat: FP8_E5M2 },
};

/** Element formats activations and the KV cache can be quantized to. */
export const RUNTIME_FORMATS: readonly string[] = Object.keys(ELEMENTS);

/** Thrown when run-time quantization settings cannot be applied. */
export class RuntimeQuantizationError extends Error {
  override name = "RuntimeQuantizationError";
}

function element(name: string): Element {
  const found = ELEMENTS[name];
  if (found === undefined) {
    throw new RuntimeQuantizationError(
      `Run-time quantization to "${name}" is not supported; use one of ${
        RUNTIME_FORMATS.join(", ")
      }`,
    );
  }
  return found;
}

/** The run-time quantization a format asks for, or undefined when it asks for none. */
export function runtimeQuantization(format: FormatSpec): RuntimeQuantization | undefined {
  const { activations, kv_cache: kv } = format.options as {
    activations?: unknown;
    kv_cache?: { format?: unknown; group?: unknown; residual?: unknown };
  };
  const out: RuntimeQuantization = {};
  if (typeof activations === "string") out.activations = activations;
  if (kv !== undefined && typeof kv.format === "string") {
    out.kvCache = {
      format: kv.format,
      group: typeof kv.group === "number" ? kv.group : 0,
      residual: typeof kv.residual === "number" ? kv.residual : DEFAULT_KV_RESIDUAL,
    };
  }
  return out.activations === undefined && out.kvCache === undefined ? undefined : out;
}

/** Why the run-time quantization of `format` cannot be applied, or undefined when it can. */
export function runtimeUnsupported(format: FormatSpec): string | undefined {
  const runtime = runtimeQuantization(format);
  const known = RUNTIME_FORMATS.join(", ");
  if (
    runtime?.activations !== undefined && !(runtime.activations in ELEMENTS) &&
    runtime.activations !== GGML_ACTIVATIONS
  ) {
    return `activations "${runtime.activations}" cannot be quantized at run time; use one of ` +
      known;
  }
  const kv = runtime?.kvCache;
  if (kv === undefined) return undefined;
  if (!(kv.format in ELEMENTS)) {
    return `kv_cache format "${kv.format}" is not supported; use one of ${known}`;
  }
  if (!Number.isInteger(kv.residual) || kv.residual < 0) {
    return `kv_cache residual ${kv.residual} must be a non-negative integer`;
  }
  if (kv.group < 0) {
    return `kv_cache group ${kv.group} is not supported: keys and values are quantized in groups ` +
      `of tokens and channels (use 0 or a group size)`;
  }
  if (kv.group === 0 && kv.residual === 0) {
    return `kv_cache needs a group or a residual window: keys are quantized per channel over a ` +
      `group of tokens`;
  }
  if (kv.group > 0 && kv.residual % kv.group !== 0) {
    return `kv_cache residual ${kv.residual} must be a multiple of group ${kv.group} (keys are ` +
      `quantized a whole window of groups at a time, as KIVI does)`;
  }
  return undefined;
}

/** vLLM's smallest dynamic FP8 scale factor is `1 / (elem_max · 512)`. */
const FP8_MIN_SCALE_DIVISOR = 512;
const SATURATE = { saturate: true } as const;

/**
 * Per-token dynamic quantization of `x` (rows of `cols` values), as the module notes describe:
 * a new array of the dequantized values.
 */
export function quantizeActivations(x: Float32Array, cols: number, format: string): Float32Array {
  const e = element(format);
  const out = new Float32Array(x.length);
  for (let base = 0; base < x.length; base += cols) {
    let amax = 0;
    for (let i = base; i < base + cols; i++) amax = Math.max(amax, Math.abs(x[i]!));
    if (e.kind === "int") {
      const qmax = (1 << (e.bits - 1)) - 1;
      const scale = Math.fround(Math.max(amax, Math.fround(1e-5)) / qmax);
      for (let i = base; i < base + cols; i++) {
        // float32 division, as PyTorch's `x.div_(scale).round_()` on float32 tensors.
        const q = Math.min(qmax, Math.max(-qmax, roundHalfEven(Math.fround(x[i]! / scale))));
        out[i] = q * scale;
      }
    } else {
      const m = e.minifloat;
      const scale = Math.fround(Math.max(amax / m.max, 1 / (m.max * FP8_MIN_SCALE_DIVISOR)));
      for (let i = base; i < base + cols; i++) {
        out[i] = m.decode(m.encode(Math.fround(x[i]! / scale), SATURATE)) * scale;
      }
    }
  }
  return out;
}

/**
 * Quantizes one KV group — `count` values of `src` at `start`, `start + stride`, … — and writes
 * the dequantized values to the same places of `dst` (see the module notes for the recipe).
 */
export function quantizeKvGroup(
  src: Float32Array,
  dst: Float32Array,
  start: number,
  stride: number,
  count: number,
  format: string,
): void {
  const e = element(format);
  const end = start + count * stride;
  if (e.kind === "int") {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = start; i < end; i += stride) {
      lo = Math.min(lo, src[i]!);
      hi = Math.max(hi, src[i]!);
    }
    const maxq = (1 << e.bits) - 1;
    const scale = Math.f16round((hi - lo) / maxq);
    const min = Math.f16round(lo);
    for (let i = start; i < end; i += stride) {
      const q = scale === 0
        ? 0
        : Math.min(maxq, Math.max(0, roundHalfEven((src[i]! - min) / scale)));
      dst[i] = q * scale + min;
    }
    return;
  }
  const m = e.minifloat;
  let amax = 0;
  for (let i = start; i < end; i += stride) amax = Math.max(amax, Math.abs(src[i]!));
  const scale = scaledMinifloatScale(amax, m, "f32");
  for (let i = start; i < end; i += stride) {
    dst[i] = m.decode(m.encode(Math.fround(src[i]! / scale), SATURATE)) * scale;
  }
}

/**
 * Why a backend with run-time quantization `capabilities` (`Backend.runtimeQuantization`) cannot
 * run `format`, or undefined when it can (or the format asks for no run-time quantization).
 */
export function runtimeUnsupportedOn(
  format: FormatSpec,
  backend: string,
  capabilities: { activations: readonly string[]; kvCache: boolean } | undefined,
): string | undefined {
  const runtime = runtimeQuantization(format);
  if (runtime === undefined) return undefined;
  const reason = runtimeUnsupported(format);
  if (reason !== undefined) return reason;
  const activations = capabilities?.activations ?? [];
  if (runtime.activations !== undefined && !activations.includes(runtime.activations)) {
    return `backend "${backend}" does not quantize activations to ${runtime.activations} at ` +
      `run time (format "${format.id}" asks for it; ${
        activations.length ? `it quantizes them to ${activations.join(", ")}` : "it has none"
      })`;
  }
  if (runtime.kvCache !== undefined && !capabilities?.kvCache) {
    return `backend "${backend}" has no quantized KV cache (format "${format.id}" asks for a ` +
      `${runtime.kvCache.format} KV cache)`;
  }
  return undefined;
}
