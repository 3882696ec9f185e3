import assert from "node:assert/strict";
import { sharedPath } from "../../core/shared.ts";
import { countWords, perplexity, ratioOfSums, windowNlls } from "./perplexity.ts";
import { DatasetError } from "../../core/dataset.ts";
import { tokenNll } from "./nll.ts";
import { llamaCppChunks } from "./windows.ts";
import { CpuRunner } from "../../kernels/cpu/backend.ts";
import {
  contextFor,
  datasetOf,
  engineFor,
  FakeRunner,
  letterTokenizer,
  missing,
  samplesReproduce,
  stories,
} from "./test_context.ts";
import type { LlamaModel } from "../../core/model.ts";

const TINY = "data/text/tinystories_sample.txt";
const ignore = missing(TINY);
const tiny = () => datasetOf(sharedPath(TINY));

Deno.test({
  name: "perplexity: gptq rows are what the original gptq code computed, bit for bit",
  ignore,
  async fn() {
    const model = await stories();
    const ctx = contextFor(model, "perplexity", { context: 128, protocol: "gptq", max_tokens: 0 });
    const rows = await perplexity.run({ ...ctx, dataset: tiny() });
    // The walking skeleton's loop, verbatim in substance: windows of 128, tokens 1..127 scored.
    const ids = model.tokenizer.encode(await Deno.readTextFile(sharedPath(TINY)));
    const windows = Math.floor(ids.length / 128);
    const runner = new CpuRunner(model);
    const per: number[] = [];
    let total = 0;
    for (let w = 0; w < windows; w++) {
      const window = ids.slice(w * 128, (w + 1) * 128);
      runner.reset();
      const logits = runner.forwardSync(window, 0);
      let sum = 0;
      for (let t = 0; t + 1 < 128; t++) sum += tokenNll(logits, 512, t, window[t + 1]!);
      per.push(sum / 127);
      total += sum;
    }
    const nll = total / (windows * 127);
    const mean = per.reduce((a, b) => a + b, 0) / per.length;
    const se = Math.sqrt(
      per.reduce((a, v) => a + (v - mean) ** 2, 0) / (per.length - 1) / per.length,
    );
    const [ppl, nllRow] = rows;
    assert.equal(ppl!.metric, "ppl");
    assert.equal(ppl!.value, Math.exp(nll));
    assert.equal(ppl!.stderr, Math.exp(nll) * se);
    assert.equal(nllRow!.value, nll);
    assert.equal(ppl!.n, windows * 127);
    assert.equal(ppl!.detail, `ppl protocol=gptq ctx=128 bos=false unit=token windows=${windows}`);
    assert.deepEqual(ppl!.samples, {
      kind: "window_nll",
      values: per,
      weights: per.map(() => 127),
    });
  },
});

Deno.test({
  name:
    "perplexity: rolling, one window per story, reproduces the independent 1804 tokens at 1.2664",
  ignore,
  async fn() {
    // shared/models/stories260K/README.md: a float64 forward pass, BOS first, story by story.
    const model = await stories();
    const dataset = datasetOf(sharedPath(TINY), "text", { separator: "<|endoftext|>" });
    const ctx = contextFor(model, "perplexity", { context: 512, protocol: "rolling" });
    const rows = await perplexity.run({ ...ctx, dataset });
    const get = (m: string) => rows.find((r) => r.metric === m)!;
    assert.equal(get("nll").n, 1804);
    assert.ok(Math.abs(get("nll").value - 1.2664) < 0.001, `nll ${get("nll").value}`);
    const totalNll = get("nll").value * 1804;
    // Words and bytes as Python counts them (re.split(r"\s+", doc), UTF-8): 725 and 3717.
    assert.equal(get("word_perplexity").n, 725);
    assert.equal(get("byte_perplexity").n, 3717);
    assert.ok(Math.abs(get("word_perplexity").value - Math.exp(totalNll / 725)) < 1e-9);
    assert.ok(Math.abs(get("bits_per_byte").value - totalNll / 3717 / Math.LN2) < 1e-12);
    assert.equal(get("ppl").samples!.values.length, 5);
    assert.match(
      get("ppl").detail,
      /^ppl protocol=rolling ctx=512 bos=true unit=token docs=5 windows=5$/,
    );
    assert.ok(get("ppl").stderr! > 0);
    assert.deepEqual(samplesReproduce(rows), []);
    // Shorter windows: every token is still predicted once, with less context on average.
    const short = await perplexity.run({
      ...contextFor(model, "perplexity", { context: 64, protocol: "rolling" }),
      dataset,
    });
    assert.equal(short[1]!.n, 1804);
    assert.ok(short[1]!.value > get("nll").value);
    assert.equal(countWords(" a  b\nc "), 5); // Python: ['', 'a', 'b', 'c', '']
  },
});

/** A model with no weights for a {@linkcode FakeRunner}: a configuration and a tokenizer. */
function uniformModel(vocab: number, maxSeqLen: number): LlamaModel {
  const none = new Float32Array(0);
  return {
    config: { vocabSize: vocab, maxSeqLen, dim: 4 },
    tokenizer: letterTokenizer(vocab),
    weights: {
      layers: [],
      output: { kind: "dense", rows: 0, cols: 0, data: none },
      finalNorm: none,
      tokenEmbedding: none,
      tiedEmbeddings: false,
    },
  } as unknown as LlamaModel;
}

Deno.test("perplexity: llama.cpp protocol feeds BOS-first chunks and scores their second half", async () => {
  const model = uniformModel(30, 64);
  const runner = new FakeRunner(30, () => new Float32Array(30));
  const dir = await Deno.makeTempDir();
  const path = `${dir}/t.txt`;
  await Deno.writeTextFile(path, "abcdefghijklmnopqrstuvwxyz".repeat(2)); // 52 tokens + BOS
  const ctx = contextFor(model, "perplexity", { context: 16, protocol: "llama.cpp" }, { runner });
  const rows = await perplexity.run({ ...ctx, dataset: datasetOf(path) });
  // 53 tokens → 3 chunks of 16; each scores 16 − 1 − 8 = 7 tokens under uniform logits: NLL ln 30.
  assert.equal(runner.calls.length, 3);
  assert.ok(runner.calls.every((c) => c.tokens[0] === 1 && c.tokens.length === 16 && c.pos === 0));
  // Chunk 1 is stream[16..32) of [BOS, a, b, …]: its inputs after BOS are the 17th and 18th letters.
  assert.deepEqual(runner.calls[1]!.tokens.slice(1, 3), [3 + 16, 3 + 17]);
  assert.equal(rows[0]!.n, 21);
  assert.ok(Math.abs(rows[0]!.value - 30) < 1e-9);
  assert.ok((rows[0]!.stderr ?? 0) < 1e-5, "no spread, (almost) no uncertainty");
  assert.equal(
    rows[0]!.detail,
    "ppl protocol=llama.cpp ctx=16 bos=true unit=token chunks=3 first=8",
  );
  // A tokenizer that adds no BOS (llama.cpp's add_bos false): chunks are fed as they are.
  const noBos = { ...model, tokenizer: { ...model.tokenizer, addBos: false } } as LlamaModel;
  const plain = new FakeRunner(30, () => new Float32Array(30));
  const [row] = await perplexity.run({
    ...contextFor(noBos, "perplexity", { context: 16, protocol: "llama.cpp" }, { runner: plain }),
    dataset: datasetOf(path),
  });
  assert.deepEqual(plain.calls[0]!.tokens.slice(0, 2), [3, 4]);
  assert.equal(row!.n, 21);
  assert.match(row!.detail, /bos=false/);
  await assert.rejects(
    perplexity.run({
      ...contextFor(model, "perplexity", { context: 32, protocol: "llama.cpp" }, { runner }),
      dataset: datasetOf(path),
    }),
    (e) => e instanceof DatasetError && /needs at least 2 × context = 64/.test(e.message),
  );
  await assert.rejects(
    perplexity.run({
      ...ctx,
      task: { ...ctx.task, options: { protocol: "wiki" } },
      dataset: datasetOf(path),
    }),
    /protocol "wiki" is not supported; known: gptq, llama.cpp, rolling/,
  );
});

Deno.test({
  name: "perplexity: llama.cpp uncertainty is llama-perplexity's sqrt((⟨nll²⟩ − ⟨nll⟩²)/(N − 1))",
  ignore,
  async fn() {
    const model = await stories();
    const ctx = contextFor(model, "perplexity", { context: 128, protocol: "llama.cpp" });
    const [ppl] = await perplexity.run({ ...ctx, dataset: tiny() });
    const text = await Deno.readTextFile(sharedPath(TINY));
    const ids = [1, ...model.tokenizer.encode(text)];
    const nlls: number[] = [];
    for (const w of llamaCppChunks(ids, 128, 1)) {
      nlls.push(...await windowNlls(engineFor(model), w));
    }
    const n = nlls.length;
    const mean = nlls.reduce((a, b) => a + b, 0) / n;
    const mean2 = nlls.reduce((a, b) => a + b * b, 0) / n;
    assert.equal(n, Math.floor(ids.length / 128) * 63);
    assert.ok(Math.abs(ppl!.value - Math.exp(mean)) < 1e-9);
    assert.ok(
      Math.abs(ppl!.stderr! - Math.exp(mean) * Math.sqrt((mean2 - mean * mean) / (n - 1))) < 1e-9,
    );
  },
});

Deno.test("perplexity: rolling over JSON Lines documents scores every token once", async () => {
  const model = uniformModel(30, 64);
  const runner = new FakeRunner(30, () => new Float32Array(30));
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  await Deno.writeTextFile(path, '{"text": "abcde"}\n\n{"text": "fgh"}\n"ijklmnopqrst"\n');
  const rows = await perplexity.run({
    ...contextFor(model, "perplexity", { context: 4, protocol: "rolling" }, { runner }),
    dataset: datasetOf(path, "jsonl"),
  });
  assert.equal(rows[0]!.n, 20);
  assert.ok(Math.abs(rows[0]!.value - 30) < 1e-9, "uniform over 30 tokens");
  // Windows of at most 4 tokens, BOS first in each document's first window: 2 + 1 + 3 calls.
  assert.equal(runner.calls.length, 6);
  assert.ok(runner.calls.every((c) => c.tokens.length <= 4));
  assert.deepEqual(runner.calls[0]!.tokens, [1, 3, 4, 5]);
  assert.equal(rows[2]!.n, 3, "three words");
});

Deno.test("perplexity: ratio-of-sums standard error by the delta method", () => {
  // a = 2b exactly: no spread around the ratio.
  assert.deepEqual(ratioOfSums([2, 4, 6], [1, 2, 3]), { value: 2, stderr: 0 });
  // Hand computation: R = 6/6 = 1; residuals 1, −1; sqrt(2/1 · 2)/6 = 1/3.
  const r = ratioOfSums([2, 4], [1, 5]);
  assert.equal(r.value, 1);
  assert.ok(Math.abs(r.stderr! - 2 / 6) < 1e-15);
  assert.equal(ratioOfSums([1], [2]).stderr, null);
});

Deno.test({
  name: "perplexity: speed adds a tokens_per_s row timed without the first batch",
  ignore,
  async fn() {
    const model = await stories();
    const options = { context: 64, protocol: "gptq", max_tokens: 64 * 12 };
    const plain = await perplexity.run({
      ...contextFor(model, "perplexity", options),
      dataset: tiny(),
    });
    const timed = await perplexity.run({
      ...contextFor(model, "perplexity", { ...options, speed: true }),
      dataset: tiny(),
    });
    // The scores do not change; the third row counts the 4 windows after the first 8.
    assert.deepEqual(timed.slice(0, 2), plain);
    assert.equal(timed.length, 3);
    const speed = timed[2]!;
    assert.equal(speed.metric, "tokens_per_s");
    assert.equal(speed.higher_is_better, true);
    assert.equal(speed.n, 4 * 64);
    assert.ok(speed.value > 0 && Number.isFinite(speed.value), `got ${speed.value}`);
    assert.match(speed.detail, /timed=1 batches of 8, first 8 windows untimed \(warm-up\)$/);
  },
});
