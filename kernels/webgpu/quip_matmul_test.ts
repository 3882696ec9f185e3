/**
 * QuIP's WebGPU matmul (`quip_matmul.ts`, `quip_rotation_wgsl.ts`) against the CPU's
 * (`kernels/cpu/quip_matmul.ts`) beyond the conformance suite's cases: all three rotation
 * variants and code widths, sides whose factors are unequal (172 = 86 · 2) or one (a prime), a
 * row too long for workgroup memory (its middle row in storage), decode and prefill rows; and the
 * packer keeping the codes (no f32 fallback).
 */
import assert from "node:assert/strict";
import { createWebGpuBackend } from "./backend.ts";
import { cpuOps } from "../cpu/backend.ts";
import { packMatrix } from "./pack_matrix.ts";
import { pseudoRandom, relativeError } from "../../core/test_values.ts";
import type { Matrix } from "../../core/model.ts";
import { quipMatrix } from "../formats/quip_format.ts";
import type { QuipProjMode } from "../formats/quip_rotation.ts";

const unavailable = await createWebGpuBackend().unavailable();

/** A QuIP matrix of random codes, grid scale and column scales. */
function quip(rows: number, cols: number, bits: 2 | 3 | 4, mode: QuipProjMode, seed: number) {
  const codes = Uint8Array.from(
    pseudoRandom(rows * cols, seed),
    (v) => Math.floor((v + 0.5) * 2 ** bits) % 2 ** bits,
  );
  return quipMatrix(rows, cols, bits, codes, {
    scale: 0.05,
    colScale: pseudoRandom(cols, seed + 1).map((v) => 1 + v),
    seedU: seed + 2,
    seedV: seed + 3,
    mode,
  });
}

/**
 * The matrices: 48 × 172 (factors 8 · 6 and 86 · 2) in each variant and width, 37 × 64 (a prime
 * output side), and 24 × 4096 (64 · 64 factors; the input's middle row exceeds 16 KiB).
 */
function matrices(): [string, Matrix][] {
  const out: [string, Matrix][] = [];
  for (const mode of [0, 1, 2] as const) {
    for (const bits of [2, 3, 4] as const) {
      out.push([`48 × 172 int${bits} mode ${mode}`, quip(48, 172, bits, mode, 10 * mode + bits)]);
    }
  }
  out.push(["37 × 64 int2 mode 0", quip(37, 64, 2, 0, 40)]);
  out.push(["24 × 4096 int2 mode 1", quip(24, 4096, 2, 1, 50)]);
  return out;
}

Deno.test({
  name: "webgpu: QuIP matmuls equal the CPU's, T = 1, 3, 11",
  ignore: unavailable !== undefined,
  async fn() {
    const ops = createWebGpuBackend().ops!;
    for (const [name, w] of matrices()) {
      for (const T of [1, 3, 11]) {
        const x = pseudoRandom(T * w.cols, 60 + T);
        const err = relativeError(await ops.matmul(x, w), await cpuOps.matmul(x, w));
        assert.ok(err <= 1e-5, `${name} T=${T}: relative error ${err}`);
      }
    }
  },
});

Deno.test({
  name: "webgpu: a QuIP matrix whose codes are split into row parts equals the CPU's",
  ignore: unavailable !== undefined,
  async fn() {
    // 48 × 64: the codes take 1,152 bytes, each side at most 1,024.
    const w = quip(48, 64, 3, 1, 80);
    const packed = packMatrix(w, 1024);
    assert.deepEqual([packed.codebook?.kind, packed.parts.length], ["quip", 2]);
    const ops = createWebGpuBackend({ maxBinding: 1024 }).ops!;
    for (const T of [1, 6]) {
      const x = pseudoRandom(T * w.cols, 90 + T);
      const err = relativeError(await ops.matmul(x, w), await cpuOps.matmul(x, w));
      assert.ok(err <= 1e-5, `T=${T}: relative error ${err}`);
    }
  },
});

Deno.test("QuIP matrices pack their codes as unsigned integers and their rotations' sides", () => {
  const w = quip(48, 172, 3, 1, 70);
  const packed = packMatrix(w, 2 ** 30);
  assert.equal(packed.fallback, undefined);
  assert.equal(packed.codebook?.kind, "quip");
  assert.deepEqual(
    [packed.layout.element, packed.layout.bits, packed.layout.zero, packed.layout.scale],
    ["uint", 3, 0, "none"],
  );
  // Small bindings split the codes into row parts (as the test above runs them), but a side
  // tensor (here V's 86 × 86 factor) larger than a binding makes the matrix f32 rows.
  const small = packMatrix(w, 4096);
  assert.equal(small.codebook, undefined);
  assert.match(small.fallback ?? "", /exceeds the largest storage binding/);
});
