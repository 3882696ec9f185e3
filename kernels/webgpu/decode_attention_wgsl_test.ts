/**
 * The split decode kernels' shapes: head sizes they are not built for are refused, and the
 * variant that does the q/k/v scatter's work (`rope`) takes a float cache only. Its values against
 * the CPU's over one to three key blocks are in harness/backend_profile_test.ts, the split
 * kernels' in the backend conformance suite.
 */
import assert from "node:assert/strict";
import {
  DecodeAttentionError,
  decodeAttentionShader,
  decodeCombineShader,
} from "./decode_attention_wgsl.ts";
import { kvQuantLayout } from "./kv_quant_wgsl.ts";

Deno.test("decode attention: head sizes and the RoPE variant's cache are checked", () => {
  for (const bad of [6, 260, 0]) {
    assert.throws(() => decodeAttentionShader(bad), DecodeAttentionError);
    assert.throws(() => decodeCombineShader(bad), DecodeAttentionError);
  }
  for (const style of ["interleaved", "half"] as const) {
    const code = decodeAttentionShader(16, undefined, style);
    assert.ok(code.includes("var<storage, read> table") && code.includes("kc[(st.pos"));
  }
  const kv = kvQuantLayout({ format: "int4", group: 8, residual: 16 }, 2, 8, 64);
  assert.throws(() => decodeAttentionShader(8, kv, "half"), DecodeAttentionError);
});
