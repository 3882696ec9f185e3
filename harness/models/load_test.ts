import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { loadModel, loadModelPath, modelFormat, ModelLoadError } from "./load.ts";
import { openGguf } from "./gguf/reader.ts";
import { ggufVocabulary } from "./tokenizer_gguf.ts";

const ORIGINAL = "models/stories260K/stories260K.bin";
const F32 = "models/stories260K/gguf/stories260K-f32.gguf";

Deno.test("load: paths are dispatched by kind", async () => {
  assert.equal(modelFormat(join(REPO_ROOT, "fixtures", "parity", "qwen2")), "hf");
  assert.equal(modelFormat("x.gguf"), "gguf");
  assert.equal(modelFormat("x.bin"), "llama2c");
  assert.equal(modelFormat(join(REPO_ROOT, "fixtures")), undefined);
  await assert.rejects(
    loadModel({ id: "m", path: join(REPO_ROOT, "fixtures") }),
    (e: unknown) => e instanceof ModelLoadError && /Model "m": cannot load/.test(e.message),
  );
  const hf = await loadModel({ id: "q", path: join(REPO_ROOT, "fixtures", "parity", "qwen2") });
  assert.equal(hf.config.architecture, "qwen2");
});

Deno.test({
  name: "load: a llama2.c tokenizer's vocabulary is the one llama.cpp's converter writes",
  ignore: !hasShared(ORIGINAL) || !hasShared(F32),
  async fn() {
    const model = await loadModelPath(sharedPath(ORIGINAL));
    using gguf = await openGguf(sharedPath(F32));
    const theirs = ggufVocabulary(gguf);
    const ours = model.tokenizer.vocab!;
    assert.deepEqual(ours.tokens, theirs.tokens);
    assert.deepEqual(ours.tokenTypes, theirs.tokenTypes);
    assert.deepEqual(ours.scores, theirs.scores);
    assert.deepEqual([ours.bosId, ours.eosId, ours.unknownId], [1, 2, 0]);
  },
});
