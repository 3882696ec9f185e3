import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  e8m0Decode,
  MalformedBlocksError,
  MX_FORMATS,
  mxDecode,
  mxEncode,
  MXFP4,
  MXFP6_E2M3,
  MXFP8_E4M3,
  MXINT8,
  packCodes,
  unpackCodes,
} from "./mx.ts";

// Reference blocks from an independent numpy implementation of OCP MX v1.0 section 6.3 with
// ml_dtypes element casts (cross-checked against torchao's to_mx); see make_reference.py.
interface MxCase {
  name: string;
  input: string;
  scales: string;
  data: string;
  decoded: string;
}
const fixture: {
  formats: Record<string, { element_bits: number; emax: number; cases: MxCase[] }>;
} = JSON.parse(
  readFileSync(new URL("../../fixtures/formats/mx.json", import.meta.url), "utf8"),
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

function assertSameFloats(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    const ok = (Number.isNaN(got[i]!) && Number.isNaN(want[i]!)) || Object.is(got[i], want[i]);
    assert.ok(ok, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

for (const format of MX_FORMATS) {
  Deno.test(`${format.name}: blocks match the OCP MX reference bit for bit`, () => {
    const entry = fixture.formats[format.name];
    assert.ok(entry, `fixture has no ${format.name}`);
    assert.equal(format.element.bits, entry.element_bits);
    assert.equal(format.element.emax, entry.emax);
    assert.ok(entry.cases.length >= 8);
    for (const c of entry.cases) {
      const input = floats(c.input);
      const blocks = mxEncode(format, input);
      assert.equal(hex(blocks.scales), c.scales, `${c.name}: scales`);
      assert.equal(hex(blocks.data), c.data, `${c.name}: data`);
      const reference = { length: input.length, scales: bytes(c.scales), data: bytes(c.data) };
      assertSameFloats(mxDecode(format, reference), floats(c.decoded), `${c.name}: decoded`);
    }
  });
}

Deno.test("MX bits per weight are exact", () => {
  assert.deepEqual(
    MX_FORMATS.map((f) => [f.name, f.bitsPerWeight]),
    [
      ["mxfp8_e4m3", 8.25],
      ["mxfp8_e5m2", 8.25],
      ["mxfp6_e2m3", 6.25],
      ["mxfp6_e3m2", 6.25],
      ["mxfp4", 4.25],
      ["mxint8", 8.25],
    ],
  );
});

Deno.test("E8M0 scales: bias 127, 0xFF is NaN; an all-zero block gets 2^-127", () => {
  assert.equal(e8m0Decode(127), 1);
  assert.equal(e8m0Decode(0), 2 ** -127);
  assert.equal(e8m0Decode(254), 2 ** 127);
  assert.ok(Number.isNaN(e8m0Decode(255)));
  assert.deepEqual(mxEncode(MXFP4, new Float32Array(32)).scales, new Uint8Array([0]));
  // max |v| = 6 = 1.5 * 2^2 and emax(E2M1) = 2: X = 0, byte 127.
  assert.deepEqual(mxEncode(MXFP4, new Float32Array([6, -1])).scales, new Uint8Array([127]));
});

Deno.test("MXINT8: k/64 elements, symmetric clamp, -128 decodes to -2", () => {
  const blocks = mxEncode(MXINT8, new Float32Array([1.999, -1.999, 0.5, 1 / 128]));
  assert.equal(blocks.scales[0], 127);
  assert.deepEqual(Array.from(blocks.data), [127, 256 - 127, 32, 0]); // 1/128 * 64 = 0.5 -> 0
  const decoded = mxDecode(MXINT8, {
    length: 1,
    scales: blocks.scales,
    data: new Uint8Array([128]),
  });
  assert.equal(decoded[0], -2);
});

Deno.test("packing: FP4 low nibble first, FP6 as an LSB-first bit stream", () => {
  assert.deepEqual(packCodes(new Uint8Array([0x1, 0x2, 0xf]), 4), new Uint8Array([0x21, 0x0f]));
  // 6-bit codes a,b,c,d -> bytes: a | b<<6, b>>2 | c<<4, c>>4 | d<<2
  const codes = new Uint8Array([0x3f, 0x01, 0x2a, 0x15]);
  const packed = packCodes(codes, 6);
  assert.deepEqual(packed, new Uint8Array([0x7f, 0xa0, 0x56]));
  assert.deepEqual(unpackCodes(packed, 6, 4), codes);
  assert.deepEqual(mxEncode(MXFP6_E2M3, new Float32Array(5)).data.length, 4);
});

Deno.test("mxDecode rejects arrays that do not fit the length", () => {
  const blocks = mxEncode(MXFP8_E4M3, new Float32Array(40));
  assert.throws(
    () => mxDecode(MXFP8_E4M3, { ...blocks, scales: blocks.scales.subarray(1) }),
    MalformedBlocksError,
  );
  assert.throws(
    () => mxDecode(MXFP8_E4M3, { ...blocks, data: blocks.data.subarray(1) }),
    MalformedBlocksError,
  );
});
