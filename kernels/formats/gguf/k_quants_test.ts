import assert from "node:assert/strict";
import {
  decodeQ2K,
  decodeQ3K,
  decodeQ4K,
  decodeQ5K,
  decodeQ6K,
  decodeQ8K,
  encodeQ2K,
  encodeQ3K,
  encodeQ4K,
  encodeQ5K,
  encodeQ6K,
} from "./k_quants.ts";

// Hand-built super-blocks following the block_q*_K structs in ggml-common.h. Halves are written
// as IEEE bit patterns: 0x3c00 = 1, 0x3800 = 0.5, 0x3400 = 0.25.

/** Packs eight 6-bit (scale, min) pairs into the 12-byte K_SCALE_SIZE field of Q4_K/Q5_K. */
function packScaleMin6(sc: number[], m: number[]): number[] {
  const out = new Array(12).fill(0);
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      out[j] = sc[j]!;
      out[j + 4] = m[j]!;
    } else {
      out[j + 4] = (sc[j]! & 15) | ((m[j]! & 15) << 4);
      out[j - 4] |= (sc[j]! >> 4) << 6;
      out[j] |= (m[j]! >> 4) << 6;
    }
  }
  return out;
}

const SC = [10, 17, 24, 31, 38, 45, 52, 59]; // several above 15, so the high bits matter
const MN = [3, 11, 19, 27, 35, 43, 51, 59];

Deno.test("Q4_K: y = d·sc·q - dmin·m with 6-bit scales and 32-element sub-blocks", () => {
  const block = new Uint8Array(144);
  block.set([0x00, 0x3c, 0x00, 0x38]); // d = 1, dmin = 0.5
  block.set(packScaleMin6(SC, MN), 4);
  // Byte 32·g + l: low nibble is element l of sub-block 2g, high nibble element l of 2g + 1.
  const q = (sub: number, l: number) => (l + sub) & 15;
  for (let g = 0; g < 4; g++) {
    for (let l = 0; l < 32; l++) block[16 + 32 * g + l] = q(2 * g, l) | (q(2 * g + 1, l) << 4);
  }
  const y = decodeQ4K(block, 256);
  for (let sub = 0; sub < 8; sub++) {
    for (let l = 0; l < 32; l++) {
      assert.equal(y[32 * sub + l], SC[sub]! * q(sub, l) - 0.5 * MN[sub]!, `sub ${sub} l ${l}`);
    }
  }
});

Deno.test("Q5_K: bits 2g and 2g+1 of qh[l] are the fifth bits of sub-blocks 2g and 2g+1", () => {
  const block = new Uint8Array(176);
  block.set([0x00, 0x3c, 0x00, 0x38]);
  block.set(packScaleMin6(SC, MN), 4);
  const q = (sub: number, l: number) => (l * 3 + sub * 5) & 31;
  for (let g = 0; g < 4; g++) {
    for (let l = 0; l < 32; l++) {
      const lo = q(2 * g, l);
      const hi = q(2 * g + 1, l);
      block[48 + 32 * g + l] = (lo & 15) | ((hi & 15) << 4);
      block[16 + l]! |= ((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1));
    }
  }
  const y = decodeQ5K(block, 256);
  for (let sub = 0; sub < 8; sub++) {
    for (let l = 0; l < 32; l++) {
      assert.equal(y[32 * sub + l], SC[sub]! * q(sub, l) - 0.5 * MN[sub]!, `sub ${sub} l ${l}`);
    }
  }
});

Deno.test("Q2_K: 4-bit scale/min per 16 elements, codes in 2-bit planes", () => {
  const block = new Uint8Array(84);
  for (let j = 0; j < 16; j++) block[j] = (j & 15) | ((15 - j) << 4); // scale j, min 15 - j
  // Element 128·h + 32·p + l (l < 32) sits in bits 2p..2p+1 of qs[32·h + l].
  const q = (i: number) => (i * 7 + (i >> 4)) & 3;
  for (let i = 0; i < 256; i++) {
    const h = i >> 7;
    const p = (i >> 5) & 3;
    block[16 + 32 * h + (i & 31)]! |= q(i) << (2 * p);
  }
  block.set([0x00, 0x38, 0x00, 0x34], 80); // d = 0.5, dmin = 0.25
  const y = decodeQ2K(block, 256);
  for (let i = 0; i < 256; i++) {
    const sub = i >> 4;
    assert.equal(y[i], 0.5 * sub * q(i) - 0.25 * (15 - sub), `element ${i}`);
  }
});

Deno.test("Q3_K: signed 6-bit scales (4 low bits + 2 high bits), hmask bit set means no -4", () => {
  const block = new Uint8Array(110);
  const scale = (j: number) => j * 4 - 32; // -32..28
  for (let j = 0; j < 16; j++) {
    const s = scale(j) + 32;
    if (j < 8) block[96 + j] = s & 15;
    else block[96 + j - 8]! |= (s & 15) << 4;
    block[96 + 8 + (j % 4)]! |= (s >> 4) << (2 * (j >> 2));
  }
  block.set([0x00, 0x38], 108); // d = 0.5
  const q = (i: number) => (i * 5 + 3) & 7; // 0..7, stored as low 2 bits + high bit
  for (let i = 0; i < 256; i++) {
    const h = i >> 7;
    const p = (i >> 5) & 3;
    block[32 + 32 * h + (i & 31)]! |= (q(i) & 3) << (2 * p);
    if (q(i) > 3) block[i & 31]! |= 1 << (i >> 5);
  }
  const y = decodeQ3K(block, 256);
  for (let i = 0; i < 256; i++) {
    assert.equal(y[i], 0.5 * scale(i >> 4) * (q(i) - 4), `element ${i}`);
  }
});

Deno.test("Q6_K: y = d·sc·(q - 32), low nibbles in ql, high 2 bits in qh", () => {
  const block = new Uint8Array(210);
  const q = (i: number) => (i * 11 + 5) & 63;
  for (let i = 0; i < 256; i++) {
    const h = i >> 7; // 128-element half
    const p = (i >> 5) & 3; // which of the 4 quarters of 32
    const l = i & 31;
    const ql = 64 * h + (p & 1) * 32 + l;
    block[ql]! |= (q(i) & 15) << (p >= 2 ? 4 : 0);
    block[128 + 32 * h + l]! |= (q(i) >> 4) << (2 * p);
  }
  for (let j = 0; j < 16; j++) block[192 + j] = (j * 9 - 70) & 0xff; // int8 scales
  block.set([0x00, 0x34], 208); // d = 0.25
  const y = decodeQ6K(block, 256);
  for (let i = 0; i < 256; i++) {
    assert.equal(y[i], 0.25 * ((i >> 4) * 9 - 70) * (q(i) - 32), `element ${i}`);
  }
});

Deno.test("Q8_K: float32 d times int8 codes", () => {
  const block = new Uint8Array(292);
  new DataView(block.buffer).setFloat32(0, 0.125, true);
  for (let j = 0; j < 256; j++) block[4 + j] = (j - 128) & 0xff;
  const y = decodeQ8K(block, 256);
  for (let j = 0; j < 256; j++) assert.equal(y[j], (j - 128) * 0.125);
});

Deno.test("K-quant encoders keep all-zero super-blocks zero and stay within a grid step", () => {
  const zeros = new Float32Array(256);
  // [name, encode, decode, elements per scale, levels]
  const codecs: [string, (x: Float32Array) => Uint8Array, typeof decodeQ4K, number, number][] = [
    ["Q2_K", encodeQ2K, decodeQ2K, 16, 4],
    ["Q3_K", encodeQ3K, decodeQ3K, 16, 8],
    ["Q4_K", encodeQ4K, decodeQ4K, 32, 16],
    ["Q5_K", encodeQ5K, decodeQ5K, 32, 32],
    ["Q6_K", encodeQ6K, decodeQ6K, 16, 64],
  ];
  const x = new Float32Array(512);
  for (let i = 0; i < x.length; i++) x[i] = Math.fround(Math.sin(i / 17) + (i % 7) / 10);
  for (const [name, encode, decode, group, levels] of codecs) {
    assert.ok(decode(encode(zeros), 256).every((v) => v === 0), name);
    const y = decode(encode(x), 512);
    for (let g = 0; g < x.length; g += group) {
      // A grid covering [min(0, x), max(0, x)] with `levels` levels has this step; rounding to
      // it errs by half a step, and the 4/6-bit scales and symmetric grids by up to one more
      // half step.
      let lo = 0;
      let hi = 0;
      for (let i = g; i < g + group; i++) [lo, hi] = [Math.min(lo, x[i]!), Math.max(hi, x[i]!)];
      const step = (hi - lo) / (levels - 1);
      for (let i = g; i < g + group; i++) {
        const err = Math.abs(y[i]! - x[i]!);
        assert.ok(err <= 1.25 * step, `${name} element ${i}: error ${err}, step ${step}`);
      }
    }
  }
});
