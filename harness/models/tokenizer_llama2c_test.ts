import assert from "node:assert/strict";
import { loadLlama2cTokenizer } from "./tokenizer_llama2c.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";

const TOK = "models/stories260K/tok512.bin";

Deno.test({
  name: "tokenizer_llama2c: encodes as llama2.c does and decodes back",
  ignore: !hasShared(TOK),
  async fn() {
    const tok = loadLlama2cTokenizer(await Deno.readFile(sharedPath(TOK)), TOK, 512);
    // The dummy prefix makes the first word a " Once"-style piece, as SentencePiece does.
    const once = tok.encode("Once");
    assert.equal(tok.decode(once), " Once");
    assert.equal(tok.decode([tok.bosId, ...once]), "Once");
    assert.deepEqual(tok.encode(""), []);
    const text = "Héllo wörld ✓ 123\nnew line";
    assert.equal(tok.decode([tok.bosId, ...tok.encode(text)]), text);
    // Characters outside the vocabulary fall back to their UTF-8 bytes (ids byte + 3).
    const ids = tok.encode("✓");
    assert.ok([0xe2 + 3, 0x9c + 3, 0x93 + 3].every((b) => ids.includes(b)));
  },
});

Deno.test({
  name: "tokenizer_llama2c: a truncated tokenizer file is a named error",
  ignore: !hasShared(TOK),
  async fn() {
    const bytes = (await Deno.readFile(sharedPath(TOK))).slice(0, 100);
    assert.throws(() => loadLlama2cTokenizer(bytes, "tok.bin", 512), /tok\.bin: tokenizer ends/);
  },
});
