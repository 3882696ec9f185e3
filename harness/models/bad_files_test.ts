import assert from "node:assert/strict";
import { join } from "node:path";
import { tinyModel, writeTinyFiles } from "./testing.ts";
import { loadHfModel } from "./hf/load.ts";
import { loadGgufModel } from "./gguf_model.ts";
import { writeGguf } from "./writers/gguf.ts";
import { writeHfModel } from "./writers/hf.ts";
import { GgufMagicError } from "./gguf/reader.ts";
import {
  MissingTokenizerError,
  type ModelFileError,
  NonFiniteWeightError,
  ShapeMismatchError,
  UnsupportedModelError,
} from "./errors.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "quantbench-bad-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function named<E extends ModelFileError>(
  type: new (...args: never[]) => E,
  file: string,
  tensor?: string,
  pattern?: RegExp,
): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof type, `${(e as Error).name}: ${(e as Error).message}`);
    assert.equal(e.file, file);
    assert.equal(e.tensor, tensor);
    assert.ok(e.message.startsWith(file), e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

Deno.test("bad files: HF folders with wrong shapes, NaN, no tokenizer or unknown types", async () => {
  await withTemp(async (dir) => {
    const { hf } = await writeTinyFiles(dir);
    const configPath = join(hf, "config.json");
    const config = JSON.parse(await Deno.readTextFile(configPath));
    const st = join(hf, "model.safetensors");
    await Deno.writeTextFile(configPath, JSON.stringify({ ...config, intermediate_size: 65 }));
    await assert.rejects(
      loadHfModel(hf),
      named(ShapeMismatchError, st, "model.layers.0.mlp.gate_proj.weight", /\[64,32\].*\[65,32\]/),
    );
    await Deno.writeTextFile(configPath, JSON.stringify({ ...config, model_type: "gpt2" }));
    await assert.rejects(
      loadHfModel(hf),
      named(UnsupportedModelError, configPath, undefined, /"gpt2"/),
    );
    await Deno.writeTextFile(configPath, JSON.stringify(config));
    await Deno.remove(join(hf, "tokenizer.json"));
    await assert.rejects(loadHfModel(hf), named(MissingTokenizerError, hf));

    const nan = tinyModel();
    (nan.weights.layers[0]!.wv as { data: Float32Array }).data[5] = NaN;
    const nanDir = join(dir, "nan");
    await writeHfModel(nan, nanDir);
    await assert.rejects(
      loadHfModel(nanDir),
      named(
        NonFiniteWeightError,
        join(nanDir, "model.safetensors"),
        "model.layers.0.self_attn.v_proj.weight",
        /element 5 is NaN/,
      ),
    );
  });
});

/** Replaces the first occurrence of `from` (ASCII) in the file with `to` of the same length. */
async function patch(path: string, from: string, to: string): Promise<void> {
  const bytes = await Deno.readFile(path);
  const text = new TextDecoder("latin1").decode(bytes);
  const at = text.indexOf(from);
  assert.ok(at >= 0 && from.length === to.length);
  bytes.set(new TextEncoder().encode(to), at);
  await Deno.writeFile(path, bytes);
}

Deno.test("bad files: GGUF models with wrong magic, shapes, NaN or no tokenizer", async () => {
  await withTemp(async (dir) => {
    const { gguf } = await writeTinyFiles(dir);
    const copy = join(dir, "c.gguf");
    await Deno.copyFile(gguf, copy);
    await patch(copy, "GGUF", "GGML");
    await assert.rejects(loadGgufModel(copy), GgufMagicError);

    await Deno.copyFile(gguf, copy);
    // Renaming the key leaves the file valid GGUF without a tokenizer model.
    await patch(copy, "tokenizer.ggml.model", "tokenizer.ggml.mode_");
    await assert.rejects(loadGgufModel(copy), named(MissingTokenizerError, copy));

    const wide = tinyModel();
    wide.config.hiddenDim = 96; // the metadata says 96, the FFN tensors hold 64
    const widePath = join(dir, "wide.gguf");
    await writeGguf(wide, widePath);
    await assert.rejects(
      loadGgufModel(widePath),
      named(ShapeMismatchError, widePath, "blk.0.ffn_gate.weight", /\[32,64\].*\[32,96\]/),
    );

    const nan = tinyModel();
    nan.weights.finalNorm[3] = Infinity;
    const nanPath = join(dir, "nan.gguf");
    await writeGguf(nan, nanPath);
    await assert.rejects(
      loadGgufModel(nanPath),
      named(NonFiniteWeightError, nanPath, "output_norm.weight", /element 3 is Infinity/),
    );
  });
});
