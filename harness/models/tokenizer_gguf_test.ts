import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { openGguf } from "./gguf/reader.ts";
import { ggufTokenizer, ggufVocabulary, tokenizerFromVocabulary } from "./tokenizer_gguf.ts";
import { readVocabVectors } from "./test_vectors.ts";
import { MissingTokenizerError, TokenizerFormatError } from "./errors.ts";

const VOCABS = ["ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf", "ggml-vocab-gpt-2.gguf"];

for (const name of VOCABS) {
  const path = `models/gguf-vocab/${name}`;
  Deno.test({
    name: `tokenizer_gguf: ${name} matches all of llama.cpp's test vectors, both ways`,
    ignore: !hasShared(path),
    async fn() {
      using gguf = await openGguf(sharedPath(path));
      const tok = ggufTokenizer(gguf);
      const vectors = await readVocabVectors(sharedPath(path));
      assert.equal(vectors.length, 46);
      const failures: string[] = [];
      for (const [text, ids] of vectors) {
        const got = tok.encode(text);
        if (JSON.stringify(got) !== JSON.stringify(ids)) {
          failures.push(`${JSON.stringify(text)}: got ${got.join(" ")}, want ${ids.join(" ")}`);
        }
        // Decoding llama.cpp's ids gives the text back (SentencePiece drops the dummy prefix).
        if (tok.decode(ids) !== text) failures.push(`decode ${JSON.stringify(text)}`);
      }
      assert.deepEqual(failures, []);
    },
  });
}

Deno.test({
  name: "tokenizer_gguf: special ids, flags and the chat template come from the metadata",
  ignore: !hasShared("models/gguf-vocab/ggml-vocab-phi-3.gguf"),
  async fn() {
    using gguf = await openGguf(sharedPath("models/gguf-vocab/ggml-vocab-phi-3.gguf"));
    const tok = ggufTokenizer(gguf);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 32000);
    assert.equal(tok.addBos, true);
    assert.equal(tok.addEos, false);
    assert.equal(
      tok.chat?.render([{ role: "user", content: "Hi" }]),
      "<s><|user|>\nHi<|end|>\n<|assistant|>\n",
    );
    // "</s>" is phi-3's one user-defined token (type 4): llama.cpp matches it in plain text and
    // prefixes a space to the text after it; control tokens such as "<|end|>" stay text.
    assert.deepEqual(tok.encode("a</s>b"), [...tok.encode("a"), 2, ...tok.encode("b")]);
    assert.ok(!tok.encode("a<|end|>b").includes(32007));
  },
});

Deno.test("tokenizer_gguf: inconsistent vocabularies are named errors", () => {
  const base = {
    model: "llama" as const,
    tokens: ["<unk>", "<s>", "</s>", "a"],
    tokenTypes: [2, 3, 3, 1],
    bosId: 1,
    eosId: 2,
  };
  assert.throws(
    () => tokenizerFromVocabulary({ ...base, tokenTypes: [1] }, "v.gguf"),
    TokenizerFormatError,
  );
  assert.throws(
    () => tokenizerFromVocabulary({ ...base, eosId: 9 }, "v.gguf"),
    TokenizerFormatError,
  );
  // "▁" is neither a piece nor byte-coded here, and there is no unknown id: only "a" remains.
  assert.deepEqual(tokenizerFromVocabulary(base, "v.gguf").encode("a"), [3]);
});

Deno.test({
  name: "tokenizer_gguf: a GGUF file without tokenizer metadata is a MissingTokenizerError",
  ignore: !hasShared("models/gguf-blocks/rand256-q8_0.gguf"),
  async fn() {
    using gguf = await openGguf(sharedPath("models/gguf-blocks/rand256-q8_0.gguf"));
    gguf.metadata.delete("tokenizer.ggml.tokens");
    assert.throws(() => ggufVocabulary(gguf), MissingTokenizerError);
  },
});
