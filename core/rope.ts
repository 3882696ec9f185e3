/**
 * RoPE inverse frequencies of a model, scaling included, so every backend rotates by the same
 * angles: `angle(pos, i) = pos · invFreq[i]` for the pair `i < headDim / 2`.
 *
 * @module
 */
import type { LlamaConfig, RopeScaling } from "./model.ts";

/**
 * `invFreq[i] = θ^(−2i/headDim)`, rescaled as `scaling` says. The `llama3` rule follows
 * Hugging Face's `_compute_llama3_parameters`: wavelengths `2π/f` shorter than
 * `originalMaxPositions / highFreqFactor` stay, longer than `originalMaxPositions / lowFreqFactor`
 * are divided by `factor`, and those between blend the two linearly in
 * `originalMaxPositions / wavelength`.
 */
export function ropeInverseFrequencies(
  config: Pick<LlamaConfig, "headDim" | "ropeTheta" | "ropeScaling">,
): Float64Array {
  const { headDim, ropeTheta } = config;
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(ropeTheta, (2 * i) / headDim);
  const s = config.ropeScaling;
  if (s !== undefined) applyScaling(inv, s);
  return inv;
}

function applyScaling(inv: Float64Array, s: RopeScaling): void {
  switch (s.type) {
    case "linear":
      for (let i = 0; i < inv.length; i++) inv[i]! /= s.factor;
      return;
    case "factors":
      for (let i = 0; i < inv.length; i++) inv[i]! /= s.factors[i] ?? 1;
      return;
    case "llama3": {
      const lowWavelength = s.originalMaxPositions / s.lowFreqFactor;
      const highWavelength = s.originalMaxPositions / s.highFreqFactor;
      for (let i = 0; i < inv.length; i++) {
        const f = inv[i]!;
        const wavelength = (2 * Math.PI) / f;
        if (wavelength < highWavelength) continue;
        if (wavelength > lowWavelength) {
          inv[i] = f / s.factor;
          continue;
        }
        const smooth = (s.originalMaxPositions / wavelength - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
  }
}

/**
 * llama.cpp's `rope_freqs` factors for a scaled model: frequency `i` is divided by `factors[i]`,
 * which reproduces {@linkcode ropeInverseFrequencies} for any scaling.
 */
export function ropeFrequencyFactors(
  config: Pick<LlamaConfig, "headDim" | "ropeTheta" | "ropeScaling">,
): Float32Array {
  const plain = ropeInverseFrequencies({ ...config, ropeScaling: undefined });
  const scaled = ropeInverseFrequencies(config);
  return Float32Array.from(plain, (f, i) => f / scaled[i]!);
}
