import assert from "node:assert/strict";
import {
  quantizeActivations,
  quantizeKvGroup,
  runtimeQuantization,
  runtimeUnsupported,
  runtimeUnsupportedOn,
} from "./runtime_quant.ts";
import type { FormatSpec } from "../../core/suite_types.ts";

function spec(options: Record<string, unknown>): FormatSpec {
  return { id: "f", weights: "int8", group: 0, symmetric: true, options };
}

Deno.test("activations: int8 per token as SmoothQuant's absmax (hand-computed)", () => {
  // Row 0: amax 2 → scale 2/127; 1/scale = 63.5 rounds to even 64; −2 → −127; 0.5 → 31.75 → 32.
  // Row 1: all zero → scale 1e-5/127, codes 0.
  const x = new Float32Array([1, -2, 0.5, 0, 0, 0]);
  const out = quantizeActivations(x, 3, "int8");
  const s = Math.fround(2 / 127);
  assert.deepEqual([...out], [64 * s, -127 * s, 32 * s, 0, 0, 0].map(Math.fround));
  // int4: qmax 7, scale fround(2/7) = 0.28571430 (just above 2/7), so 1/scale = 3.4999999 → 3;
  // 0.5 → 1.75 → 2.
  const s4 = Math.fround(2 / 7);
  assert.deepEqual([...quantizeActivations(x.subarray(0, 3), 3, "int4")], [
    Math.fround(3 * s4),
    Math.fround(-7 * s4),
    Math.fround(2 * s4),
  ]);
  // int6: qmax 31, scale fround(2/31); 1 → 15.5 in float32 division → ties to even 16; 0.5 → 7.75
  // → 8.
  const s6 = Math.fround(2 / 31);
  assert.equal(Math.fround(1 / s6), 15.5);
  assert.deepEqual([...quantizeActivations(x.subarray(0, 3), 3, "int6")], [
    Math.fround(16 * s6),
    Math.fround(-31 * s6),
    Math.fround(8 * s6),
  ]);
});

Deno.test("activations: fp8 per token as vLLM's dynamic scale (hand-computed)", () => {
  // amax 448 → scale 1: E4M3 values themselves; 17 lies between 16 and 18 (spacing 2) → ties
  // to even mantissa → 16; 0.3 → nearest E4M3 0.3125 (subnormal spacing 2^-9 is finer).
  const out = quantizeActivations(new Float32Array([448, 17, -0.3]), 3, "fp8");
  assert.deepEqual([...out], [448, 16, -0.3125]);
  // amax 0 → the minimum scale 1/(448·512), zeros stay zero.
  assert.deepEqual([...quantizeActivations(new Float32Array(2), 2, "fp8")], [0, 0]);
});

Deno.test("kv groups: KIVI asymmetric integers and symmetric FP8 (hand-computed)", () => {
  // int2: min 0, max 3 → scale 1: [0, 0.4, 1, 3] → codes 0, 0, 1, 3.
  const src = new Float32Array([0, 0.4, 1, 3]);
  const dst = new Float32Array(4);
  quantizeKvGroup(src, dst, 0, 1, 4, "int2");
  assert.deepEqual([...dst], [0, 0, 1, 3]);
  // Strided: every second value of [1, 9, 2, 9, 5, 9] with int4: min 1, max 5, scale 4/15.
  const strided = new Float32Array([1, 9, 2, 9, 5, 9]);
  const out = new Float32Array(6).fill(-1);
  quantizeKvGroup(strided, out, 0, 2, 3, "int4");
  const scale = Math.f16round(4 / 15);
  assert.deepEqual([...out], [1, -1, Math.round(1 / scale) * scale + 1, -1, 15 * scale + 1, -1]);
  // A constant group decodes to its value.
  const same = new Float32Array([0.7, 0.7]);
  const sameOut = new Float32Array(2);
  quantizeKvGroup(same, sameOut, 0, 1, 2, "int8");
  assert.deepEqual([...sameOut], [Math.f16round(0.7), Math.f16round(0.7)]);
  // fp8: amax 448 → scale 1.
  const f = new Float32Array(2);
  quantizeKvGroup(new Float32Array([-448, 17]), f, 0, 1, 2, "fp8");
  assert.deepEqual([...f], [-448, 16]);
});

Deno.test("runtime settings: defaults, checks and backend capability", () => {
  assert.equal(runtimeQuantization(spec({})), undefined);
  assert.deepEqual(runtimeQuantization(spec({ kv_cache: { format: "int4", group: 32 } })), {
    kvCache: { format: "int4", group: 32, residual: 128 },
  });
  assert.deepEqual(runtimeQuantization(spec({ activations: "int8" })), { activations: "int8" });
  assert.match(runtimeUnsupported(spec({ activations: "q4_0" }))!, /activations "q4_0"/);
  assert.match(
    runtimeUnsupported(spec({ kv_cache: { format: "int4", group: 32, residual: 48 } }))!,
    /multiple of group 32/,
  );
  assert.match(
    runtimeUnsupported(spec({ kv_cache: { format: "int4", group: 0, residual: 0 } }))!,
    /needs a group or a residual window/,
  );
  assert.equal(runtimeUnsupported(spec({ kv_cache: { format: "fp8", group: 0 } })), undefined);
  const w8a8 = spec({ activations: "int8" });
  assert.equal(
    runtimeUnsupportedOn(w8a8, "cpu", { activations: ["int8"], kvCache: true }),
    undefined,
  );
  assert.match(runtimeUnsupportedOn(w8a8, "webgpu", undefined)!, /does not quantize activations/);
  assert.match(
    runtimeUnsupportedOn(spec({ activations: "fp8" }), "webgpu", {
      activations: ["int8"],
      kvCache: false,
    })!,
    /activations to fp8 .*it quantizes them to int8/,
  );
  const kv = spec({ kv_cache: { format: "int8", group: 0 } });
  assert.match(
    runtimeUnsupportedOn(kv, "webgpu", { activations: ["int8"], kvCache: false })!,
    /has no quantized KV cache/,
  );
  assert.equal(runtimeUnsupportedOn(spec({}), "webgpu", undefined), undefined);
});
