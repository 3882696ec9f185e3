/**
 * What both model writers need: which architecture a model is, its weights decoded where a file
 * format cannot hold their coding, and its vocabulary.
 *
 * @module
 */
import type { DenseMatrix, LlamaModel, Matrix, Vocabulary } from "../../../core/model.ts";
import { decodeRow } from "../../../kernels/formats/matrix.ts";
import { MissingTokenizerError } from "../errors.ts";

/** Thrown for a model whose blocks compute more than the architectures the writers emit. */
export class RotatedModelError extends Error {
  override name = "RotatedModelError";
}

/** Architectures the writers emit. */
export type ExportArchitecture = "llama" | "mistral" | "qwen2" | "qwen3";

/**
 * The architecture a model is: the one it was loaded as when that is known and consistent with
 * its weights, else the simplest that holds them (q/k norms: qwen3; q/k/v biases without an
 * output bias: qwen2; otherwise llama). A {@linkcode RotatedModelError} for layers with run-time
 * Hadamard transforms (`LayerWeights.hadamard`).
 */
export function exportArchitecture(model: LlamaModel): ExportArchitecture {
  if (model.weights.layers.some((l) => l.hadamard !== undefined)) {
    throw new RotatedModelError(
      "The model's layers apply Hadamard transforms at run time (a QuaRot-rotated model), " +
        "which no llama, mistral, qwen2 or qwen3 file records",
    );
  }
  const layer = model.weights.layers[0];
  if (layer?.qNorm !== undefined) return "qwen3";
  if (layer?.bq !== undefined && layer.bo === undefined) return "qwen2";
  const declared = model.config.architecture;
  if (declared === "mistral" && layer?.bq === undefined) return "mistral";
  return "llama";
}

/** `m` as a dense float32 matrix (decoded row by row when coded). */
export function toDense(m: Matrix): DenseMatrix {
  if (m.kind === "dense") return m;
  const data = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) decodeRow(m, r, data.subarray(r * m.cols, (r + 1) * m.cols));
  return { kind: "dense", rows: m.rows, cols: m.cols, data };
}

/** The model's vocabulary; throws {@linkcode MissingTokenizerError} when it has none. */
export function modelVocabulary(model: LlamaModel, file: string): Vocabulary {
  const vocab = model.tokenizer.vocab;
  if (vocab === undefined) {
    throw new MissingTokenizerError(
      file,
      "the model's tokenizer exposes no vocabulary to write (load it with loadModel)",
    );
  }
  return vocab;
}

/** Writes `bytes` to `path` through a temporary file and a rename. */
export async function writeFileAtomically(
  path: string,
  write: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await write(file);
  } catch (e) {
    file.close();
    await Deno.remove(tmp).catch(() => undefined);
    throw e;
  }
  file.close();
  await Deno.rename(tmp, path);
}

/** Writes all of `bytes` to `file`. */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
}
