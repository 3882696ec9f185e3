/**
 * Named errors for model files that quantbench cannot load (Hugging Face folders, safetensors,
 * GGUF models, tokenizers). Each names the file and, when there is one, the tensor. The GGUF
 * container's own problems are {@linkcode GgufError}s from `gguf/reader.ts`.
 *
 * @module
 */

/** Anything wrong with a model file; `file` names it and `tensor` the tensor concerned. */
export class ModelFileError extends Error {
  override name = "ModelFileError";
  readonly tensor: string | undefined;
  constructor(
    readonly file: string,
    message: string,
    options?: { tensor?: string; cause?: unknown },
  ) {
    super(
      `${file}: ${options?.tensor === undefined ? "" : `tensor "${options.tensor}": `}${message}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.tensor = options?.tensor;
  }
}

/** A file that cannot be opened or read, or is missing from a model folder. */
export class ModelIoError extends ModelFileError {
  override name = "ModelIoError";
}
/** The file ends before a structure it declares. */
export class TruncatedFileError extends ModelFileError {
  override name = "TruncatedFileError";
}
/** A header that is not what the format requires: wrong magic, bad length, malformed JSON. */
export class HeaderError extends ModelFileError {
  override name = "HeaderError";
}
/** A tensor whose data lies outside the file's data section or disagrees with its size. */
export class TensorRangeError extends ModelFileError {
  override name = "TensorRangeError";
}
/** A tensor element type quantbench does not know or cannot load. */
export class UnknownDtypeError extends ModelFileError {
  override name = "UnknownDtypeError";
}
/** A tensor whose shape disagrees with the model configuration. */
export class ShapeMismatchError extends ModelFileError {
  override name = "ShapeMismatchError";
}
/** A tensor the architecture needs that the files do not contain. */
export class MissingTensorError extends ModelFileError {
  override name = "MissingTensorError";
}
/** A weight that is NaN or infinite. */
export class NonFiniteWeightError extends ModelFileError {
  override name = "NonFiniteWeightError";
}
/** A configuration value that is missing, malformed or out of range. */
export class ConfigError extends ModelFileError {
  override name = "ConfigError";
}
/** An architecture or feature quantbench does not run (names what is supported). */
export class UnsupportedModelError extends ModelFileError {
  override name = "UnsupportedModelError";
}
/** No tokenizer where the model needs one. */
export class MissingTokenizerError extends ModelFileError {
  override name = "MissingTokenizerError";
}
/** A tokenizer whose data is inconsistent (lengths, ids, merges). */
export class TokenizerFormatError extends ModelFileError {
  override name = "TokenizerFormatError";
}

/** Throws {@linkcode NonFiniteWeightError} at the first NaN or infinity of `data`. */
export function checkFinite(data: Float32Array, file: string, tensor: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new NonFiniteWeightError(file, `element ${i} is ${data[i]}`, { tensor });
    }
  }
}
