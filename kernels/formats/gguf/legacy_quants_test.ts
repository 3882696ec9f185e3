import assert from "node:assert/strict";
import {
  decodeIq4Nl,
  decodeMxfp4,
  decodeQ2_0,
  decodeQ4_0,
  decodeQ4_1,
  decodeQ5_0,
  decodeQ5_1,
  decodeQ8_0,
  encodeIq4Nl,
  encodeMxfp4,
  encodeQ4_0,
  encodeQ8_0,
} from "./legacy_quants.ts";

// Hand-built blocks following ggml-common.h's structs; halves written as IEEE bit patterns:
// 0x3c00 = 1, 0x3800 = 0.5, 0xc000 = -2, 0x3400 = 0.25.

Deno.test("Q4_0: low nibbles are elements 0..15, high nibbles 16..31, y = (q - 8)·d", () => {
  const block = new Uint8Array(18);
  block.set([0x00, 0x38]); // d = 0.5
  for (let j = 0; j < 16; j++) block[2 + j] = j | ((15 - j) << 4);
  const y = decodeQ4_0(block, 32);
  for (let j = 0; j < 16; j++) {
    assert.equal(y[j], (j - 8) * 0.5);
    assert.equal(y[j + 16], (7 - j) * 0.5);
  }
});

Deno.test("Q4_1 and Q5_1 add the block minimum m", () => {
  const q41 = new Uint8Array(20);
  q41.set([0x00, 0x3c, 0x00, 0xc0]); // d = 1, m = -2
  for (let j = 0; j < 16; j++) q41[4 + j] = j | (j << 4);
  const y41 = decodeQ4_1(q41, 32);
  for (let j = 0; j < 16; j++) assert.deepEqual([y41[j], y41[j + 16]], [j - 2, j - 2]);

  const q51 = new Uint8Array(24);
  q51.set([0x00, 0x3c, 0x00, 0xc0, 0x00, 0x00, 0xff, 0xff]); // qh: fifth bit set for 16..31
  for (let j = 0; j < 16; j++) q51[8 + j] = j << 4;
  const y51 = decodeQ5_1(q51, 32);
  for (let j = 0; j < 16; j++) assert.deepEqual([y51[j], y51[j + 16]], [-2, j + 16 - 2]);
});

Deno.test("Q5_0: bit j of qh is element j's fifth bit, y = (q - 16)·d", () => {
  const block = new Uint8Array(22);
  block.set([0x00, 0x3c]);
  // qh = 0x0000ffff: elements 0..15 have the fifth bit; 16..31 do not.
  block.set([0xff, 0xff, 0x00, 0x00], 2);
  for (let j = 0; j < 16; j++) block[6 + j] = j | (j << 4);
  const y = decodeQ5_0(block, 32);
  for (let j = 0; j < 16; j++) assert.deepEqual([y[j], y[j + 16]], [j, j - 16]);
});

Deno.test("Q8_0 and Q2_0 decode signed bytes and 2-bit codes", () => {
  const q8 = new Uint8Array(34);
  q8.set([0x00, 0x34]); // d = 0.25
  for (let j = 0; j < 32; j++) q8[2 + j] = (j * 8 - 128) & 0xff;
  const y8 = decodeQ8_0(q8, 32);
  for (let j = 0; j < 32; j++) assert.equal(y8[j], (j * 8 - 128) * 0.25);

  const q2 = new Uint8Array(18);
  q2.set([0x00, 0xc0]); // d = -2
  for (let j = 0; j < 16; j++) q2[2 + j] = 0b11100100; // codes 0, 1, 2, 3 (low bits first)
  const y2 = decodeQ2_0(q2, 64);
  for (let j = 0; j < 64; j++) assert.equal(y2[j], ((j % 4) - 1) * -2);
});

Deno.test("IQ4_NL maps nibbles through kvalues_iq4nl", () => {
  const block = new Uint8Array(18);
  block.set([0x00, 0x38]); // d = 0.5
  for (let j = 0; j < 16; j++) block[2 + j] = j | ((15 - j) << 4);
  const table = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
  const y = decodeIq4Nl(block, 32);
  for (let j = 0; j < 16; j++) {
    assert.equal(y[j], table[j]! * 0.5);
    assert.equal(y[j + 16], table[15 - j]! * 0.5);
  }
});

/** OCP MX v1.0 E2M1: sign, 2 exponent bits (bias 1), 1 mantissa bit; exponent 0 is subnormal. */
function e2m1(code: number): number {
  const sign = code & 8 ? -1 : 1;
  const e = (code >> 1) & 3;
  const m = code & 1;
  return sign * (e === 0 ? m * 0.5 : 2 ** (e - 1) * (1 + m / 2));
}

Deno.test("MXFP4 decodes E2M1 codes times the E8M0 scale 2^(e-127), per the OCP MX spec", () => {
  for (const e of [127, 120, 130]) {
    const block = new Uint8Array(17);
    block[0] = e;
    for (let j = 0; j < 16; j++) block[1 + j] = j | ((15 - j) << 4);
    const y = decodeMxfp4(block, 32);
    // ggml's integer code table has no -0, so code 8 decodes to +0 (=== treats them alike).
    for (let j = 0; j < 16; j++) {
      assert.ok(y[j] === e2m1(j) * 2 ** (e - 127), `code ${j}`);
      assert.ok(y[j + 16] === e2m1(15 - j) * 2 ** (e - 127), `code ${15 - j}`);
    }
  }
});

Deno.test("MXFP4 encoding picks the exponent floor(log2 amax) - 2 and the nearest E2M1 value", () => {
  // amax 6 → exponent 2 - 2 = 0 (scale 1): every OCP E2M1 value is then exact.
  const values = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
  const x = new Float32Array(32);
  for (let j = 0; j < 16; j++) x[j] = values[j % 8]! * (j < 8 ? 1 : -1);
  for (let j = 16; j < 32; j++) x[j] = 1.2; // between 1 and 1.5: nearest is 1
  const bytes = encodeMxfp4(x);
  assert.equal(bytes[0], 127);
  const y = decodeMxfp4(bytes, 32);
  for (let j = 0; j < 16; j++) assert.ok(y[j] === x[j], `element ${j}: ${y[j]} vs ${x[j]}`);
  for (let j = 16; j < 32; j++) assert.equal(y[j], 1);
});

Deno.test("all-zero blocks encode to zero scales and decode to zeros", () => {
  const zeros = new Float32Array(32);
  assert.deepEqual(decodeQ8_0(encodeQ8_0(zeros), 32), zeros);
  // quantize_row_q4_0_ref computes d = 0/-8 = -0 (half 0x8000) and leaves code 8, the zero level.
  const q40 = encodeQ4_0(zeros);
  assert.deepEqual([...q40.subarray(0, 2)], [0x00, 0x80]);
  assert.deepEqual([...q40.subarray(2)], new Array(16).fill(0x88));
  assert.ok(decodeQ4_0(q40, 32).every((v) => v === 0));
  assert.ok(decodeIq4Nl(encodeIq4Nl(zeros), 32).every((v) => v === 0));
});

Deno.test("Q8_0 encoding rounds halfway codes away from zero, as C roundf", () => {
  // amax 127 gives d = 1 and id = 1, so codes are roundf(x) exactly.
  const x = new Float32Array(32);
  x.set([127, -127, 2.5, -2.5, 0.5, -0.5, 1.4999999]);
  const bytes = encodeQ8_0(x);
  assert.deepEqual([...bytes.subarray(0, 2)], [0x00, 0x3c]);
  const codes = [...bytes.subarray(2, 9)].map((b) => (b << 24) >> 24);
  assert.deepEqual(codes, [127, -127, 3, -3, 1, -1, 1]);
});
