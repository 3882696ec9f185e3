import assert from "node:assert/strict";
import { aqlmWasmSource, compileAqlmWat } from "./build_aqlm_wasm.ts";
import { wasmMatmul } from "./wasm_matmul.ts";
import { dense } from "../../core/model.ts";
import { pseudoRandom } from "../../core/test_values.ts";
import { type AqlmScheme, buildAqlmMatrix } from "../formats/aqlm.ts";
import { decodeRow } from "../formats/matrix.ts";

Deno.test("aqlm wasm: the committed module is the compilation of aqlm.wat", async () => {
  const committed = await Deno.readTextFile(new URL("./aqlm_wasm.ts", import.meta.url));
  assert.equal(committed, aqlmWasmSource(await compileAqlmWat()));
});

Deno.test("aqlm wasm: the matmul decodes AQLM rows in the module exactly as decodeRow does", () => {
  const cases: [AqlmScheme, number, number, number][] = [
    [{ codebooks: 1, bits: 16, groupSize: 8 }, 1, 9, 64], // 1x16: u16 codes, vector path
    [{ codebooks: 2, bits: 8, groupSize: 8 }, 3, 5, 24],
    [{ codebooks: 1, bits: 4, groupSize: 2 }, 2, 7, 13], // scalar path, padded last group
    [{ codebooks: 3, bits: 5, groupSize: 4 }, 4, 33, 172], // codes across bytes, short last group
    [{ codebooks: 2, bits: 3, groupSize: 4 }, 1, 700, 40], // several chunks of rows
  ];
  for (const [scheme, T, rows, cols] of cases) {
    const size = 2 ** scheme.bits;
    const groups = Math.ceil(cols / scheme.groupSize);
    let s = 11;
    const next = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
    const m = buildAqlmMatrix({
      scheme,
      rows,
      cols,
      codes: Int32Array.from(
        { length: rows * groups * scheme.codebooks },
        () => Math.floor(next() * size),
      ),
      codebooks: Float32Array.from(
        { length: scheme.codebooks * size * scheme.groupSize },
        () => next() - 0.5,
      ),
      scales: Float32Array.from({ length: rows }, () => next() + 0.25),
    });
    const w = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) decodeRow(m, r, w.subarray(r * cols, (r + 1) * cols));
    const x = pseudoRandom(T * cols, 3);
    const [got, want] = [new Float32Array(T * rows), new Float32Array(T * rows)];
    wasmMatmul(got, x, m);
    wasmMatmul(want, x, dense(rows, cols, w));
    assert.deepEqual(got, want, `${JSON.stringify(scheme)} ${T}×${rows}×${cols}`);
  }
});
