import assert from "node:assert/strict";
import { ropeFrequencyFactors, ropeInverseFrequencies } from "./rope.ts";

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-15 * Math.max(1, Math.abs(b));

Deno.test("rope: plain and linear frequencies are θ^(−2i/d), divided by the factor", () => {
  const plain = ropeInverseFrequencies({ headDim: 8, ropeTheta: 10000 });
  assert.deepEqual([...plain].map((f) => Number(f.toPrecision(12))), [1, 0.1, 0.01, 0.001]);
  const linear = ropeInverseFrequencies({
    headDim: 8,
    ropeTheta: 10000,
    ropeScaling: { type: "linear", factor: 4 },
  });
  linear.forEach((f, i) => assert.ok(close(f, plain[i]! / 4)));
});

Deno.test("rope: llama3 keeps short wavelengths, divides long ones, blends between", () => {
  // θ 10000, d 8: wavelengths 2π/f = 6.28, 62.8, 628, 6283. With 16 original positions,
  // low factor 1 and high factor 4 the bands are < 4 (kept), > 16 (÷ 8), else blended:
  // smooth = (16 / 6.28 − 1) / 3.
  const scaling = {
    type: "llama3" as const,
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositions: 16,
  };
  const f = ropeInverseFrequencies({ headDim: 8, ropeTheta: 10000, ropeScaling: scaling });
  const smooth = (16 / (2 * Math.PI) - 1) / 3;
  assert.ok(close(f[0]!, (1 - smooth) / 8 + smooth));
  assert.ok(close(f[1]!, 0.1 / 8));
  assert.ok(close(f[3]!, 0.001 / 8));
  // llama.cpp's rope_freqs factors divide the plain frequencies into the same values.
  const factors = ropeFrequencyFactors({ headDim: 8, ropeTheta: 10000, ropeScaling: scaling });
  const viaFactors = ropeInverseFrequencies({
    headDim: 8,
    ropeTheta: 10000,
    ropeScaling: { type: "factors", factors },
  });
  viaFactors.forEach((v, i) => assert.ok(Math.abs(v - f[i]!) <= 1e-7 * f[i]!));
});
