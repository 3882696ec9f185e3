import assert from "node:assert/strict";
import { UnknownNameError } from "../../../core/registry.ts";
import {
  decodeTensor,
  encodeTensor,
  f32ToBf16,
  GGML_TYPES,
  GgmlBlockLengthError,
  ggmlTypeById,
  ggmlTypeByName,
  GgmlUnsupportedTypeError,
  tensorByteSize,
} from "./blocks.ts";

Deno.test("type ids, block sizes and bytes per block match ggml.h and ggml-common.h", () => {
  // [id, name, elements per block, sizeof(block_*)] — sizes from ggml-common.h's static_asserts,
  // e.g. block_q4_K = 2 halves + K_SCALE_SIZE (12) + QK_K/2 = 144.
  const expected: [number, string, number, number][] = [
    [0, "F32", 1, 4],
    [1, "F16", 1, 2],
    [2, "Q4_0", 32, 2 + 16],
    [3, "Q4_1", 32, 4 + 16],
    [6, "Q5_0", 32, 2 + 4 + 16],
    [7, "Q5_1", 32, 4 + 4 + 16],
    [8, "Q8_0", 32, 2 + 32],
    [10, "Q2_K", 256, 4 + 16 + 64],
    [11, "Q3_K", 256, 2 + 32 + 64 + 12],
    [12, "Q4_K", 256, 4 + 12 + 128],
    [13, "Q5_K", 256, 4 + 12 + 32 + 128],
    [14, "Q6_K", 256, 2 + 128 + 64 + 16],
    [15, "Q8_K", 256, 4 + 256 + 32],
    [20, "IQ4_NL", 32, 2 + 16],
    [30, "BF16", 1, 2],
    [39, "MXFP4", 32, 1 + 16],
    [42, "Q2_0", 64, 2 + 16],
  ];
  for (const [id, name, blockSize, typeSize] of expected) {
    const type = ggmlTypeById(id);
    assert.ok(type, `type ${id}`);
    assert.deepEqual([type.name, type.blockSize, type.typeSize], [name, blockSize, typeSize]);
    assert.equal(ggmlTypeByName(name.toLowerCase()), type);
  }
  // Published bits per weight (llama.cpp README / PR #1684): Q4_K 4.5, Q6_K 6.5625, Q2_K 2.625.
  assert.equal(ggmlTypeByName("Q4_K").bitsPerWeight, 4.5);
  assert.equal(ggmlTypeByName("Q6_K").bitsPerWeight, 6.5625);
  assert.equal(ggmlTypeByName("Q2_K").bitsPerWeight, 2.625);
  assert.equal(ggmlTypeByName("Q3_K").bitsPerWeight, 3.4375);
  assert.equal(ggmlTypeByName("Q8_0").bitsPerWeight, 8.5);
  assert.equal(ggmlTypeByName("MXFP4").bitsPerWeight, 4.25);
  assert.equal(ggmlTypeById(4), undefined, "Q4_2 was removed from ggml");
  assert.equal(new Set(GGML_TYPES.map((t) => t.id)).size, GGML_TYPES.length);
});

Deno.test("unknown names, unsupported types and bad lengths raise named errors", () => {
  assert.throws(() => ggmlTypeByName("Q4_KK"), (e) => {
    assert.ok(e instanceof UnknownNameError);
    assert.equal(e.suggestion, "Q4_K");
    return true;
  });
  const iq2 = ggmlTypeByName("IQ2_XXS");
  assert.throws(() => decodeTensor(iq2, new Uint8Array(66), 256), GgmlUnsupportedTypeError);
  assert.throws(() => encodeTensor(iq2, new Float32Array(256)), /IQ2_XXS has no encoder/);
  const q4k = ggmlTypeByName("Q4_K");
  assert.equal(tensorByteSize(q4k, 512), 288);
  assert.throws(() => tensorByteSize(q4k, 300), /300 is not a multiple of the block size 256/);
  assert.throws(() => decodeTensor(q4k, new Uint8Array(143), 256), GgmlBlockLengthError);
  assert.throws(
    () => encodeTensor(ggmlTypeByName("Q8_0"), new Float32Array(33)),
    GgmlBlockLengthError,
  );
});

Deno.test("f32ToBf16 rounds to nearest even and keeps NaN quiet", () => {
  assert.equal(f32ToBf16(1), 0x3f80);
  assert.equal(f32ToBf16(Math.fround(1 + 2 ** -8)), 0x3f80, "tie to even");
  assert.equal(f32ToBf16(Math.fround(1 + 3 * 2 ** -8)), 0x3f82, "tie to even");
  assert.equal(f32ToBf16(Math.fround(1 + 2 ** -8 + 2 ** -20)), 0x3f81);
  assert.equal(f32ToBf16(NaN) & 0x7fc0, 0x7fc0);
});

/**
 * llama.cpp tests/test-quantize-fns.cpp: quantize 4096 values 0.1 + 2·cos(i), dequantize, and
 * require sqrt(Σ err²)/n below MAX_QUANTIZATION_TOTAL_ERROR (0.002), or 0.0075 for 2-bit Q2_K,
 * 0.0040 for Q3_K and 0.01 for the ternary-range Q2_0.
 */
Deno.test("quantize→dequantize error stays under llama.cpp's test-quantize-fns limits", () => {
  const n = 32 * 128;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = 0.1 + 2 * Math.fround(Math.cos(Math.fround(i)));
  const limits: Record<string, number> = { Q2_K: 0.0075, Q3_K: 0.004, Q2_0: 0.01 };
  const tested: string[] = [];
  for (const type of GGML_TYPES) {
    if (type.encode === undefined || type.decode === undefined) continue;
    const y = type.decode(type.encode(x), n);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += (x[i]! - y[i]!) ** 2;
    const error = Math.sqrt(sum) / n;
    const limit = limits[type.name] ?? 0.002;
    assert.ok(error < limit, `${type.name}: error ${error} ≥ ${limit}`);
    tested.push(type.name);
  }
  assert.deepEqual(tested, [
    "F32",
    "F16",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
    "IQ4_NL",
    "BF16",
    "MXFP4",
    "Q2_0",
  ]);
});
