import assert from "node:assert/strict";
import { QUIP_CODECS, quipDecodeMatrix, QuipLayoutError, quipMatrix } from "./quip_format.ts";
import { denseQuipRotation, type QuipProjMode, quipRotation } from "./quip_rotation.ts";
import { decodeRow, matrixBits, storageName } from "./matrix.ts";

function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

const CASES = [[32, 64, 2, 1], [12, 172, 3, 0], [172, 12, 4, 2], [7, 5, 3, 1]] as const;
for (const [rows, cols, bits, mode] of CASES) {
  Deno.test(`quip ${bits} bits ${rows}×${cols} mode ${mode}: W = Uᵀ·grid(Q)·V·diag(s)⁻¹`, () => {
    const rand = lcg(rows * 1000 + cols);
    const maxq = (1 << bits) - 1;
    const codes = Uint8Array.from({ length: rows * cols }, () => Math.floor(rand() * (maxq + 1)));
    const colScale = Float32Array.from({ length: cols }, () => 0.5 + rand());
    const sides = { scale: 0.03, colScale, seedU: 11, seedV: 12, mode: mode as QuipProjMode };
    const m = quipMatrix(rows, cols, bits, codes, sides);
    const u = denseQuipRotation(quipRotation(11, rows, mode));
    const v = denseQuipRotation(quipRotation(12, cols, mode));
    const g = Float64Array.from(codes, (q) => Math.fround(0.03) * ((2 * q) / maxq - 1));
    const gv = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < cols; k++) {
        const a = g[r * cols + k]!;
        for (let c = 0; c < cols; c++) gv[r * cols + c]! += a * v[k * cols + c]!;
      }
    }
    const want = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        let s = 0;
        for (let k = 0; k < rows; k++) s += u[k * rows + r]! * gv[k * cols + c]!;
        want[r * cols + c] = s / colScale[c]!;
      }
    }
    const whole = quipDecodeMatrix(m);
    const row = new Float32Array(cols);
    for (let r = 0; r < rows; r++) {
      decodeRow(m, r, row);
      for (let c = 0; c < cols; c++) {
        assert.ok(Math.abs(row[c]! - want[r * cols + c]!) < 1e-6, `${r},${c}`);
        assert.equal(row[c], whole[r * cols + c]);
      }
    }
    assert.equal(storageName(m), QUIP_CODECS[bits]);
    assert.equal(matrixBits(m), rows * Math.ceil((cols * bits) / 8) * 8 + 32 + 32 * cols + 64 + 8);
  });
}

Deno.test("quip matrices with misfit parts are refused", () => {
  const sides = { scale: 1, colScale: new Float32Array(16), seedU: 1, seedV: 2, mode: 1 as const };
  assert.throws(
    () => quipMatrix(4, 16, 2, new Uint8Array(64), { ...sides, colScale: new Float32Array(15) }),
    QuipLayoutError,
  );
  assert.throws(
    () => quipMatrix(4, 16, 2, new Uint8Array(64), { ...sides, mode: 3 as never }),
    QuipLayoutError,
  );
});
