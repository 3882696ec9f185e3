import assert from "node:assert/strict";
import { sharedPath } from "../../core/shared.ts";
import { greedyGenerate } from "./generate.ts";
import { ContextOverflowError } from "./engine.ts";
import { chatPrompt, fallbackChat } from "./chat.ts";
import { CpuRunner } from "../../kernels/cpu/backend.ts";
import { letterTokenizer, missing, stories } from "../tasks/test_context.ts";
import type { Tokenizer } from "../../core/model.ts";

Deno.test({
  name: "generate: greedy decoding from BOS reproduces llama2.c's golden 200 steps",
  ignore: missing("models/stories260K/greedy_200.txt"),
  async fn() {
    const model = await stories();
    const gen = await greedyGenerate(new CpuRunner(model), model.tokenizer, {
      prompt: [1],
      maxTokens: 200,
      stopIds: [],
    }, 512);
    const golden = await Deno.readTextFile(sharedPath("models/stories260K/greedy_200.txt"));
    assert.equal(model.tokenizer.decode([1, ...gen.ids]), golden);
    assert.equal(gen.stopReason, "max_tokens");
    assert.equal(gen.decodeSteps, 199);
    const early = await greedyGenerate(new CpuRunner(model), model.tokenizer, {
      prompt: [1],
      maxTokens: 200,
      stop: (text) => text.includes("Lily"),
    }, 512);
    assert.equal(early.stopReason, "stop");
    assert.match(early.text, /Lily$/);
    const tight = await greedyGenerate(new CpuRunner(model), model.tokenizer, {
      prompt: [1, 2, 3],
      maxTokens: 50,
      stopIds: [],
    }, 8);
    assert.deepEqual([tight.stopReason, tight.ids.length], ["context", 6]);
    await assert.rejects(
      greedyGenerate(new CpuRunner(model), model.tokenizer, { prompt: [1, 2], maxTokens: 5 }, 2),
      ContextOverflowError,
    );
  },
});

Deno.test("chat: the fallback format, and the model's template when it has one", () => {
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hi" },
  ];
  assert.equal(fallbackChat(messages), "System: Be brief.\n\nUser: Hi\n\nAssistant:");
  assert.equal(
    fallbackChat([{ role: "user", content: "Add" }], [{ name: "add" }]),
    'Tools: {"name":"add"}\nCall tools by answering with JSON: ' +
      '[{"name": "<tool>", "arguments": {<name>: <value>, …}}, …]\n\nUser: Add\n\nAssistant:',
  );
  const tokenizer = letterTokenizer(40);
  const plain = chatPrompt(tokenizer, [{ role: "user", content: "ab" }]);
  assert.equal(plain.source, "fallback");
  assert.equal(plain.ids[0], 1, "BOS first");
  let seen: unknown;
  const templated: Tokenizer = {
    ...tokenizer,
    chat: {
      source: "",
      render: (_m: unknown, o: unknown) => {
        seen = o;
        return "ab";
      },
    },
  };
  const t = chatPrompt(templated, [{ role: "user", content: "x" }], [{ name: "f" }]);
  assert.deepEqual(t, { text: "ab", ids: [3, 4], source: "template" }, "no BOS added");
  assert.deepEqual(seen, { tools: [{ name: "f" }], addGenerationPrompt: true });
});
