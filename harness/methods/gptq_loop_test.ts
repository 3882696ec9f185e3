import assert from "node:assert/strict";
import { gptqBlockReach, gptqFactor, type GptqSettings } from "./gptq_loop.ts";

const SETTINGS: GptqSettings = { damp: 0, blockSize: 4, actOrder: false, staticGroups: false };

Deno.test("gptq loop: a block reaches the columns of the groups fitted in it", () => {
  // Groups of 6 over blocks of 4: block [4, 8) fits the group [6, 12).
  assert.equal(gptqBlockReach(0, 4, 20, 6, SETTINGS), 6);
  assert.equal(gptqBlockReach(4, 8, 20, 6, SETTINGS), 12);
  assert.equal(gptqBlockReach(16, 20, 20, 6, SETTINGS), 20);
  // Groups within blocks, static groups, one group per row: the block itself.
  assert.equal(gptqBlockReach(4, 8, 20, 2, SETTINGS), 8);
  assert.equal(gptqBlockReach(4, 8, 20, 6, { ...SETTINGS, staticGroups: true }), 8);
  assert.equal(gptqBlockReach(4, 8, 20, 20, SETTINGS), 8);
});

Deno.test("gptq loop: the factor of diag(1, 0, 4) — dead input, act_order, damping", () => {
  const h = Float64Array.from([1, 0, 0, 0, 0, 0, 0, 0, 4]);
  const before = h.slice();
  // Dead input 1 gets H_11 = 1; act_order: 4 first, then the tie 1 = 1 in index order.
  const f = gptqFactor(h, 3, { ...SETTINGS, actOrder: true, damp: 0.5 });
  assert.deepEqual(h, before, "the Hessian is left unchanged");
  assert.deepEqual(f.dead, [1]);
  assert.deepEqual(f.perm, [2, 0, 1]);
  // damp = 0.5 · mean(4, 1, 1) = 1; U of diag(1/5, 1/2, 1/2) is its square root.
  const expected = [Math.sqrt(1 / 5), 0, 0, 0, Math.sqrt(1 / 2), 0, 0, 0, Math.sqrt(1 / 2)];
  f.hinv.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) < 1e-15, `${i}: ${v}`));
});
