import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { UnrepresentableValueError } from "./minifloat.ts";
import {
  NVFP4_BITS_PER_WEIGHT,
  nvfp4BitsPerWeight,
  nvfp4Decode,
  nvfp4Encode,
  nvfp4GlobalScale,
} from "./nvfp4.ts";

// Reference tensors from vLLM's ref_nvfp4_quant arithmetic in numpy float32 with ml_dtypes
// casts (cross-checked against the same recipe in torch, CPU and CUDA); see make_reference.py.
interface Nvfp4Case {
  name: string;
  input: string;
  global_scale: string;
  block_scales: string;
  data: string;
  decoded: string;
}
const fixture: { cases: Nvfp4Case[] } = JSON.parse(
  readFileSync(new URL("../../fixtures/formats/nvfp4.json", import.meta.url), "utf8"),
);

function bytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function hex(data: Uint8Array): string {
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
}

function floats(h: string): Float32Array {
  return new Float32Array(bytes(h).buffer);
}

Deno.test("NVFP4 tensors match the vLLM reference recipe bit for bit", () => {
  assert.ok(fixture.cases.length >= 7);
  for (const c of fixture.cases) {
    const input = floats(c.input);
    const encoded = nvfp4Encode(input);
    const globalScale = floats(c.global_scale)[0]!;
    assert.ok(Object.is(encoded.globalScale, globalScale), `${c.name}: global scale`);
    assert.equal(hex(encoded.blockScales), c.block_scales, `${c.name}: block scales`);
    assert.equal(hex(encoded.data), c.data, `${c.name}: data`);
    const decoded = nvfp4Decode({
      length: input.length,
      globalScale,
      blockScales: bytes(c.block_scales),
      data: bytes(c.data),
    });
    const want = floats(c.decoded);
    for (let i = 0; i < want.length; i++) {
      assert.ok(Object.is(decoded[i], want[i]), `${c.name}[${i}]: ${decoded[i]} vs ${want[i]}`);
    }
  }
});

Deno.test("NVFP4 bits per weight: 4.5 per element, plus the tensor scale for a given size", () => {
  assert.equal(NVFP4_BITS_PER_WEIGHT, 4.5);
  assert.equal(nvfp4BitsPerWeight(16), (64 + 8 + 32) / 16);
  assert.equal(nvfp4BitsPerWeight(4096), 4.5 + 32 / 4096);
  assert.equal(nvfp4BitsPerWeight(17), (68 + 16 + 32) / 17);
  assert.throws(() => nvfp4BitsPerWeight(0), RangeError);
});

Deno.test("NVFP4 global scale: 2688 / amax in float32, 1 for zeros, errors for the unscalable", () => {
  assert.equal(nvfp4GlobalScale(new Float32Array([-6, 1])), 448);
  assert.equal(nvfp4GlobalScale(new Float32Array(3)), 1);
  assert.throws(() => nvfp4GlobalScale(new Float32Array([1, NaN])), UnrepresentableValueError);
  assert.throws(() => nvfp4Encode(new Float32Array([Infinity])), UnrepresentableValueError);
  assert.throws(() => nvfp4GlobalScale(new Float32Array([1e-40])), UnrepresentableValueError);
  assert.throws(() => nvfp4Encode(new Float32Array([1]), 0), RangeError);
});
