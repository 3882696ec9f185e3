import assert from "node:assert/strict";
import { hadamardTransform } from "../cpu/hadamard.ts";
import { E8P_RVQ, e8pDecode, secondDecode } from "./e8p_codebook.ts";
import { e8pDecodeMatrix, E8pLayoutError, e8pMatmul, e8pMatrix, e8pVectors } from "./e8p_format.ts";
import { decodeRow, matrixBits, storageName } from "./matrix.ts";
import { f16ToF32, f32ToF16 } from "./gguf/numeric.ts";

function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

/** The transform of size `n` as a matrix (column `j` is M·e_j). */
function transformMatrix(n: number): Float64Array {
  const m = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const e = new Float64Array(n);
    e[j] = 1;
    hadamardTransform(e, n);
    for (let i = 0; i < n; i++) m[i * n + j] = e[i]!;
  }
  return m;
}

function randomMatrix(rows: number, cols: number, seed: number, bits: 2 | 3 | 4) {
  const rand = lcg(seed);
  const vectors = e8pVectors(cols);
  const codes = Uint16Array.from({ length: rows * vectors }, () => Math.floor(rand() * 65536));
  const su = Uint8Array.from({ length: Math.ceil(cols / 8) }, () => Math.floor(rand() * 256));
  if (cols % 8) su[su.length - 1]! &= (1 << (cols % 8)) - 1;
  const sv = Uint16Array.from({ length: rows }, () => f32ToF16((rand() < 0.5 ? -1 : 1) * 0.01));
  const second = Uint16Array.from(
    { length: rows * vectors },
    () => Math.floor(rand() * (bits === 3 ? 256 : 65536)),
  );
  const residual = bits === 2 ? undefined : { bits, codes: second };
  return { codes, second, su, sv, m: e8pMatrix(rows, cols, codes, su, sv, residual) };
}

const CASES = [[32, 64, 2], [12, 172, 2], [64, 12, 2], [12, 172, 3], [32, 64, 4]] as const;
for (const [rows, cols, bits] of CASES) {
  Deno.test(`e8p ${bits} bits ${rows}×${cols}: W = diag(sv)·M·Ŵ·Mᵀ·diag(su), in the matmul too`, () => {
    const { codes, second, su, sv, m } = randomMatrix(rows, cols, rows * 1000 + cols, bits);
    const vectors = e8pVectors(cols);
    const hat = new Float64Array(rows * cols);
    const v = new Float64Array(8 * vectors);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < vectors; j++) {
        e8pDecode(codes[r * vectors + j]!, v, 8 * j);
        if (bits === 2) continue;
        const extra = new Float64Array(8);
        secondDecode(E8P_RVQ[bits], second[r * vectors + j]!, extra);
        for (let i = 0; i < 8; i++) v[8 * j + i]! += extra[i]! / E8P_RVQ[bits].residScale;
      }
      hat.set(v.subarray(0, cols), r * cols);
    }
    const mr = transformMatrix(rows);
    const mc = transformMatrix(cols);
    const want = new Float64Array(rows * cols);
    const left = new Float64Array(rows * cols); // M_rows · Ŵ
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < rows; i++) {
        const a = mr[r * rows + i]!;
        for (let c = 0; c < cols; c++) left[r * cols + c]! += a * hat[i * cols + c]!;
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        let s = 0;
        for (let j = 0; j < cols; j++) s += left[r * cols + j]! * mc[c * cols + j]!;
        const sign = (su[c >> 3]! >> (c & 7)) & 1 ? -1 : 1;
        want[r * cols + c] = f16ToF32(sv[r]!) * s * sign;
      }
    }
    const got = e8pDecodeMatrix(m);
    const row = new Float32Array(cols);
    for (let r = 0; r < rows; r++) {
      decodeRow(m, r, row);
      for (let c = 0; c < cols; c++) {
        assert.ok(Math.abs(row[c]! - want[r * cols + c]!) < 1e-6, `${r},${c}`);
        assert.equal(row[c], got[r * cols + c]);
      }
    }
    const tokens = 3;
    const rand = lcg(5);
    const x = Float32Array.from({ length: tokens * cols }, () => rand() - 0.5);
    const y = new Float32Array(tokens * rows);
    e8pMatmul(m, x, tokens, y);
    for (let t = 0; t < tokens; t++) {
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += want[r * cols + c]! * x[t * cols + c]!;
        assert.ok(
          Math.abs(y[t * rows + r]! - s) < 1e-5,
          `token ${t} row ${r}: ${y[t * rows + r]} vs ${s}`,
        );
      }
    }
    assert.equal(storageName(m), bits === 2 ? "e8p12" : `e8p12-rvq${bits}`);
    assert.equal(matrixBits(m), rows * vectors * 8 * bits + cols + 16 * rows);
  });
}

Deno.test("e8p matrices with misfit parts are refused", () => {
  assert.throws(
    () => e8pMatrix(4, 16, new Uint16Array(8), new Uint8Array(1), new Uint16Array(4)),
    E8pLayoutError,
  );
});
