import assert from "node:assert/strict";
import { compileE8pWat, e8pWasmSource } from "./build_e8p_wasm.ts";
import { e8pWasmMatmul } from "./e8p_wasm_decode.ts";
import { matmul } from "./ops.ts";
import { e8pMatmul, e8pMatrix, e8pVectors } from "../formats/e8p_format.ts";
import { f32ToF16 } from "../formats/gguf/numeric.ts";

Deno.test("e8p wasm: the committed module is the compilation of e8p.wat", async () => {
  const committed = await Deno.readTextFile(new URL("./e8p_wasm.ts", import.meta.url));
  assert.equal(committed, e8pWasmSource(await compileE8pWat()));
});

Deno.test("e8p wasm: the matmul agrees with the float64 TypeScript path to float32 rounding", () => {
  // The last case spans three chunks of rows (128 rows of 2,048 columns each).
  // The last case spans three chunks of rows (128 rows of 2,048 columns each).
  const cases = [
    [32, 64, 2, 3],
    [12, 172, 2, 5],
    [64, 12, 3, 1],
    [12, 172, 3, 4],
    [48, 64, 4, 2],
    [384, 2048, 3, 1],
  ];
  for (const [rows, cols, bits, tokens] of cases as [number, number, 2 | 3 | 4, number][]) {
    let s = rows * 31 + cols;
    const next = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
    const vectors = e8pVectors(cols);
    const codes = Uint16Array.from({ length: rows * vectors }, () => Math.floor(next() * 65536));
    const su = Uint8Array.from({ length: Math.ceil(cols / 8) }, () => Math.floor(next() * 256));
    const sv = Uint16Array.from({ length: rows }, () => f32ToF16((next() - 0.5) * 0.1));
    const second = Uint16Array.from(
      { length: rows * vectors },
      () => Math.floor(next() * (bits === 3 ? 256 : 65536)),
    );
    const m = e8pMatrix(
      rows,
      cols,
      codes,
      su,
      sv,
      bits === 2 ? undefined : { bits, codes: second },
    );
    const x = Float32Array.from({ length: tokens * cols }, () => next() - 0.5);
    const [got, viaOps, want] = [0, 1, 2].map(() => new Float32Array(tokens * rows));
    e8pWasmMatmul(m, x, tokens, got!);
    matmul(viaOps!, x, m);
    e8pMatmul(m, x, tokens, want!);
    let scale = 0;
    for (const v of want!) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < want!.length; i++) {
      assert.ok(
        Math.abs(got![i]! - want![i]!) <= 1e-5 * scale,
        `${bits} bits ${rows}×${cols}, output ${i}: ${got![i]} vs ${want![i]}`,
      );
    }
    assert.deepEqual(viaOps, got);
  }
});
