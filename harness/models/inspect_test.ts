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
    assert.ok(!("error" in x.tokenizer));
    assert.equal(x.tokenizer.vocabSize, 512);
    assert.equal(x.tokenizer.bos, '"<s>" (1)');
    assert.deepEqual(x.runs, { ok: true });
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
  assert.ok(!("error" in x.tokenizer));
  assert.equal(x.tokenizer.chatTemplate, true);
  assert.equal(x.tokenizer.addBos, true);
});

Deno.test("inspect: unreadable models exit with code 2", async () => {
  assert.equal(await runInspect([join(REPO_ROOT, "fixtures", "parity", "missing.gguf")]), 2);
  assert.equal(await runInspect([]), 2);
});

Deno.test({
  name: "inspect: any GGUF is described; a vocab-only gpt2 file says why it cannot run",
  ignore: !hasShared("models/gguf-vocab/ggml-vocab-gpt-2.gguf"),
  async fn() {
    const path = sharedPath("models/gguf-vocab/ggml-vocab-gpt-2.gguf");
    const x = await inspectModel(path);
    assert.equal(x.architecture, "gpt2");
    assert.equal(x.config, undefined);
    assert.deepEqual(x.runs, {
      ok: false,
      reason: "vocab-only file: it holds a tokenizer and no weights",
    });
    assert.equal(x.tensors.length, 0);
    assert.equal(x.metadata["gpt2.block_count"], "12");
    assert.equal(x.metadata["tokenizer.ggml.tokens"], "[50257 items]");
    assert.ok(!("error" in x.tokenizer) && x.tokenizer.vocabSize === 50257);
    const text = formatInspection(x);
    assert.match(text, /^runs {10}no: vocab-only file/m);
    assert.match(text, /^architecture {2}gpt2$/m);
    assert.equal(await runInspect([path]), 0);
  },
});

Deno.test("inspect: an HF folder of an architecture quantbench does not run is still described", async () => {
  const dir = await Deno.makeTempDir();
  const src = join(REPO_ROOT, "fixtures", "parity", "llama");
  for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(join(src, f), join(dir, f));
  }
  const config = JSON.parse(await Deno.readTextFile(join(src, "config.json")));
  await Deno.writeTextFile(
    join(dir, "config.json"),
    JSON.stringify({ ...config, model_type: "gpt_neox", architectures: ["GPTNeoXForCausalLM"] }),
  );
  const x = await inspectModel(dir);
  assert.equal(x.architecture, "gpt_neox");
  assert.ok(!x.runs.ok && /gpt_neox/.test(x.runs.reason), JSON.stringify(x.runs));
  assert.ok(x.tensors.length > 0);
  assert.equal(x.metadata.model_type, '"gpt_neox"');
  assert.ok(!("error" in x.tokenizer));
  assert.match(formatInspection(x), /^runs {10}no: .*gpt_neox/m);
});
