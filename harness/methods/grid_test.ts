import assert from "node:assert/strict";
import { gridUnsupported, groupGrid } from "./grid.ts";
import { dense } from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import { decodeRow } from "../../kernels/formats/matrix.ts";

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {}, ...extra };
}

const FORMATS: FormatSpec[] = [
  spec("int4"),
  spec("int3", { group: 32, symmetric: false }),
  spec("int8", { group: -1 }),
  spec("int4", { id: "int4-restricted", group: 32, options: { range: "restricted" } }),
  spec("int2", { group: 16, options: { scale_dtype: "bf16" } }),
  spec("fp8"),
  spec("fp8", { group: 32, options: { scale_dtype: "bf16" } }),
  spec("fp8_e5m2", { group: -1 }),
  spec("fp4", { group: 16 }),
  spec("fp6_e2m3", { group: 32, options: { scale_dtype: "f16" } }),
  spec("mxfp4"),
  spec("mxfp8"),
  spec("mxint8"),
  spec("nvfp4"),
];

Deno.test("grid: fitted to the weights and rounding them, it is the format's own RTN", () => {
  // 100 columns: a short last group of 4 (groups of 32), padding for MX (128) and NVFP4 (112).
  const [rows, cols] = [6, 100];
  const data = Float32Array.from(
    { length: rows * cols },
    (_, i) => Math.sin(i * 1.37) * (1 + i % 7),
  );
  for (const format of FORMATS) {
    const grid = groupGrid(format, rows, cols);
    const w = Float64Array.from(data);
    grid.init(w);
    if (grid.groupSize < cols) {
      for (let c = 0; c < cols; c += grid.groupSize) {
        grid.fit(w, c, Math.min(cols, c + grid.groupSize));
      }
    }
    const values = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) values[r * cols + c] = grid.round(r, c, w[r * cols + c]!);
    }
    const built = grid.build();
    const element = elementFormats.get(format.weights);
    if (element.kind === "float") throw new Error("unreachable");
    const rtn = element.quantize(format, dense(rows, cols, data));
    const row = new Float32Array(cols);
    const expected = new Float32Array(cols);
    for (let r = 0; r < rows; r++) {
      decodeRow(built, r, row);
      decodeRow(rtn, r, expected);
      assert.deepEqual(row, values.subarray(r * cols, (r + 1) * cols), `${format.id} row ${r}`);
      assert.deepEqual(row, expected, `${format.id} row ${r} vs RTN`);
    }
    if (rtn.kind === "coded" && built.kind === "coded") {
      assert.deepEqual(built.data, rtn.data, `${format.id} bytes`);
      assert.equal(built.tensorScale, rtn.tensorScale);
    }
  }
});

Deno.test("grid: formats without per-weight rounding under group scales are refused", () => {
  assert.match(gridUnsupported(spec("q4_k"))!, /does not round weight by weight/);
  assert.match(gridUnsupported(spec("f32"))!, /not quantized/);
  assert.match(gridUnsupported(spec("mxfp4", { group: 64 }))!, /fixed block of 32/);
  assert.equal(gridUnsupported(spec("int4", { group: 128, symmetric: false })), undefined);
});

Deno.test("grid: the restricted int range clamps GPTQ's updated weights to ±(2^(b−1) − 1)", () => {
  const format = spec("int4", { group: 0, options: { range: "restricted" } });
  const grid = groupGrid(format, 1, 4);
  grid.init(Float64Array.from([7, -7, 1, 0]));
  // Scale 7/7 = 1; error feedback may push a weight past −7, which stays at code 1 (−7), not 0.
  assert.equal(grid.round(0, 0, -9.4), -7);
  assert.equal(grid.round(0, 1, 9.4), 7);
  const built = grid.build();
  assert.equal(built.kind === "int" && built.codes[0], 1);
  const full = groupGrid(spec("int4"), 1, 4);
  full.init(Float64Array.from([7, -7, 1, 0]));
  assert.equal(full.round(0, 0, -9.4), -8 * Math.f16round(14 / 15));
});
