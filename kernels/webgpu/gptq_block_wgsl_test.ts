/** The GPTQ block kernel's WGSL, key and dispatch parameters (its numbers: gptq_blocks_test.ts). */
import assert from "node:assert/strict";
import {
  GptqBlockArgumentError,
  gptqBlockKey,
  gptqBlockShader,
  gptqBlockUniform,
  type GptqIntGrid,
} from "./gptq_block_wgsl.ts";

Deno.test("webgpu: GPTQ block kernel validates its grid and dispatch parameters", () => {
  const grid: GptqIntGrid = {
    bits: 4,
    symmetric: true,
    restricted: false,
    scaleDtype: "f16",
    fit: true,
    block: 128,
  };
  assert.match(gptqBlockShader(grid), /array<f32, 128>/);
  assert.notEqual(gptqBlockKey(grid), gptqBlockKey({ ...grid, scaleDtype: "bf16" }));
  assert.throws(() => gptqBlockShader({ ...grid, bits: 9 }), GptqBlockArgumentError);
  assert.throws(
    () => gptqBlockShader({ ...grid, symmetric: false, restricted: true }),
    /restricted/,
  );
  const p = { rows: 8, cols: 256, i1: 128, count: 128, groupSize: 128, codeStride: 64 };
  assert.equal(gptqBlockUniform(p, grid)[5], 2);
  assert.throws(() => gptqBlockUniform({ ...p, count: 129 }, grid), GptqBlockArgumentError);
  assert.throws(() => gptqBlockUniform({ ...p, i1: 200 }, grid), GptqBlockArgumentError);
  assert.throws(() => gptqBlockUniform({ ...p, codeStride: 63 }, grid), GptqBlockArgumentError);
  assert.throws(() => gptqBlockUniform({ ...p, rows: -1 }, grid), /rows must be a u32/);
});
