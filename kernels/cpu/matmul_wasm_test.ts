import assert from "node:assert/strict";
import { compileMatmulWat, wasmModuleSource } from "./build_wasm.ts";
import { wasmMatmul } from "./wasm_matmul.ts";
import { dense } from "../../core/model.ts";
import { quantizeInt } from "../formats/int.ts";

Deno.test("matmul wasm: the committed module is the compilation of matmul.wat", async () => {
  const committed = await Deno.readTextFile(new URL("./matmul_wasm.ts", import.meta.url));
  assert.equal(committed, wasmModuleSource(await compileMatmulWat()));
});

Deno.test("matmul wasm: odd shapes against a float64 triple loop (dense and int rows)", () => {
  let s = 7;
  const rand = (n: number) =>
    Float32Array.from(
      { length: n },
      () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5,
    );
  for (const [T, rows, cols] of [[1, 1, 1], [3, 5, 7], [2, 9, 13], [17, 33, 64], [1, 700, 300]]) {
    const w = rand(rows! * cols!);
    const x = rand(T! * cols!);
    const q = quantizeInt(w, rows!, cols!, { bits: 4, group: 0, symmetric: true });
    for (const m of [dense(rows!, cols!, w), q]) {
      const out = new Float32Array(T! * rows!).fill(NaN);
      wasmMatmul(out, x, m);
      const wd = new Float32Array(cols!);
      for (let r = 0; r < rows!; r++) {
        if (m.kind === "dense") wd.set(w.subarray(r * cols!, (r + 1) * cols!));
        else for (let c = 0; c < cols!; c++) wd[c] = q.scales[r]! * (q.codes[r * cols! + c]! - 8);
        for (let t = 0; t < T!; t++) {
          let ref = 0;
          for (let c = 0; c < cols!; c++) ref += x[t * cols! + c]! * wd[c]!;
          const got = out[t * rows! + r]!;
          assert.ok(
            Math.abs(got - ref) <= 1e-5 * (1 + Math.abs(ref)),
            `${T}x${rows}x${cols}: ${got} vs ${ref}`,
          );
        }
      }
    }
  }
});
