import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModelPath } from "./load.ts";
import { CpuRunner } from "../../kernels/cpu/backend.ts";
import { REPO_ROOT } from "../../core/shared.ts";

interface Case {
  ids: number[];
  positions: number[];
  logits: number[][];
}

const models = join(REPO_ROOT, "fixtures", "models");
const reference = JSON.parse(await Deno.readTextFile(join(models, "reference.json")));

for (const name of ["micro", "mini"]) {
  Deno.test(`fixture models: ${name} loads through the HF loader and matches PyTorch's f32 logits`, async () => {
    const model = await loadModelPath(join(models, name));
    const cases: Case[] = reference.models[name].reference;
    assert.ok(cases.length >= 2);
    for (const c of cases) {
      const runner = new CpuRunner(model);
      const logits = runner.forwardSync(c.ids, 0);
      const V = model.config.vocabSize;
      let max = 0;
      for (const [k, pos] of c.positions.entries()) {
        for (let v = 0; v < V; v++) {
          max = Math.max(max, Math.abs(logits[pos * V + v]! - c.logits[k]![v]!));
        }
      }
      assert.ok(max <= 1e-4, `${name}: max |Δlogit| ${max}`);
    }
  });
}

Deno.test("fixture models: the chat template renders tools and the generation prompt", async () => {
  const model = await loadModelPath(join(models, "mini"));
  const chat = model.tokenizer.chat;
  assert.ok(chat, "mini has a chat template");
  const text = chat.render([{ role: "user", content: "hi" }], { addGenerationPrompt: true });
  assert.equal(text, "<|user|>hi<|end|><|assistant|>");
  // Special tokens are single ids, so prompts end exactly at the assistant marker.
  const ids = model.tokenizer.encode(text);
  const assistant = model.tokenizer.encode("<|assistant|>");
  assert.equal(assistant.length, 1);
  assert.equal(ids.at(-1), assistant[0]);
});
