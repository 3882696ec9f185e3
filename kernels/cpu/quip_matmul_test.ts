import assert from "node:assert/strict";
import { quipMatmul } from "./quip_matmul.ts";
import { matmul } from "./ops.ts";
import { quipDecodeMatrix, quipMatrix } from "../formats/quip_format.ts";
import type { QuipProjMode } from "../formats/quip_rotation.ts";

Deno.test("quip matmul: W·x from the codes and the rotated input, as the decoded matrix gives", () => {
  // The last case spans two chunks of rows of the matmul module (128 rows of 2,048 columns).
  const cases = [[32, 64, 2, 1, 3], [12, 172, 3, 0, 2], [172, 12, 4, 2, 4], [200, 2048, 2, 1, 1]];
  for (
    const [rows, cols, bits, mode, tokens] of cases as [
      number,
      number,
      2 | 3 | 4,
      QuipProjMode,
      number,
    ][]
  ) {
    let s = rows * 131 + cols;
    const next = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
    const maxq = (1 << bits) - 1;
    const codes = Uint8Array.from({ length: rows * cols }, () => Math.floor(next() * (maxq + 1)));
    const m = quipMatrix(rows, cols, bits, codes, {
      scale: 0.02,
      colScale: Float32Array.from({ length: cols }, () => 0.5 + next()),
      seedU: 3,
      seedV: 4,
      mode: mode,
    });
    const w = quipDecodeMatrix(m);
    const x = Float32Array.from({ length: tokens * cols }, () => next() - 0.5);
    const [got, viaOps] = [new Float32Array(tokens * rows), new Float32Array(tokens * rows)];
    quipMatmul(m, x, tokens, got);
    matmul(viaOps, x, m);
    assert.deepEqual(viaOps, got);
    for (let t = 0; t < tokens; t++) {
      for (let r = 0; r < rows; r++) {
        let want = 0;
        let norm = 0;
        for (let c = 0; c < cols; c++) {
          want += w[r * cols + c]! * x[t * cols + c]!;
          norm += Math.abs(w[r * cols + c]! * x[t * cols + c]!);
        }
        const y = got[t * rows + r]!;
        assert.ok(
          Math.abs(y - want) <= 1e-5 * norm,
          `${rows}×${cols} token ${t} row ${r}: ${y} vs ${want}`,
        );
      }
    }
  }
});
