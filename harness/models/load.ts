/**
 * Loads a suite model by what its path is: a Hugging Face folder (`config.json` + safetensors +
 * `tokenizer.json`), a GGUF file, or a llama2.c `.bin` checkpoint with its tokenizer.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import type { LlamaModel, Tokenizer, Vocabulary } from "../../core/model.ts";
import type { ModelSpec } from "../../core/suite_types.ts";
import { findLlama2cTokenizer, loadLlama2c } from "./llama2c.ts";
import { loadHfModel, type LoadOptions } from "./hf/load.ts";
import { loadGgufModel } from "./gguf_model.ts";
import { TOKEN_TYPE } from "./tokenizer_gguf.ts";

/** Thrown for a model path quantbench cannot load. */
export class ModelLoadError extends Error {
  override name = "ModelLoadError";
}

/** The kinds of model paths quantbench reads. */
export type ModelFormat = "hf" | "gguf" | "llama2c";

/** What kind of model a path holds, judged by its name and (for folders) `config.json`. */
export function modelFormat(path: string): ModelFormat | undefined {
  if (existsSync(path) && statSync(path).isDirectory()) {
    return existsSync(join(path, "config.json")) ? "hf" : undefined;
  }
  if (path.endsWith(".gguf")) return "gguf";
  if (path.endsWith(".bin")) return "llama2c";
  return undefined;
}

export type { LoadOptions };

/**
 * Loads a model file or folder; `tokenizer` is the llama2.c tokenizer file when separate. With
 * `stream`, a Hugging Face folder's or GGUF file's layers are read when a method reaches them
 * (`LlamaModel.stream`); a llama2.c checkpoint is one buffer and always loads whole.
 */
export async function loadModelPath(
  path: string,
  tokenizer?: string,
  options: LoadOptions = {},
): Promise<LlamaModel> {
  switch (modelFormat(path)) {
    case "hf":
      return await loadHfModel(path, options);
    case "gguf":
      return await loadGgufModel(path, options);
    case "llama2c": {
      const model = await loadLlama2c(path, tokenizer);
      const tokPath = tokenizer ?? findLlama2cTokenizer(path);
      const bytes = await Deno.readFile(tokPath!);
      const vocab = llama2cVocabulary(bytes, model.config.vocabSize);
      return { ...model, tokenizer: withVocabulary(model.tokenizer, vocab) };
    }
    case undefined:
      throw new ModelLoadError(
        `Cannot load ${path}; supported: a Hugging Face folder with config.json, a .gguf file, ` +
          `a llama2.c .bin checkpoint`,
      );
  }
}

/** Loads the model a suite names (see {@linkcode loadModelPath} for `options`). */
export async function loadModel(spec: ModelSpec, options: LoadOptions = {}): Promise<LlamaModel> {
  if (modelFormat(spec.path) === undefined) {
    throw new ModelLoadError(
      `Model "${spec.id}": cannot load ${spec.path}; supported: a Hugging Face folder with ` +
        `config.json, a .gguf file, a llama2.c .bin checkpoint`,
    );
  }
  return await loadModelPath(spec.path, spec.tokenizer, options);
}

/**
 * A llama2.c tokenizer file as a SentencePiece vocabulary, as llama.cpp's
 * `convert-llama2c-to-ggml` converts it: ids 0, 1, 2 are `<unk>` (unknown), `<s>` and `</s>`
 * (control), `<0xAB>` pieces are bytes, spaces become `▁`.
 */
function llama2cVocabulary(bytes: Uint8Array, vocabSize: number): Vocabulary {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder();
  const tokens: string[] = [];
  const scores: number[] = [];
  // The tokenizer loader has already checked that every entry lies within the file.
  for (let offset = 4; tokens.length < vocabSize;) {
    scores.push(view.getFloat32(offset, true));
    const len = view.getInt32(offset + 4, true);
    tokens.push(decoder.decode(bytes.subarray(offset + 8, offset + 8 + len)).replaceAll(" ", "▁"));
    offset += 8 + len;
  }
  tokens.splice(0, 3, "<unk>", "<s>", "</s>");
  const tokenTypes = tokens.map((t, i) =>
    i === 0
      ? TOKEN_TYPE.unknown
      : i <= 2
      ? TOKEN_TYPE.control
      : /^<0x[0-9A-F]{2}>$/.test(t)
      ? TOKEN_TYPE.byte
      : TOKEN_TYPE.normal
  );
  return {
    model: "llama",
    tokens,
    scores,
    tokenTypes,
    bosId: 1,
    eosId: 2,
    unknownId: 0,
    addBos: true,
    addEos: false,
    addSpacePrefix: true,
  };
}

function withVocabulary(tokenizer: Tokenizer, vocab: Vocabulary): Tokenizer {
  return {
    vocabSize: tokenizer.vocabSize,
    bosId: tokenizer.bosId,
    eosId: tokenizer.eosId,
    addBos: true,
    addEos: false,
    encode: (text) => tokenizer.encode(text),
    decode: (ids) => tokenizer.decode(ids),
    vocab,
  };
}
