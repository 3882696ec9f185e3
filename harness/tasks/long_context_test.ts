import assert from "node:assert/strict";
import { REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { longContext, passkeyItems } from "./long_context.ts";
import {
  contextFor,
  datasetOf,
  engineFor,
  missing,
  referenceOver,
  samplesReproduce,
  stories,
} from "./test_context.ts";

const ESSAYS = "data/longctx/paul_graham_essays.txt";

Deno.test({
  name: "long_context: passkey prompts fill the length budget with the needle at its depth",
  ignore: missing(ESSAYS),
  async fn() {
    const engine = engineFor(await stories());
    const haystack = (await Deno.readTextFile(sharedPath(ESSAYS))).slice(0, 50000);
    const items = passkeyItems(engine, haystack, [128, 256], {
      depths: [0.1, 0.9],
      trials: 2,
      maxNewTokens: 16,
    }, 0);
    assert.equal(items.length, 8);
    for (const item of items) {
      const tokens = engine.chat([{ role: "user", content: item.prompt }]).ids.length;
      assert.ok(tokens <= item.length - 16 && tokens > item.length - 40, `${item.id}: ${tokens}`);
      const needle =
        `The pass key is ${item.answer}. Remember it. ${item.answer} is the pass key. `;
      const at = item.prompt.indexOf(needle);
      const filler = item.prompt.length - needle.length - "\n\nWhat is the pass key?".length;
      const where = at / filler;
      // Within a word or sentence of the depth (the 128-token haystacks are ~150 characters).
      assert.ok(Math.abs(where - item.depth) < 0.15, `${item.id} needle at ${where.toFixed(2)}`);
      assert.match(item.answer, /^\d{5}$/);
    }
    assert.notEqual(items[0]!.answer, items[1]!.answer, "trials draw their own keys");
    assert.deepEqual(
      passkeyItems(engine, haystack, [128], {
        depths: [0.1],
        trials: 1,
        maxNewTokens: 16,
      }, 0)[0],
      items[0],
      "seeded",
    );
  },
});

Deno.test({
  name: "long_context: rows by length and depth; against itself the ratios are 1 and deltas 0",
  ignore: missing(),
  async fn() {
    const model = await stories();
    const options = {
      lengths: [128, 256, 1024],
      depths: [0.5],
      trials: 2,
      windows: 2,
      max_new_tokens: 8,
    };
    const text = datasetOf(sharedPath("data/text/tinystories_sample.txt"));
    const rows = await longContext.run(contextFor(model, "long_context", options, {
      reference: referenceOver(model, { isSelf: true }),
      datasets: { [text.id]: text },
    }));
    const metrics = rows.map((r) => r.metric);
    assert.deepEqual(metrics, [
      "ppl@128",
      "ppl_ratio@128",
      "ppl@256",
      "ppl_ratio@256",
      "retrieval@128",
      "retrieval@128:d=0.5",
      "retrieval_delta@128",
      "retrieval@256",
      "retrieval@256:d=0.5",
      "retrieval_delta@256",
    ]);
    const get = (m: string) => rows.find((r) => r.metric === m)!;
    assert.equal(get("ppl_ratio@128").value, 1);
    assert.deepEqual(samplesReproduce(rows), []);
    assert.equal(get("retrieval_delta@256").value, 0);
    assert.equal(get("ppl@256").samples!.values.length, 2);
    assert.ok(get("ppl@256").value > 1 && get("ppl@256").n === 2);
    assert.match(
      rows[0]!.detail,
      /source=generated ppl_text=tinystories_sample\.txt .* skipped_lengths=1024>512/,
    );
  },
});

Deno.test({
  name: "long_context: a JSON Lines set supplies its own questions (fixture long_context.jsonl)",
  ignore: missing(),
  async fn() {
    const model = await stories();
    const dataset = datasetOf(`${REPO_ROOT}/fixtures/datasets/long_context.jsonl`, "jsonl");
    const rows = await longContext.run(contextFor(model, "long_context", {
      lengths: [256, 1024],
      windows: 1,
      limit: 3,
      max_new_tokens: 4,
    }, { dataset }));
    // Questions of 256 tokens fit stories260K's 512 (1024 does not: skipped); only the lengths
    // asked for are taken from the set; the 3-sample limit is spread over strata.
    const retrieval = rows.filter((r) => /^retrieval@\d+$/.test(r.metric));
    assert.equal(retrieval.reduce((a, r) => a + r.n!, 0), 3);
    assert.ok(rows.every((r) => !r.metric.startsWith("retrieval@1024")));
    // No text dataset: no perplexity rows (the questions' key–value filler is not natural text).
    assert.ok(rows.every((r) => !r.metric.startsWith("ppl")));
    assert.match(rows[0]!.detail, /source=jsonl ppl_text=none/);
  },
});

Deno.test({
  name:
    "long_context: perplexity by length comes from natural text — the text option, else the first text dataset",
  ignore: missing("data/text/tinystories_sample.txt", "data/text/tinyshakespeare.txt"),
  async fn() {
    const model = await stories();
    const questions = datasetOf(`${REPO_ROOT}/fixtures/datasets/long_context.jsonl`, "jsonl");
    const a = datasetOf(sharedPath("data/text/tinystories_sample.txt"));
    const b = datasetOf(sharedPath("data/text/tinyshakespeare.txt"), "text", { maxChars: 40000 });
    const options = { lengths: [256], windows: 2, limit: 1, max_new_tokens: 2 };
    const run = (extra: Record<string, unknown>) =>
      longContext.run(contextFor(model, "long_context", { ...options, ...extra }, {
        dataset: questions,
        datasets: { [questions.id]: questions, [a.id]: a, [b.id]: b },
      }));
    const first = await run({});
    const named = await run({ text: b.id });
    const ppl = (rows: typeof first) => rows.find((r) => r.metric === "ppl@256")!;
    assert.match(ppl(first).detail, /ppl_text=tinystories_sample\.txt/);
    assert.match(ppl(named).detail, /ppl_text=tinyshakespeare\.txt/);
    // stories260K knows children's stories, not Shakespeare: natural text it was trained on
    // scores far lower than text it never saw.
    assert.ok(ppl(first).value < ppl(named).value, `${ppl(first).value} ${ppl(named).value}`);
    assert.ok(ppl(first).value > 1 && ppl(first).value < 100, `${ppl(first).value}`);
  },
});
