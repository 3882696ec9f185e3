import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, REPO_ROOT, sharedPath } from "../../../core/shared.ts";
import { loadModelPath } from "../load.ts";
import { loadGgufModel } from "../gguf_model.ts";
import { loadHfModel } from "../hf/load.ts";
import { openGguf } from "../gguf/reader.ts";
import { writeGguf } from "./gguf.ts";
import { RotatedModelError } from "./export.ts";
import { tinyModel } from "../testing.ts";
import { writeHfModel } from "./hf.ts";
import type { LlamaModel } from "../../../core/model.ts";
import { CpuRunner } from "../../../kernels/cpu/backend.ts";

const ORIGINAL = "models/stories260K/stories260K.bin";
const GGUF_DIR = "models/stories260K/gguf";
const ignore = !hasShared(ORIGINAL) || !hasShared(GGUF_DIR);
const PARITY = join(REPO_ROOT, "fixtures", "parity");
const TEXT = "Once upon a time, Lily found a red ball in the garden.";

function logits(model: LlamaModel, ids: number[]): Float32Array {
  return new CpuRunner(model, ids.length).forwardSync(ids, 0);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "quantbench-writers-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "writers: stories260K to GGUF F32 and back gives the llama2.c logits exactly",
  ignore,
  async fn() {
    const original = await loadModelPath(sharedPath(ORIGINAL));
    const ids = [1, ...original.tokenizer.encode(TEXT)];
    await withTempDir(async (dir) => {
      const path = join(dir, "stories.gguf");
      await writeGguf(original, path);
      const back = await loadGgufModel(path);
      assert.deepEqual(logits(back, ids), logits(original, ids));
      assert.deepEqual(back.tokenizer.encode(TEXT), ids.slice(1));
      assert.equal(back.tokenizer.decode(ids), TEXT);
    });
  },
});

for (const type of ["Q8_0", "Q4_0", "F16"]) {
  Deno.test({
    name: `writers: stories260K as GGUF ${type} holds llama.cpp's own tensor bytes`,
    ignore,
    async fn() {
      // llama-quantize --pure wrote stories260K-<type>.gguf from llama.cpp's F32 conversion of
      // the same checkpoint; every tensor we write must be byte-identical to its counterpart.
      const original = await loadModelPath(sharedPath(ORIGINAL));
      await withTempDir(async (dir) => {
        const path = join(dir, "stories.gguf");
        await writeGguf(original, path, { type, embeddingType: type });
        using ours = await openGguf(path);
        using theirs = await openGguf(
          sharedPath(GGUF_DIR, `stories260K-${type.toLowerCase()}.gguf`),
        );
        assert.equal(ours.tensors.length, theirs.tensors.length - 1); // no separate output.weight
        for (const t of ours.tensors) {
          const other = theirs.tensor(t.name);
          assert.equal(t.typeName, other.typeName, t.name);
          assert.deepEqual(t.shape, other.shape, t.name);
          assert.deepEqual(
            await ours.readTensorBytes(t),
            await theirs.readTensorBytes(other),
            t.name,
          );
        }
      });
    },
  });
}

Deno.test({
  name: "writers: stories260K to an HF folder and back gives the llama2.c logits",
  ignore,
  async fn() {
    const original = await loadModelPath(sharedPath(ORIGINAL));
    const ids = [1, ...original.tokenizer.encode(TEXT)];
    await withTempDir(async (dir) => {
      await writeHfModel(original, dir);
      const back = await loadHfModel(dir);
      assert.equal(back.config.ropeStyle, "half");
      // The q/k rows are permuted, so attention sums run in another order: equal to rounding.
      assert.ok(maxAbsDiff(logits(back, ids), logits(original, ids)) < 1e-5);
      // tokenizer.json made from the SentencePiece scores tokenizes as llama2.c does.
      assert.deepEqual(back.tokenizer.encode(TEXT), ids.slice(1));
      assert.equal(back.tokenizer.decode(ids), TEXT);
      assert.equal(back.tokenizer.addBos, true);
    });
  },
});

Deno.test({
  name: "writers: a llama.cpp Q4_0 file re-exported keeps its blocks; as HF it is dequantized",
  ignore,
  async fn() {
    const q4 = await loadGgufModel(sharedPath(GGUF_DIR, "stories260K-q4_0.gguf"));
    const ids = [1, ...q4.tokenizer.encode(TEXT)];
    const want = logits(q4, ids);
    await withTempDir(async (dir) => {
      const path = join(dir, "again.gguf");
      await writeGguf(q4, path);
      const again = await loadGgufModel(path);
      assert.equal(again.weights.layers[0]!.w1.kind, "coded");
      assert.deepEqual(logits(again, ids), want);
      await writeHfModel(q4, join(dir, "hf"), { dtype: "F32" });
      assert.ok(maxAbsDiff(logits(await loadHfModel(join(dir, "hf")), ids), want) < 1e-5);
    });
  },
});

for (const arch of ["llama", "mistral", "qwen2", "qwen3"]) {
  Deno.test(`writers: the ${arch} parity model survives GGUF and HF round trips`, async () => {
    const model = await loadHfModel(join(PARITY, arch));
    const ids = [5, 77, 150, 9, 64, 33];
    const want = logits(model, ids);
    await withTempDir(async (dir) => {
      const path = join(dir, "m.gguf");
      await writeGguf(model, path);
      const gguf = await loadGgufModel(path);
      // Llama/Mistral files are written in llama.cpp's adjacent-pair order (and llama3 RoPE
      // scaling as rope_freqs factors); Qwen files keep the half-split order.
      assert.equal(
        gguf.config.ropeStyle,
        arch === "llama" || arch === "mistral" ? "interleaved" : "half",
      );
      assert.ok(maxAbsDiff(logits(gguf, ids), want) < 1e-5, `${arch} gguf`);
      assert.deepEqual(gguf.tokenizer.encode("Hello world"), model.tokenizer.encode("Hello world"));
      await writeHfModel(model, join(dir, "hf"));
      const hf = await loadHfModel(join(dir, "hf"));
      assert.deepEqual(logits(hf, ids), want, `${arch} hf`);
      assert.equal(
        hf.tokenizer.chat?.render([{ role: "user", content: "Hi" }]),
        model.tokenizer.chat?.render([{ role: "user", content: "Hi" }]),
      );
    });
  });
}

Deno.test("writers: a model with run-time Hadamard transforms (QuaRot) is refused", async () => {
  const model = tinyModel();
  const [layer] = model.weights.layers;
  model.weights.layers = [{ ...layer!, hadamard: { qk: false, attention: true, down: true } }];
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(() => writeGguf(model, join(dir, "m.gguf")), RotatedModelError);
    await assert.rejects(() => writeHfModel(model, join(dir, "hf")), RotatedModelError);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
