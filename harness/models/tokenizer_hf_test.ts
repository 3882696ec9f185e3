import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { HfTokenizer, loadHfTokenizer } from "./tokenizer_hf.ts";
import { ChatTemplateError } from "./chat.ts";
import { openGguf } from "./gguf/reader.ts";
import { ggufVocabulary } from "./tokenizer_gguf.ts";
import { hfTokenizerFiles } from "./writers/hf_tokenizer.ts";
import { readVocabVectors } from "./test_vectors.ts";
import { MissingTokenizerError } from "./errors.ts";
import type { ChatMessage } from "../../core/model.ts";

const PARITY = join(REPO_ROOT, "fixtures", "parity");

interface TokenizerReference {
  encode: { text: string; ids: number[]; ids_with_special: number[]; decoded: string }[];
  chat: {
    messages: ChatMessage[];
    tools: unknown[] | null;
    add_generation_prompt: boolean;
    text: string;
    ids: number[];
  }[];
}

async function reference(arch: string): Promise<TokenizerReference> {
  const json = JSON.parse(await Deno.readTextFile(join(PARITY, arch, "reference.json")));
  return json.tokenizer;
}

for (const arch of ["llama", "qwen2"]) {
  Deno.test(`tokenizer_hf: ${arch} encodes, decodes and renders chats as transformers`, async () => {
    // Reference: the Python `tokenizers` library and transformers 5.17 apply_chat_template
    // (fixtures/parity/make_reference.py).
    const ref = await reference(arch);
    const tok = await loadHfTokenizer(join(PARITY, arch));
    for (const e of ref.encode) {
      assert.deepEqual(tok.encode(e.text), e.ids, JSON.stringify(e.text));
      assert.deepEqual(tok.encodeWithSpecialTokens(e.text), e.ids_with_special);
      if (!/<\||<s>/.test(e.text)) assert.equal(tok.decode(e.ids), e.decoded);
    }
    assert.ok(ref.chat.length > 0);
    for (const c of ref.chat) {
      const text = tok.chat!.render(c.messages, {
        tools: c.tools ?? undefined,
        addGenerationPrompt: c.add_generation_prompt,
      });
      assert.equal(text, c.text);
      assert.deepEqual(tok.encode(text), c.ids);
    }
  });
}

Deno.test("tokenizer_hf: BOS/EOS ids and flags follow tokenizer_config and the post-processor", async () => {
  const llama = await loadHfTokenizer(join(PARITY, "llama"));
  assert.deepEqual([llama.bosId, llama.eosId, llama.addBos, llama.addEos], [1, 2, true, false]);
  const qwen = await loadHfTokenizer(join(PARITY, "qwen2"));
  const imEnd = qwen.tokenToId("<|im_end|>");
  // No BOS token: documents are separated by EOS, as llama.cpp's converter records for Qwen2.
  assert.deepEqual([qwen.bosId, qwen.eosId, qwen.addBos, qwen.addEos], [
    imEnd,
    imEnd,
    false,
    false,
  ]);
  assert.equal(qwen.vocabSize, 320);
});

Deno.test("tokenizer_hf: raise_exception in a template is a ChatTemplateError", async () => {
  const llama = await loadHfTokenizer(join(PARITY, "llama"));
  assert.throws(
    () => llama.chat!.render([{ role: "system", content: "x" }]),
    (e: unknown) => e instanceof ChatTemplateError && /Only user and assistant/.test(e.message),
  );
});

Deno.test("tokenizer_hf: a folder without tokenizer.json is a MissingTokenizerError", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(loadHfTokenizer(dir), MissingTokenizerError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const name of ["ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf"]) {
  const path = `models/gguf-vocab/${name}`;
  Deno.test({
    name: `tokenizer_hf: ${name} as tokenizer.json matches llama.cpp's test vectors`,
    ignore: !hasShared(path),
    async fn() {
      // The GGUF vocabulary converted to tokenizer.json (byte-level BPE, or SentencePiece as BPE
      // with merges derived from the scores) and run by @huggingface/tokenizers.
      using gguf = await openGguf(sharedPath(path));
      const tok = new HfTokenizer(hfTokenizerFiles(ggufVocabulary(gguf), path), path);
      const failures: string[] = [];
      for (const [text, ids] of await readVocabVectors(sharedPath(path))) {
        const got = tok.encode(text);
        if (JSON.stringify(got) !== JSON.stringify(ids)) {
          failures.push(`${JSON.stringify(text)}: got ${got.join(" ")}, want ${ids.join(" ")}`);
        }
      }
      assert.deepEqual(failures, []);
    },
  });
}
