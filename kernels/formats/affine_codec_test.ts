import assert from "node:assert/strict";
import { affineCodec, hqqInitial } from "./affine_codec.ts";

Deno.test("affine codec: codes and f16 scale and zero round-trip; layout and size", () => {
  const codec = affineCodec(3, 4);
  assert.equal(codec.name, "hqq-int3-g4");
  // 6 columns: 2 groups (4 + 2) × 4 bytes of parameters + ceil(18 bits / 8) = 3 bytes.
  assert.equal(codec.rowBytes(6), 11);
  const out = new Uint8Array(11);
  codec.encodeCodes(Uint8Array.from([0, 7, 3, 1, 5, 2]), [
    { scale: 0.1, zero: 3.3 },
    { scale: 2, zero: -0.5 },
  ], out);
  // Scale 0.1 in f16 is 0x2E66, zero 3.3 is 0x429A; codes packed LSB-first 3 bits each.
  assert.deepEqual([...out.subarray(0, 4)], [0x66, 0x2e, 0x9a, 0x42]);
  const row = new Float32Array(6);
  codec.decodeRow(out, row, 1);
  const [s, z] = [Math.f16round(0.1), Math.f16round(3.3)];
  assert.deepEqual(
    [...row],
    [(0 - z) * s, (7 - z) * s, (3 - z) * s, (1 - z) * s, 11, 5].map(Math.fround),
  );
  assert.equal(affineCodec(4, 0).name, "hqq-int4-ch");
});

Deno.test("affine codec: encodeRow takes HQQ's starting parameters", () => {
  assert.deepEqual(hqqInitial([-1, 0, 2], 0, 3, 4), { inverseScale: 5, zero: 5 });
  assert.deepEqual(hqqInitial([-1, 0, 2], 0, 3, 2), { inverseScale: 1, zero: 1 });
  assert.deepEqual(hqqInitial([0.5, 0.5], 0, 2, 3), { inverseScale: 2e4, zero: -1e4 });
  const codec = affineCodec(2, 0);
  const out = new Uint8Array(codec.rowBytes(3));
  codec.encodeRow(Float32Array.from([-1, 0, 2]), out, 1);
  const row = new Float32Array(3);
  codec.decodeRow(out, row, 1);
  assert.deepEqual([...row], [-1, 0, 2]);
});
