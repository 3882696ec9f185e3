/**
 * Loads a suite model by what its path is: a llama2.c `.bin` today; HF directories and GGUF files
 * come with the model-formats work.
 *
 * @module
 */
import type { LlamaModel } from "./model.ts";
import type { ModelSpec } from "../suite/types.ts";
import { loadLlama2c } from "./llama2c.ts";

/** Thrown for a model path quantbench cannot load. */
export class ModelLoadError extends Error {
  override name = "ModelLoadError";
}

/** Loads the model a suite names. */
export function loadModel(spec: ModelSpec): Promise<LlamaModel> {
  if (spec.path.endsWith(".bin")) return loadLlama2c(spec.path, spec.tokenizer);
  throw new ModelLoadError(
    `Model "${spec.id}": cannot load ${spec.path}; supported: llama2.c .bin checkpoints`,
  );
}
