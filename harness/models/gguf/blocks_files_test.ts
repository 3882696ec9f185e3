import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../../core/shared.ts";
import { type GgufFile, openGguf } from "./reader.ts";
import { encodeTensor, type GgmlType } from "../../../kernels/formats/gguf/blocks.ts";

const STORIES = "models/stories260K/gguf";
const BLOCKS = "models/gguf-blocks";

/** Float32 tensors of a llama.cpp-written F32 file, by name. */
async function f32Tensors(path: string): Promise<Map<string, Float32Array>> {
  const file = await openGguf(path);
  try {
    const out = new Map<string, Float32Array>();
    for (const t of file.tensors) out.set(t.name, await file.readTensorF32(t));
    return out;
  } finally {
    file.close();
  }
}

/** Encodes every non-F32 tensor of `quantized` from `source` and compares bytes. */
async function assertEncodesLikeLlamaCpp(
  source: Map<string, Float32Array>,
  quantized: GgufFile,
  want: string[],
): Promise<void> {
  const types = new Set<string>();
  for (const t of quantized.tensors) {
    if (t.typeName === "F32") continue;
    types.add(t.typeName);
    const bytes = await quantized.readTensorBytes(t);
    const mine = encodeTensor(t.type, source.get(t.name)!);
    if (!bytes.every((b, i) => b === mine[i]) || bytes.length !== mine.length) {
      const at = bytes.findIndex((b, i) => b !== mine[i]);
      assert.fail(
        `${quantized.path} ${t.name} (${t.typeName}): byte ${at} (block ${
          Math.floor(at / t.type.typeSize)
        }) is ${mine[at]}, llama.cpp wrote ${bytes[at]}`,
      );
    }
  }
  assert.deepEqual([...types].sort(), want.sort(), quantized.path);
}

Deno.test({
  name: "encoding stories260K's F32 tensors reproduces llama.cpp's quantized files byte for byte",
  ignore: !hasShared(STORIES),
  fn: async () => {
    const source = await f32Tensors(sharedPath(STORIES, "stories260K-f32.gguf"));
    const files: [string, string[]][] = [
      ["q8_0", ["Q8_0"]],
      ["q4_0", ["Q4_0"]],
      ["q4_1", ["Q4_1"]],
      ["q5_0", ["Q5_0"]],
      ["q5_1", ["Q5_1"]],
      ["q2_0", ["Q2_0"]],
      ["iq4_nl", ["IQ4_NL"]],
      ["f16", ["F16"]],
      ["bf16", ["BF16"]],
      ["linear-q8_0", ["Q8_0"]],
      ["linear-q4_0", ["Q4_0"]],
      ["linear-q4_1", ["Q4_1"]],
      ["linear-q5_0", ["Q5_0"]],
      ["linear-q5_1", ["Q5_1"]],
      ["linear-iq4_nl", ["IQ4_NL"]],
      ["q4_k_m-mixed", ["Q5_0", "Q8_0"]],
    ];
    for (const [suffix, types] of files) {
      const file = await openGguf(sharedPath(STORIES, `stories260K-${suffix}.gguf`));
      try {
        await assertEncodesLikeLlamaCpp(source, file, types);
      } finally {
        file.close();
      }
    }
  },
});

Deno.test({
  name: "encoding rand256's F32 tensors reproduces llama.cpp's K-quant, IQ4_NL and Q8_0 files",
  ignore: !hasShared(BLOCKS),
  fn: async () => {
    const source = await f32Tensors(sharedPath(BLOCKS, "rand256-f32.gguf"));
    const files: [string, string][] = [
      ["q2_k", "Q2_K"],
      ["q3_k_s", "Q3_K"],
      ["q4_k_s", "Q4_K"],
      ["q5_k_s", "Q5_K"],
      ["q6_k", "Q6_K"],
      ["q8_0", "Q8_0"],
      ["q4_0", "Q4_0"],
      ["iq4_nl", "IQ4_NL"],
    ];
    for (const [suffix, type] of files) {
      const file = await openGguf(sharedPath(BLOCKS, `rand256-${suffix}.gguf`));
      try {
        await assertEncodesLikeLlamaCpp(source, file, [type]);
      } finally {
        file.close();
      }
    }
  },
});

/**
 * Levels per scale group: decoded values of one group must be lo + k·step for integers
 * 0 ≤ k < levels (uniform grids), which holds whatever the bit layout if it is decoded right.
 */
const UNIFORM_GRIDS: Record<string, [group: number, levels: number]> = {
  Q8_0: [32, 256],
  Q4_0: [32, 16],
  Q4_1: [32, 16],
  Q5_0: [32, 32],
  Q5_1: [32, 32],
  Q2_0: [64, 4],
  Q2_K: [16, 4],
  Q3_K: [16, 8],
  Q4_K: [32, 16],
  Q5_K: [32, 32],
  Q6_K: [16, 64],
};

function assertOnUniformGrid(name: string, type: GgmlType, y: Float32Array): void {
  const [group, levels] = UNIFORM_GRIDS[type.name]!;
  for (let g = 0; g < y.length; g += group) {
    const values = [...new Set(y.subarray(g, g + group))].sort((a, b) => a - b);
    if (values.length < 2) continue;
    const span = values[values.length - 1]! - values[0]!;
    // The grid step is the greatest common divisor of the gaps (Euclid, to float tolerance).
    const tolerance = span * 1e-5;
    let step = values[1]! - values[0]!;
    for (let i = 2; i < values.length; i++) {
      let a = step;
      let b = values[i]! - values[i - 1]!;
      while (b > tolerance) [a, b] = [b, a % b > b - tolerance ? 0 : a % b];
      step = a;
    }
    for (const v of values) {
      const k = (v - values[0]!) / step;
      const ok = Math.abs(k - Math.round(k)) < 1e-3 && Math.round(k) < levels;
      if (!ok) assert.fail(`${name} (${type.name}) group at ${g}: ${v} is level ${k}`);
    }
  }
}

/** IEEE binary16 by its definition (finite values), independent of numeric.ts. */
function halfFromBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  return sign * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
}

/** Each IQ4_NL value is the block's f16 scale times one of ggml's 16 kvalues_iq4nl. */
function assertOnIq4NlGrid(name: string, bytes: Uint8Array, y: Float32Array): void {
  const levels = new Set([
    -127,
    -104,
    -83,
    -65,
    -49,
    -35,
    -22,
    -10,
    1,
    13,
    25,
    38,
    53,
    69,
    89,
    113,
  ]);
  for (let b = 0; b < y.length / 32; b++) {
    const d = halfFromBits(bytes[18 * b]! | (bytes[18 * b + 1]! << 8));
    for (let j = 0; j < 32; j++) {
      const v = y[32 * b + j]! / d;
      if (d !== 0 && !levels.has(v)) assert.fail(`${name} block ${b}: ${y[32 * b + j]} / ${d}`);
    }
  }
}

/**
 * Relative RMS error (‖y - x‖ / ‖x‖) of llama.cpp's quantization of each tensor. A uniform
 * quantizer with step Δ adds noise Δ/√12; with block absmax ≈ 2.1σ (32 Gaussian values) and
 * Δ = absmax/2^(b-1) that is 0.005 for Q8_0 and 0.08 for Q4_0. The bounds sit about 1.5× above
 * the theory and what these files show, so a wrong scale or element order (error ≈ 1) fails.
 */
const RMS_BOUNDS: Record<string, number> = {
  F16: 0.0005,
  BF16: 0.004,
  Q8_0: 0.01,
  Q4_0: 0.15,
  Q4_1: 0.15,
  Q5_0: 0.08,
  Q5_1: 0.07,
  IQ4_NL: 0.13,
  Q2_0: 0.9,
  Q2_K: 0.45,
  Q3_K: 0.23,
  Q4_K: 0.11,
  Q5_K: 0.055,
  Q6_K: 0.03,
};

async function checkDecodedFile(dir: string, name: string, source: Map<string, Float32Array>) {
  const file = await openGguf(sharedPath(dir, name));
  try {
    for (const t of file.tensors) {
      const y = await file.readTensorF32(t);
      assert.equal(y.length, t.nElements);
      for (let i = 0; i < y.length; i++) {
        if (!Number.isFinite(y[i])) assert.fail(`${name} ${t.name}[${i}] = ${y[i]}`);
      }
      const x = source.get(t.name)!;
      if (t.typeName === "F32") {
        assert.deepEqual(y, x, `${name} ${t.name} is stored unquantized`);
        continue;
      }
      if (t.typeName === "IQ4_NL") assertOnIq4NlGrid(name, await file.readTensorBytes(t), y);
      else if (UNIFORM_GRIDS[t.typeName]) assertOnUniformGrid(`${name} ${t.name}`, t.type, y);
      let err = 0;
      let ref = 0;
      for (let i = 0; i < x.length; i++) {
        err += (y[i]! - x[i]!) ** 2;
        ref += x[i]! ** 2;
      }
      const relative = Math.sqrt(err / ref);
      assert.ok(
        relative < RMS_BOUNDS[t.typeName]!,
        `${name} ${t.name} (${t.typeName}): relative RMS error ${relative}`,
      );
    }
  } finally {
    file.close();
  }
}

Deno.test({
  name: "every tensor of every shared GGUF file decodes to finite values near the F32 original",
  ignore: !hasShared(STORIES) || !hasShared(BLOCKS),
  fn: async () => {
    const sets: [string, string][] = [[STORIES, "stories260K-f32.gguf"], [
      BLOCKS,
      "rand256-f32.gguf",
    ]];
    for (const [dir, source] of sets) {
      const x = await f32Tensors(sharedPath(dir, source));
      const names = [...Deno.readDirSync(sharedPath(dir))].map((e) => e.name)
        .filter((n) => n.endsWith(".gguf")).sort();
      assert.ok(names.length >= 9, `${dir}: ${names}`);
      for (const name of names) await checkDecodedFile(dir, name, x);
    }
  },
});
