/**
 * QuIP's `quip` matrices in the CPU matmul (`kernels/formats/quip_format.ts`):
 * `W·x = Uᵀ(scale · (2/(2^b−1) · Q·u − Σu))` with `u = V(x / col_scale)`. The rotations run in
 * float64 here; the product `Q·u` runs on the matmul module (`wasm_matmul.ts`), which decodes the
 * codes' rows in its memory with its integer decoder (unit scales, zero points 0).
 *
 * @module
 */
import type { QuantizedWeight } from "../formats/format.ts";
import { quipParts } from "../formats/quip_format.ts";
import { applyQuipRotation } from "../formats/quip_rotation.ts";
import { wasmMatmul } from "./wasm_matmul.ts";

/**
 * `y = W · x` for the `quip` matrix `m` and `tokens` rows of `x` (`tokens × cols`) into `out`
 * (`tokens × rows`).
 */
export function quipMatmul(
  m: QuantizedWeight,
  x: Float32Array,
  tokens: number,
  out: Float32Array,
): void {
  const { c, bits, codeMatrix, scale, colScale, u, v } = quipParts(m);
  const { rows, cols } = c;
  const step = 2 / ((1 << bits) - 1);
  const input = new Float32Array(tokens * cols);
  const sums = new Float64Array(tokens);
  const row = new Float64Array(cols);
  const tmp = new Float64Array(Math.max(rows, cols));
  for (let t = 0; t < tokens; t++) {
    for (let col = 0; col < cols; col++) row[col] = x[t * cols + col]! / colScale[col]!;
    applyQuipRotation(v, row, 0, false, tmp);
    input.set(row, t * cols);
    for (let col = 0; col < cols; col++) sums[t]! += input[t * cols + col]!;
  }
  const q = new Float32Array(tokens * rows);
  wasmMatmul(q, input, codeMatrix);
  const z = new Float64Array(rows);
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) z[r] = scale * (step * q[t * rows + r]! - sums[t]!);
    applyQuipRotation(u, z, 0, true, tmp);
    out.set(z, t * rows);
  }
}
