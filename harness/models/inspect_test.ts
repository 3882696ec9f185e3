import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { formatInspection, inspectModel, runInspect } from "./inspect.ts";

Deno.test({
  name: "inspect: stories260K Q8_0 GGUF — parameters, tensor table and bits per weight",
  ignore: !hasShared("models/stories260K/gguf/stories260K-q8_0.gguf"),
  async fn() {
    const x = await inspectModel(sharedPath("models/stories260K/gguf/stories260K-q8_0.gguf"));
    // 260,032 llama2.c parameters plus the classifier copy llama.cpp's converter stores.
    assert.equal(x.parameters, 260_032 + 512 * 64);
    assert.equal(x.tensors.length, 48);
    const q = x.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
    assert.deepEqual(q, {
      name: "blk.0.attn_q.weight",
      shape: [64, 64],
      type: "Q8_0",
      bytes: 4352,
      linear: true,
    });
    // Per layer: 34,304 weights in Q8_0 (34 bytes per 32) and ffn_down's 11,008 in F32.
    assert.ok(Math.abs(x.linearBitsPerWeight - (34_304 * 8.5 + 11_008 * 32) / 45_312) < 1e-12);
    assert.equal(x.tokenizer.vocabSize, 512);
    assert.equal(x.tokenizer.bos, '"<s>" (1)');
    const text = formatInspection(x);
    assert.match(text, /^architecture {2}llama: dim 64, ffn 172, layers 5, heads 8 \(kv 4\)/m);
    assert.match(text, /blk\.0\.attn_q\.weight +\[64, 64\] +Q8_0 +4352/);
  },
});

Deno.test("inspect: an HF folder reports its dtype, shards and tokenizer", async () => {
  const x = await inspectModel(join(REPO_ROOT, "fixtures", "parity", "mistral"));
  assert.equal(x.format, "Hugging Face folder");
  assert.ok(x.tensors.every((t) => t.type === "F16"));
  assert.equal(x.linearBitsPerWeight, 16);
  assert.equal(x.tensors.length, 21);
  assert.equal(x.tokenizer.chatTemplate, true);
  assert.equal(x.tokenizer.addBos, true);
});

Deno.test("inspect: unreadable models exit with code 2", async () => {
  assert.equal(await runInspect([join(REPO_ROOT, "fixtures", "parity", "missing.gguf")]), 2);
  assert.equal(await runInspect([]), 2);
});
