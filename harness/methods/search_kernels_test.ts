import assert from "node:assert/strict";
import wabtInit from "wabt";
import {
  causalAttention,
  gemm,
  packRows,
  SEARCH_KERNELS_WASM_BASE64,
  searchKernelsWat,
  siluMul,
  sumOfSquares,
} from "./search_kernels.ts";

/** Deterministic values in [−0.5, 0.5) (a linear congruential generator). */
function values(n: number, seed: number, scale = 1): Float32Array {
  let s = seed;
  return Float32Array.from(
    { length: n },
    () => scale * (((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5),
  );
}

Deno.test("search kernels: the committed search kernels are the compilation of their WAT", async () => {
  const wabt = await wabtInit();
  const module = wabt.parseWat("search.wat", searchKernelsWat(), {
    simd: true,
    relaxed_simd: true,
  });
  const bytes = new Uint8Array(module.toBinary({}).buffer);
  module.destroy();
  assert.deepEqual(
    Uint8Array.from(atob(SEARCH_KERNELS_WASM_BASE64), (c) => c.charCodeAt(0)),
    bytes,
  );
});

Deno.test("search kernels: gemm and sumOfSquares against float64 loops (odd shapes, many chunks)", () => {
  for (const [T, rows, cols] of [[1, 1, 1], [7, 9, 13], [13, 8, 5], [250, 33, 64], [5, 300, 7]]) {
    const x = values(T! * cols!, T! + rows!);
    const minus = values(T! * cols!, cols!);
    const w = values(rows! * cols!, 11);
    const packed = packRows(w, rows!, cols!);
    const out = new Float32Array(T! * rows!).fill(NaN);
    gemm(out, x, packed);
    let squares = 0;
    for (let t = 0; t < T!; t++) {
      for (let r = 0; r < rows!; r++) {
        let ref = 0;
        let diff = 0;
        for (let c = 0; c < cols!; c++) {
          ref += x[t * cols! + c]! * w[r * cols! + c]!;
          diff += (x[t * cols! + c]! - minus[t * cols! + c]!) * w[r * cols! + c]!;
        }
        squares += diff * diff;
        const got = out[t * rows! + r]!;
        assert.ok(Math.abs(got - ref) <= 1e-6 * (1 + Math.abs(ref)), `${T}×${rows}×${cols}`);
      }
    }
    const sum = sumOfSquares(packed, x, minus);
    assert.ok(Math.abs(sum - squares) <= 1e-5 * squares, `${T}×${rows}×${cols}: ${sum}`);
  }
});

Deno.test("search kernels: siluMul against x / (1 + e^−x) · u within float32 rounding", () => {
  const gate = Float32Array.from([
    ...values(1001, 3, 40),
    0,
    -0,
    1e-30,
    -87,
    -88.5,
    -100,
    88,
    89,
    1000,
  ]);
  const up = values(gate.length, 5, 4);
  const got = gate.slice();
  siluMul(got, up);
  gate.forEach((g, i) => {
    const ref = (g / (1 + Math.exp(-g))) * up[i]!;
    // Past the float32 range of e^−x the product underflows to (nearly) nothing.
    const tolerance = 4e-7 * Math.abs(ref) + (g < -87 ? 1e-35 : 0);
    assert.ok(Math.abs(got[i]! - ref) <= tolerance, `silu(${g}) · ${up[i]}: ${got[i]} vs ${ref}`);
  });
});

/** Causal grouped-query attention by the definition, in float64. */
function attentionByDefinition(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
): Float64Array {
  const T = q.length / (nHeads * headDim);
  const out = new Float64Array(q.length);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const kv = Math.floor(h / (nHeads / nKvHeads)) * headDim;
      const scores = Array.from({ length: t + 1 }, (_, j) => {
        let s = 0;
        for (let d = 0; d < headDim; d++) {
          s += q[(t * nHeads + h) * headDim + d]! * k[j * nKvHeads * headDim + kv + d]!;
        }
        return s / Math.sqrt(headDim);
      });
      const max = Math.max(...scores);
      const weights = scores.map((s) => Math.exp(s - max));
      const total = weights.reduce((a, b) => a + b);
      for (let d = 0; d < headDim; d++) {
        let acc = 0;
        weights.forEach((e, j) => acc += e * v[j * nKvHeads * headDim + kv + d]!);
        out[(t * nHeads + h) * headDim + d] = acc / total;
      }
    }
  }
  return out;
}

Deno.test("search kernels: causalAttention against the definition (GQA, several blocks)", () => {
  for (const [T, nHeads, nKvHeads, headDim] of [[1, 2, 1, 8], [50, 8, 2, 32], [131, 4, 4, 12]]) {
    // Scores of a few units up to ±20 make the softmax peaked, as trained attention often is;
    // float32 scores carry an absolute error of about |score| · 2⁻²⁴ into the exponent.
    const q = values(T! * nHeads! * headDim!, 1, 8);
    const k = values(T! * nKvHeads! * headDim!, 2, 8);
    const v = values(T! * nKvHeads! * headDim!, 3);
    const out = new Float32Array(q.length).fill(NaN);
    causalAttention(out, q, k, v, nHeads!, nKvHeads!, headDim!);
    const ref = attentionByDefinition(q, k, v, nHeads!, nKvHeads!, headDim!);
    ref.forEach((r, i) => {
      assert.ok(Math.abs(out[i]! - r) <= 2e-6, `T=${T} element ${i}: ${out[i]} vs ${r}`);
    });
  }
});
