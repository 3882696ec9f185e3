import assert from "node:assert/strict";
import { compileVptqWat, vptqModuleSource } from "./build_vptq_wasm.ts";
import { wasmMatmul } from "./wasm_matmul.ts";
import { buildVptq, decodeVptqRow, parseVptqName } from "../formats/vptq.ts";

Deno.test("vptq wasm: the committed module is the compilation of vptq_decode.wat", async () => {
  const committed = await Deno.readTextFile(new URL("./vptq_wasm.ts", import.meta.url));
  assert.equal(committed, vptqModuleSource(await compileVptqWat()));
});

Deno.test("vptq wasm: the matmul decodes every side tensor as the format's row decoder does", () => {
  let s = 11;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
  const randInt = (n: number) => Math.floor((rand() + 0.5) * n);
  const cases = [
    { name: "vptq-v2-k16-0", T: 1, rows: 5, cols: 7, o: 0, perm: false, norm: false },
    { name: "vptq-v4-k256-16", T: 3, rows: 9, cols: 13, o: 2, perm: true, norm: true },
    { name: "vptq-v8-k4096-256", T: 17, rows: 700, cols: 37, o: 3, perm: true, norm: false },
    { name: "vptq-v6-k65536-0", T: 2, rows: 33, cols: 64, o: 0, perm: false, norm: true },
  ];
  for (const c of cases) {
    const config = parseVptqName(c.name);
    const v = config.vectorLen;
    const n = Math.ceil(c.rows / v) * (c.cols - c.o);
    const count = Math.min(config.centroids, 40);
    const order = Array.from({ length: c.cols }, (_, i) => i).sort(() => rand());
    const m = buildVptq({
      rows: c.rows,
      cols: c.cols,
      config,
      centroids: Array.from({ length: count * v }, rand),
      // Indices up to k − 1: the packed widths are exercised, the decoders read any centroid.
      indices: Array.from({ length: n }, () => randInt(count)),
      ...(config.resCentroids > 0
        ? {
          resCentroids: Array.from({ length: config.resCentroids * v }, rand),
          resIndices: Array.from({ length: n }, () => randInt(config.resCentroids)),
        }
        : {}),
      ...(c.o > 0
        ? { outlierCols: c.o, outliers: Array.from({ length: c.rows * c.o }, rand) }
        : {}),
      ...(c.perm ? { perm: order } : {}),
      ...(c.norm
        ? {
          normScale: Array.from({ length: c.cols }, () => 1 + rand()),
          normBias: Array.from({ length: c.cols }, rand),
        }
        : {}),
    });
    const x = Float32Array.from({ length: c.T * c.cols }, rand);
    const out = new Float32Array(c.T * c.rows).fill(NaN);
    wasmMatmul(out, x, m);
    const row = new Float32Array(c.cols);
    for (let r = 0; r < c.rows; r++) {
      decodeVptqRow(m, r, row);
      for (let t = 0; t < c.T; t++) {
        let ref = 0;
        for (let j = 0; j < c.cols; j++) ref += x[t * c.cols + j]! * row[j]!;
        const got = out[t * c.rows + r]!;
        assert.ok(
          Math.abs(got - ref) <= 1e-5 * (1 + Math.abs(ref)),
          `${c.name} ${r}: ${got} vs ${ref}`,
        );
      }
    }
  }
});
