import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  FP4_E2M1,
  FP6_E2M3,
  FP6_E3M2,
  FP8_E4M3,
  FP8_E5M2,
  InvalidCodeError,
  type Minifloat,
  UnrepresentableValueError,
} from "./minifloat.ts";

// Reference vectors from ml_dtypes (cross-checked against torch); see make_reference.py.
interface ElementFixture {
  bits: number;
  max: number;
  decode: string;
  inputs: string;
  codes: string;
  codes_saturate: string;
}
const fixture: { formats: Record<string, ElementFixture> } = JSON.parse(
  readFileSync(new URL("../../fixtures/formats/minifloat.json", import.meta.url), "utf8"),
);

const CODECS: Minifloat[] = [FP8_E4M3, FP8_E5M2, FP6_E2M3, FP6_E3M2, FP4_E2M1];

function bytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function floats(hex: string): Float32Array {
  return new Float32Array(bytes(hex).buffer);
}

/** Equal as float32 values, -0 distinct from 0, any NaN equal to any NaN. */
function same(a: number, b: number): boolean {
  return (Number.isNaN(a) && Number.isNaN(b)) || Object.is(a, b);
}

function entry(codec: Minifloat): ElementFixture {
  const e = fixture.formats[codec.name];
  assert.ok(e, `fixture has no ${codec.name}`);
  return e;
}

for (const codec of CODECS) {
  Deno.test(`${codec.name}: every code decodes as ml_dtypes does`, () => {
    const want = floats(entry(codec).decode);
    assert.equal(want.length, 2 ** codec.bits);
    const codes = Uint8Array.from(want, (_, i) => i);
    const got = codec.decodeArray(codes);
    for (let c = 0; c < want.length; c++) {
      assert.ok(same(codec.decode(c), want[c]!), `code ${c}: ${codec.decode(c)} vs ${want[c]}`);
      assert.ok(same(got[c]!, want[c]!), `decodeArray code ${c}`);
    }
    assert.equal(codec.max, entry(codec).max);
  });

  for (const saturate of [false, true]) {
    Deno.test(`${codec.name}: encode matches ml_dtypes (saturate: ${saturate})`, () => {
      const e = entry(codec);
      const inputs = floats(e.inputs);
      const want = bytes(saturate ? e.codes_saturate : e.codes);
      const got = codec.encodeArray(inputs, { saturate });
      const bad: string[] = [];
      for (let i = 0; i < inputs.length; i++) {
        const ok = got[i] === want[i] ||
          (Number.isNaN(codec.decode(want[i]!)) && Number.isNaN(codec.decode(got[i]!)));
        if (!ok) bad.push(`${inputs[i]} -> ${got[i]} (want ${want[i]})`);
      }
      assert.deepEqual(bad.slice(0, 10), [], `${bad.length} of ${inputs.length} codes differ`);
    });
  }

  Deno.test(`${codec.name}: exact bits per weight`, () => {
    assert.equal(codec.bitsPerWeight, entry(codec).bits);
  });

  Deno.test(`${codec.name}: -0 keeps its sign, codes out of range throw`, () => {
    const signBit = 1 << (codec.bits - 1);
    assert.equal(codec.encode(-0), signBit);
    assert.equal(codec.encode(0), 0);
    assert.ok(Object.is(codec.decode(signBit), -0));
    assert.throws(() => codec.decode(2 ** codec.bits), InvalidCodeError);
    assert.throws(() => codec.decode(0.5), InvalidCodeError);
    if (codec.bits < 8) {
      assert.throws(() => codec.decodeArray(new Uint8Array([2 ** codec.bits])), InvalidCodeError);
    }
  });
}

Deno.test("OCP constants: maxima, smallest subnormals and special codes", () => {
  assert.deepEqual(CODECS.map((c) => c.max), [448, 57344, 7.5, 28, 6]);
  assert.deepEqual(CODECS.map((c) => c.minSubnormal), [2 ** -9, 2 ** -16, 0.125, 0.0625, 0.5]);
  assert.deepEqual(
    Array.from({ length: 8 }, (_, c) => FP4_E2M1.decode(c)),
    [0, 0.5, 1, 1.5, 2, 3, 4, 6],
  );
  assert.ok(Number.isNaN(FP8_E4M3.decode(0x7f)) && Number.isNaN(FP8_E4M3.decode(0xff)));
  assert.equal(FP8_E4M3.decode(0x7e), 448);
  assert.equal(FP8_E5M2.decode(0x7c), Infinity);
  assert.equal(FP8_E5M2.decode(0xfc), -Infinity);
});

Deno.test("overflow: E4M3 to NaN, E5M2 to inf, saturate to max, FP6/FP4 always saturate", () => {
  assert.ok(Number.isNaN(FP8_E4M3.decode(FP8_E4M3.encode(480))));
  assert.ok(Number.isNaN(FP8_E4M3.decode(FP8_E4M3.encode(-Infinity))));
  assert.equal(FP8_E4M3.encode(464), 0x7e); // tie between 448 and 480: even mantissa wins
  assert.equal(FP8_E4M3.encode(1e9, { saturate: true }), 0x7e);
  assert.equal(FP8_E4M3.encode(-Infinity, { saturate: true }), 0xfe);
  assert.equal(FP8_E5M2.encode(61440), 0x7c); // tie between 57344 and 65536: rounds to inf
  assert.equal(FP8_E5M2.encode(Infinity, { saturate: true }), 0x7b);
  assert.equal(FP6_E3M2.encode(-Infinity), 0x3f);
  assert.equal(FP4_E2M1.encode(7), 0x7);
});

Deno.test("NaN: canonical NaN codes where the format has NaN, a named error where not", () => {
  assert.equal(FP8_E4M3.encode(NaN), 0x7f);
  assert.equal(FP8_E5M2.encode(NaN), 0x7e);
  assert.equal(FP8_E4M3.encode(NaN, { saturate: true }), 0x7f);
  for (const codec of [FP6_E2M3, FP6_E3M2, FP4_E2M1]) {
    assert.throws(() => codec.encode(NaN), UnrepresentableValueError);
    assert.throws(() => codec.encodeArray(new Float32Array([1, NaN])), UnrepresentableValueError);
  }
});
