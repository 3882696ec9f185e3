import assert from "node:assert/strict";
import { elementFormats, type FormatSettings } from "./registry.ts";

function settings(group = 0, options: Record<string, unknown> = {}, symmetric = true) {
  return { group, symmetric, options } satisfies FormatSettings;
}

Deno.test("registry: every format of issue 5 is a weight format of the right kind", () => {
  const kinds: Record<string, string> = {
    f32: "float",
    native: "float",
    int8: "int",
    int4: "int",
    int3: "int",
    int2: "int",
  };
  const coded = [
    ["f16", "f16"],
    ["bf16", "bf16"],
    ["mxfp8", "mxfp8_e4m3"],
    ["mxfp8_e5m2", "mxfp8_e5m2"],
    ["mxfp6", "mxfp6_e2m3"],
    ["mxfp6_e3m2", "mxfp6_e3m2"],
    ["mxfp4", "mxfp4"],
    ["mxint8", "mxint8"],
    ["nvfp4", "nvfp4"],
    ["gguf_mxfp4", "gguf_mxfp4"],
    ...["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]
      .map((n) => [n, n]),
    ["iq4_nl", "iq4_nl"],
  ];
  for (const [name, codec] of coded) {
    const format = elementFormats.get(name!);
    assert.equal(format.kind, "coded", name);
    if (format.kind === "coded") assert.equal(format.codec, codec);
  }
  for (const name of ["fp8", "fp8_e5m2", "fp6_e2m3", "fp6_e3m2", "fp4"]) kinds[name] = "coded";
  for (const [name, kind] of Object.entries(kinds)) {
    assert.equal(elementFormats.get(name).kind, kind, name);
  }
  // No count: a new format module's element formats join the registry without editing this.
});

Deno.test("registry: bits per weight of the block formats are the specifications' figures", () => {
  // ggml-common.h block sizes (bytes per 32 or 256 weights) and the OCP MX / NVFP4 layouts, for
  // rows of 4096 columns (whole blocks, so no padding).
  const expected: Record<string, number> = {
    q4_0: 18 * 8 / 32, // 4.5
    q4_1: 20 * 8 / 32, // 5
    q5_0: 22 * 8 / 32, // 5.5
    q5_1: 24 * 8 / 32, // 6
    q8_0: 34 * 8 / 32, // 8.5
    q2_0: 18 * 8 / 64, // 2.25
    q2_k: 84 * 8 / 256, // 2.625
    q3_k: 110 * 8 / 256, // 3.4375
    q4_k: 144 * 8 / 256, // 4.5
    q5_k: 176 * 8 / 256, // 5.5
    q6_k: 210 * 8 / 256, // 6.5625
    iq4_nl: 4.5,
    gguf_mxfp4: 4.25,
    mxfp8: 8.25,
    mxfp8_e5m2: 8.25,
    mxfp6: 6.25,
    mxfp6_e3m2: 6.25,
    mxfp4: 4.25,
    mxint8: 8.25,
    f16: 16,
    bf16: 16,
    f32: 32,
  };
  for (const [name, bits] of Object.entries(expected)) {
    assert.equal(elementFormats.get(name).bitsPerWeight(settings(), 4096, 4096), bits, name);
  }
  // NVFP4: 4.5 plus the f32 tensor scale once per matrix.
  assert.equal(elementFormats.get("nvfp4").bitsPerWeight(settings(), 64, 64), 4.5 + 32 / 4096);
  // Padding: a 64-column row of a K-quant fills one 256-weight super-block (144 bytes).
  assert.equal(elementFormats.get("q4_k").bitsPerWeight(settings(), 1, 64), 144 * 8 / 64);
  // 172 columns of MX take 6 blocks of 32 (17 bytes each for MXFP4).
  assert.equal(elementFormats.get("mxfp4").bitsPerWeight(settings(), 1, 172), 6 * 17 * 8 / 172);
});

Deno.test("registry: int and scaled-minifloat bits count the scale dtype and granularity", () => {
  const int4 = elementFormats.get("int4");
  assert.equal(int4.bitsPerWeight(settings(128), 1, 4096), 4.125);
  assert.equal(int4.bitsPerWeight(settings(128, { scale_dtype: "bf16" }), 1, 4096), 4.125);
  assert.equal(int4.bitsPerWeight(settings(128, { scale_dtype: "f32" }), 1, 4096), 4.25);
  assert.equal(
    int4.bitsPerWeight(settings(128, { scale_dtype: "f32" }, false), 1, 4096),
    4 + 36 / 128,
  );
  // Per tensor: one f16 scale (and one 8-bit zero point) for 4 × 64 weights.
  assert.equal(elementFormats.get("int8").bitsPerWeight(settings(-1), 4, 64), 8 + 16 / 256);
  assert.equal(
    elementFormats.get("int8").bitsPerWeight(settings(-1, {}, false), 4, 64),
    8 + 24 / 256,
  );
  const fp8 = elementFormats.get("fp8");
  assert.equal(fp8.bitsPerWeight(settings(), 8, 4096), 8 + 32 / 4096);
  assert.equal(fp8.bitsPerWeight(settings(128, { scale_dtype: "bf16" }), 8, 4096), 8.125);
  assert.equal(fp8.bitsPerWeight(settings(-1), 8, 4096), 8 + 32 / (8 * 4096));
  // FP6 codes pack four to three bytes; FP4 two to a byte.
  assert.equal(elementFormats.get("fp6_e3m2").bitsPerWeight(settings(32), 1, 4096), 6 + 32 / 32);
  assert.equal(
    elementFormats.get("fp4").bitsPerWeight(settings(64, { scale_dtype: "f16" }), 1, 64),
    4.25,
  );
});

Deno.test("registry: settings that contradict a format are reasons, not errors", () => {
  const reason = (name: string, s: FormatSettings) => elementFormats.get(name).unsupported(s);
  assert.match(reason("mxfp4", settings(64))!, /fixed block of 32 weights; group 64 contradicts/);
  assert.equal(reason("mxfp4", settings(32)), undefined);
  assert.match(reason("nvfp4", settings(32))!, /fixed block of 16 weights/);
  assert.equal(reason("nvfp4", settings(16)), undefined);
  assert.match(reason("q6_k", settings(128))!, /fixed block of 256 weights/);
  assert.match(reason("q8_0", settings(-1))!, /group -1 contradicts/);
  assert.match(reason("f16", settings(32))!, /group 32 does not apply/);
  assert.match(reason("q8_0", settings(0, {}, false))!, /no zero point or block minimum/);
  assert.equal(reason("q4_k", settings(0, {}, false)), undefined);
  assert.equal(reason("q4_0", settings(0, { scale_dtype: "f16" })), undefined);
  assert.match(reason("q4_0", settings(0, { scale_dtype: "bf16" }))!, /stores f16 block scales/);
  assert.match(reason("mxfp8", settings(0, { scale_dtype: "f32" }))!, /E8M0/);
  assert.match(reason("fp8", settings(-1, { scale_dtype: "bf16" }))!, /per-tensor scale as f32/);
  assert.match(reason("fp4", settings(0, {}, false))!, /no zero point/);
  assert.match(reason("int4", settings(0, { scale_dtype: "f8" }))!, /"f8" is not one of/);
  assert.equal(reason("int4", settings(-1, { scale_dtype: "f32" }, false)), undefined);
  assert.match(reason("f32", settings(128))!, /unquantized/);
});
