import assert from "node:assert/strict";
import type { RowCodec } from "../../core/coded.ts";
import { dense } from "../../core/model.ts";
import { Registry } from "../../core/registry.ts";
import {
  formatOf,
  formatOfCodec,
  ownerOfCodec,
  UnknownCodecError,
  weightFormats,
} from "./formats.ts";
import { codecRegistry, rowCodecs } from "./codecs.ts";
import { elementFormats, elementRegistry, type FormatSettings } from "./registry.ts";
import { fixedFormat } from "./element_format.ts";
import { codecRows, codecsByName, type WeightFormat } from "./format.ts";
import { boundOf, CODEC_PROPERTIES } from "./codec_conformance.ts";
import { checkRowBytes, encodeMatrix } from "./row_codecs.ts";
import { quantizeInt } from "./int.ts";
import { affineCodec } from "./affine_codec.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const [ROWS, COLS] = [3, 64];
const DATA = pseudoRandom(ROWS * COLS, 5);

Deno.test("formats: every codec belongs to exactly one format, int matrices to int", () => {
  const owned = new Map<string, string[]>();
  for (const name of rowCodecs.names()) {
    const owners = weightFormats.names().filter((f) => weightFormats.get(f).owns(name));
    assert.equal(owners.length, 1, `${name}: ${owners}`);
    owned.set(owners[0]!, [...owned.get(owners[0]!) ?? [], name]);
  }
  assert.ok(owned.get("ggml")?.includes("q4_k"));
  assert.ok(owned.get("mx")?.includes("mxint8"));
  assert.deepEqual(owned.get("nvfp4"), ["nvfp4"]);
  assert.equal(formatOfCodec(affineCodec(4, 32).name).name, "affine");
  assert.equal(formatOfCodec("fp8_e4m3-g128-bf16").name, "scaled_minifloat");
  const m = quantizeInt(DATA, ROWS, COLS, { bits: 4, group: 32, symmetric: true });
  assert.equal(formatOf(m).name, "int");
  assert.throws(() => formatOfCodec("q4_x"), UnknownCodecError);
});

Deno.test("formats: each says whether it has a GPU decoder and a GPTQ grid", () => {
  const has = (name: string) => {
    const f = weightFormats.get(name);
    return [f.gpu !== "none", f.grid !== "none"];
  };
  assert.deepEqual(has("int"), [true, true]);
  assert.deepEqual(has("scaled_minifloat"), [true, true]);
  assert.deepEqual(has("mx"), [true, true]);
  assert.deepEqual(has("nvfp4"), [true, true]);
  assert.deepEqual(has("ggml"), [true, false]);
  assert.deepEqual(has("affine"), [false, false]);
  assert.deepEqual(has("e8p"), [true, false]);
  assert.deepEqual(has("aqlm"), [true, false]);
  assert.deepEqual(has("vptq"), [true, false]);
  assert.deepEqual(has("quip"), [true, false]);
});

Deno.test("formats: ggml runs legacy blocks on the GPU and names the codecs it cannot", () => {
  const gpu = weightFormats.get("ggml").gpu;
  if (gpu === "none") throw new Error("ggml has a GPU decoder");
  const data = pseudoRandom(ROWS * 256, 6);
  const plan = (codec: string) => gpu(encodeMatrix(rowCodecs.get(codec), ROWS, 256, data));
  assert.equal(typeof plan("q4_0"), "object");
  assert.equal(plan("q4_k"), `no WGSL decoder for codec "q4_k"`);
  assert.equal(plan("iq4_nl"), `no WGSL decoder for codec "iq4_nl"`);
});

/**
 * A throwaway scalar format, as a contributor would write its module: 8-bit codes under one
 * power-of-two scale per row (`2^e`, `e` stored as a byte), so a row takes `1 + cols` bytes.
 */
const TOY_CODEC: RowCodec = {
  name: "toy_s8",
  blockSize: 1,
  rowBytes: (cols) => 1 + cols,
  bitsPerWeight: (cols) => (8 * (1 + cols)) / cols,
  tensorScale: () => 1,
  encodeRow(values, out) {
    checkRowBytes("toy_s8", out, 1 + values.length, values.length);
    const amax = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    // The smallest power of two that maps amax into ±127.
    const e = amax === 0 ? -128 : Math.max(-128, Math.min(127, Math.ceil(Math.log2(amax / 127))));
    out[0] = e + 128;
    for (let c = 0; c < values.length; c++) {
      out[1 + c] = Math.max(-127, Math.min(127, Math.round(values[c]! * 2 ** -e))) & 0xff;
    }
  },
  decodeRow(bytes, out) {
    checkRowBytes("toy_s8", bytes, 1 + out.length, out.length);
    const scale = 2 ** (bytes[0]! - 128);
    for (let c = 0; c < out.length; c++) out[c] = ((bytes[1 + c]! << 24) >> 24) * scale;
  },
};

/** The toy format's module: everything the project needs to know about it. */
const TOY_FORMAT: WeightFormat = {
  name: "toy",
  description: "8-bit codes under a power-of-two scale per row",
  codecs: [TOY_CODEC],
  elements: [
    fixedFormat("toy8", TOY_CODEC, 8, "8-bit codes + a power-of-two row scale", {
      minimum: false,
      scales: { words: "a power-of-two scale per row" },
    }),
  ],
  // amax > 127 · 2^(e-1), and the error is at most half a step, 2^(e-1).
  bounds: [{ pattern: /^toy_s8$/, bound: { rel: 1 / 127, scope: "row" } }],
  owns: (codec) => codec === "toy_s8",
  ...codecRows("toy", codecsByName([TOY_CODEC])),
  gpu: "none",
  grid: "none",
};

Deno.test("formats: a new scalar format is its module plus one registry line", () => {
  // Built as formats.ts, codecs.ts and registry.ts build theirs, with the toy's line added.
  const formats = new Registry<WeightFormat>("stored weight format", [
    ...weightFormats.names().map((name) => [name, weightFormats.get(name)] as const),
    ["toy", TOY_FORMAT],
  ]);
  const codecs = codecRegistry(formats);
  const elements = elementRegistry(formats);
  assert.equal(codecs.get("toy_s8"), TOY_CODEC);
  assert.deepEqual(codecs.names(), [...rowCodecs.names(), "toy_s8"].sort());
  assert.deepEqual(elements.names(), [...elementFormats.names(), "toy8"].sort());
  assert.ok(!rowCodecs.has("toy_s8") && !elementFormats.has("toy8"));

  // The suite's name: settings checks, bits per weight and round-to-nearest.
  const toy8 = elements.get("toy8");
  const settings = (group: number): FormatSettings => ({ group, symmetric: true, options: {} });
  assert.equal(toy8.bitsPerWeight(settings(0), ROWS, COLS), 8 * 65 / 64);
  assert.equal(
    toy8.unsupported(settings(32)),
    `format "toy8" stores every weight on its own; group 32 does not apply`,
  );
  const m = toy8.kind === "coded" ? toy8.quantize(settings(0), dense(ROWS, COLS, DATA)) : null;
  assert.ok(m?.kind === "coded" && m.codec === "toy_s8");

  // Decoding and storage size through the module that owns the codec.
  const module = ownerOfCodec(formats, m.codec);
  assert.equal(module, TOY_FORMAT);
  assert.equal(module.bits(m), toy8.bitsPerWeight(settings(0), ROWS, COLS) * ROWS * COLS);
  const row = new Float32Array(COLS);
  module.decodeRow(m, 1, row);
  const amax = DATA.subarray(COLS, 2 * COLS).reduce((a, v) => Math.max(a, Math.abs(v)), 0);
  row.forEach((v, c) => assert.ok(Math.abs(v - DATA[COLS + c]!) <= amax / 127, `${c}`));
  assert.throws(() => formatOfCodec("toy_s8"), UnknownCodecError);

  // The codec conformance table, with the bound the module declares.
  for (const check of Object.values(CODEC_PROPERTIES)) {
    check(TOY_CODEC, boundOf(TOY_FORMAT, TOY_CODEC.name));
  }
});
