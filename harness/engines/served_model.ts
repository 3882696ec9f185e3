/**
 * What an engine over a served model (one that runs elsewhere, e.g. `openai`) needs of the model
 * entry: its configuration, tokenizer and chat template, never its weights. A Hugging Face folder
 * is read without its safetensors (so a 70B model's folder costs only its tokenizer files); other
 * formats are read whole and their weights dropped.
 *
 * @module
 */
import type { LlamaModel } from "../../core/model.ts";
import type { ModelSpec } from "../../core/suite_types.ts";
import { loadModel, modelFormat } from "../models/load.ts";
import { readHfConfig } from "../models/hf/load.ts";
import { loadHfTokenizer } from "../models/tokenizer_hf.ts";

/** The model of `spec` without weights: `weights.layers` is empty, the tables are empty. */
export async function loadServedModel(spec: ModelSpec): Promise<LlamaModel> {
  if (modelFormat(spec.path) !== "hf") {
    const model = await loadModel(spec);
    return { ...model, weights: { ...model.weights, layers: [] } };
  }
  const { parsed, json } = await readHfConfig(spec.path);
  const firstId = (v: unknown) =>
    Number.isSafeInteger(v)
      ? v as number
      : Array.isArray(v) && Number.isSafeInteger(v[0])
      ? v[0] as number
      : undefined;
  const tokenizer = await loadHfTokenizer(spec.path, {
    bosId: firstId(json.bos_token_id),
    eosId: firstId(json.eos_token_id),
  });
  return {
    config: parsed.config,
    weights: {
      tokenEmbedding: new Float32Array(0),
      layers: [],
      finalNorm: new Float32Array(0),
      output: { kind: "dense", rows: 0, cols: 0, data: new Float32Array(0) },
      tiedEmbeddings: false,
    },
    tokenizer,
  };
}
