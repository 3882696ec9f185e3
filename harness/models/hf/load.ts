/**
 * Loads a Hugging Face model folder (Llama, Mistral, Qwen2, Qwen3): `config.json`, weights in
 * `model.safetensors` or shards listed by `model.safetensors.index.json` (F32, F16, BF16, F64),
 * and the tokenizer. Tensors are read one at a time from their offsets, checked against the
 * shapes the config implies and for NaN/infinity, and kept as float32 in the checkpoint's
 * `[out][in]` layout with Hugging Face's half-split RoPE pairing. A streamed load (`stream`)
 * reads the transformer blocks only when asked (`LlamaModel.stream`), each as the eager load
 * would.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import {
  dense,
  type LayerStream,
  type LayerWeights,
  type LlamaModel,
  type Tokenizer,
} from "../../../core/model.ts";
import { type HfModelConfig, parseHfConfig } from "./config.ts";
import { openSafetensors, type SafetensorsFile } from "../safetensors.ts";
import { loadHfTokenizer } from "../tokenizer_hf.ts";
import {
  checkFinite,
  ConfigError,
  HeaderError,
  MissingTensorError,
  ModelIoError,
  ShapeMismatchError,
  TokenizerFormatError,
  UnsupportedModelError,
} from "../errors.ts";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ModelIoError(path, `cannot read ${what}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(path, `${what} is not valid JSON (${(e as Error).message})`, {
      cause: e,
    });
  }
}

/** Reads and parses `config.json` of a model folder; `json` is the raw object. */
export async function readHfConfig(
  dir: string,
): Promise<{ parsed: HfModelConfig; json: Record<string, unknown> }> {
  const path = join(dir, "config.json");
  if (!existsSync(path)) throw new ModelIoError(dir, "no config.json in the model folder");
  const json = await readJsonFile(path, "config.json");
  return { parsed: parseHfConfig(json, path), json: json as Record<string, unknown> };
}

/** The safetensors files of a folder and which file holds each tensor. */
class WeightFiles implements Disposable {
  readonly #open = new Map<string, SafetensorsFile>();
  #closed = false;
  private constructor(readonly dir: string, readonly shardOf: Map<string, string> | undefined) {}

  static async open(dir: string): Promise<WeightFiles> {
    const single = join(dir, "model.safetensors");
    const index = join(dir, "model.safetensors.index.json");
    if (existsSync(single)) return new WeightFiles(dir, undefined);
    if (!existsSync(index)) {
      const hint = existsSync(join(dir, "pytorch_model.bin"))
        ? "; only pytorch_model.bin is present, which quantbench does not read (re-save with " +
          "safe_serialization)"
        : "";
      throw new ModelIoError(
        dir,
        `no model.safetensors or model.safetensors.index.json in the model folder${hint}`,
      );
    }
    const json = await readJsonFile(index, "the shard index");
    const map = isObject(json) ? json.weight_map : undefined;
    if (!isObject(map)) throw new HeaderError(index, `has no "weight_map" object`);
    const shardOf = new Map<string, string>();
    for (const [name, file] of Object.entries(map)) {
      if (typeof file !== "string" || file !== basename(file)) {
        throw new HeaderError(
          index,
          `weight_map entry is ${JSON.stringify(file)}, not a file name`,
          {
            tensor: name,
          },
        );
      }
      shardOf.set(name, file);
    }
    return new WeightFiles(dir, shardOf);
  }

  async #file(name: string): Promise<SafetensorsFile> {
    const fileName = this.shardOf === undefined ? "model.safetensors" : this.shardOf.get(name);
    if (fileName === undefined) {
      throw new MissingTensorError(join(this.dir, "model.safetensors.index.json"), "not listed", {
        tensor: name,
      });
    }
    let file = this.#open.get(fileName);
    if (file === undefined) {
      if (this.#closed) throw new ModelIoError(join(this.dir, fileName), "the model is closed");
      file = await openSafetensors(join(this.dir, fileName));
      this.#open.set(fileName, file);
    }
    return file;
  }

  has(name: string): Promise<boolean> {
    if (this.shardOf !== undefined) return Promise.resolve(this.shardOf.has(name));
    return this.#file(name).then((f) => f.hasTensor(name));
  }

  /** Reads a tensor as float32 after checking its shape and, after decoding, its values. */
  async read(name: string, shape: readonly number[], why: string): Promise<Float32Array> {
    const file = await this.#file(name);
    const info = file.tensor(name);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ShapeMismatchError(
        file.path,
        `shape [${info.shape}] disagrees with config.json (${why}: [${shape}])`,
        { tensor: name },
      );
    }
    const data = await file.readTensorF32(info);
    checkFinite(data, file.path, name);
    return data;
  }

  [Symbol.dispose](): void {
    this.#closed = true;
    for (const f of this.#open.values()) f.close();
  }
}

/** The safetensors files of a model folder (one, or the shards its index lists), sorted. */
export async function weightFileNames(dir: string): Promise<string[]> {
  using files = await WeightFiles.open(dir);
  return files.shardOf === undefined
    ? ["model.safetensors"]
    : [...new Set(files.shardOf.values())].sort();
}

/** How {@linkcode loadHfModel} reads the weights. */
export interface LoadOptions {
  /**
   * Read the transformer blocks lazily (`LlamaModel.stream`): the folder's files stay open and
   * each layer is read when a quantization method reaches it. Default false: all read now.
   */
  stream?: boolean;
}

/** Loads a Hugging Face model folder with its tokenizer. */
export async function loadHfModel(dir: string, options: LoadOptions = {}): Promise<LlamaModel> {
  const { parsed: hf, json: configJson } = await readHfConfig(dir);
  if (!options.stream) {
    return await withTokenizer(dir, configJson, hf, await loadHfWeights(dir, hf));
  }
  const files = await WeightFiles.open(dir);
  try {
    const stream: LayerStream = {
      count: hf.config.nLayers,
      read: (index) => readHfLayer(files, hf, index),
      close: () => files[Symbol.dispose](),
    };
    const model = await withTokenizer(dir, configJson, hf, await readHfWeights(files, hf, 0));
    return { ...model, stream };
  } catch (e) {
    files[Symbol.dispose]();
    throw e;
  }
}

/** The model of `weights` with the folder's tokenizer. */
async function withTokenizer(
  dir: string,
  configJson: Record<string, unknown>,
  hf: HfModelConfig,
  weights: LlamaModel["weights"],
): Promise<LlamaModel> {
  const firstId = (v: unknown) =>
    Number.isSafeInteger(v)
      ? v as number
      : Array.isArray(v) && Number.isSafeInteger(v[0])
      ? v[0] as number
      : undefined;
  const tokenizer = await loadHfTokenizer(dir, {
    bosId: firstId(configJson.bos_token_id),
    eosId: firstId(configJson.eos_token_id),
  });
  checkTokenizerFits(tokenizer, hf.config.vocabSize, join(dir, "tokenizer.json"));
  return { config: hf.config, weights, tokenizer };
}

/** Throws unless every token id of the tokenizer has an embedding row. */
export function checkTokenizerFits(tokenizer: Tokenizer, vocabSize: number, file: string): void {
  if (tokenizer.vocabSize > vocabSize) {
    throw new TokenizerFormatError(
      file,
      `the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${vocabSize} embeddings`,
    );
  }
}

/** Reads the weights of a folder whose config is `hf`. */
export async function loadHfWeights(
  dir: string,
  hf: HfModelConfig,
): Promise<LlamaModel["weights"]> {
  using files = await WeightFiles.open(dir);
  return await readHfWeights(files, hf, hf.config.nLayers);
}

/** The embedding, the first `nLayers` layers, the final norm and the classifier. */
async function readHfWeights(
  files: WeightFiles,
  hf: HfModelConfig,
  nLayers: number,
): Promise<LlamaModel["weights"]> {
  const c = hf.config;
  const vocabDim = `vocab_size × hidden_size`;
  const tokenEmbedding = await files.read(
    "model.embed_tokens.weight",
    [c.vocabSize, c.dim],
    vocabDim,
  );
  const layers: LayerWeights[] = [];
  for (let l = 0; l < nLayers; l++) layers.push(await readHfLayer(files, hf, l));
  const finalNorm = await files.read("model.norm.weight", [c.dim], "hidden_size");
  let output = tokenEmbedding;
  if (!hf.tiedEmbeddings) {
    if (!(await files.has("lm_head.weight"))) {
      throw new UnsupportedModelError(
        join(files.dir, "config.json"),
        "tie_word_embeddings is false but no lm_head.weight is stored",
      );
    }
    output = await files.read("lm_head.weight", [c.vocabSize, c.dim], vocabDim);
  }
  return {
    tokenEmbedding,
    layers,
    finalNorm,
    output: dense(c.vocabSize, c.dim, output),
    tiedEmbeddings: hf.tiedEmbeddings,
  };
}

/** Reads layer `l`. */
async function readHfLayer(
  files: WeightFiles,
  hf: HfModelConfig,
  l: number,
): Promise<LayerWeights> {
  const c = hf.config;
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  const p = `model.layers.${l}.`;
  const mat = async (name: string, rows: number, cols: number, why: string) =>
    dense(rows, cols, await files.read(p + name, [rows, cols], why));
  const vec = (name: string, n: number, why: string) => files.read(p + name, [n], why);
  const layer: LayerWeights = {
    attnNorm: await vec("input_layernorm.weight", c.dim, "hidden_size"),
    wq: await mat("self_attn.q_proj.weight", qDim, c.dim, "heads × head_dim, hidden_size"),
    wk: await mat("self_attn.k_proj.weight", kvDim, c.dim, "kv_heads × head_dim, hidden_size"),
    wv: await mat("self_attn.v_proj.weight", kvDim, c.dim, "kv_heads × head_dim, hidden_size"),
    wo: await mat("self_attn.o_proj.weight", c.dim, qDim, "hidden_size, heads × head_dim"),
    ffnNorm: await vec("post_attention_layernorm.weight", c.dim, "hidden_size"),
    w1: await mat("mlp.gate_proj.weight", c.hiddenDim, c.dim, "intermediate_size, hidden_size"),
    w2: await mat("mlp.down_proj.weight", c.dim, c.hiddenDim, "hidden_size, intermediate_size"),
    w3: await mat("mlp.up_proj.weight", c.hiddenDim, c.dim, "intermediate_size, hidden_size"),
  };
  if (hf.qkvBias) {
    layer.bq = await vec("self_attn.q_proj.bias", qDim, "heads × head_dim");
    layer.bk = await vec("self_attn.k_proj.bias", kvDim, "kv_heads × head_dim");
    layer.bv = await vec("self_attn.v_proj.bias", kvDim, "kv_heads × head_dim");
  }
  if (hf.outputBias) layer.bo = await vec("self_attn.o_proj.bias", c.dim, "hidden_size");
  if (hf.qkNorm) {
    layer.qNorm = await vec("self_attn.q_norm.weight", c.headDim, "head_dim");
    layer.kNorm = await vec("self_attn.k_norm.weight", c.headDim, "head_dim");
  }
  return layer;
}
