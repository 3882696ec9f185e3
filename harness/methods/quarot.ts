/**
 * QuaRot (Ashkboos et al., 2024) as its reference implementation (spcl/QuaRot `fake_quant`:
 * `rotation_utils.fuse_layer_norms`, `rotate_model`, the online Hadamards of `main.py`) arranges a
 * Llama model, followed by RTN or GPTQ of the rotated weights:
 *
 * 1. Norm fusion: every RMSNorm weight is multiplied into the columns of the linears that read
 *    the norm (`attnNorm` → `wq`, `wk`, `wv`; `ffnNorm` → `w1`, `w3`; `finalNorm` → the head),
 *    and the norms become weightless (all ones). A tied head is untied (the reference clones it).
 *    The reference also subtracts each embedding row's mean, which only LayerNorm models undo;
 *    on an RMSNorm model it changes the function, so it is left out here.
 * 2. The residual stream is rotated by `Q = H · diag(s)`: random signs `s` from the suite seed,
 *    then the orthogonal Hadamard transform `H` of the model width (`kernels/cpu/hadamard.ts`).
 *    Every row of the embedding and of each linear reading the stream (`wq`, `wk`, `wv`, `w1`,
 *    `w3`, the head) is replaced by `Q·row`; every column of each linear writing it (`wo`, `w2`,
 *    and `bo`) by `Q·column` — so the stream a rotated block sees is `Q·x`, and RMSNorm, whose
 *    weight is now one, commutes with `Q`.
 * 3. `rotate_ov_proj`: the value projection's output is rotated per head (`wv`'s rows and `bv` by
 *    the head-width Hadamard `H_h`), so cached values are rotated, and `wo`'s rows take the
 *    Hadamard of the whole attention row `H_a`. At run time the attention output, per-head
 *    rotated, goes through `H_h` per head (its own inverse: the head width must be a power of
 *    two, as the reference asserts) and then `H_a`: together the reference's cross-head
 *    `online_partial_had` (`H_heads ⊗ I`), so `wo` sees `H_a · att`.
 * 4. The down projection's input: `w2`'s rows take the Hadamard of the MLP width (non-powers of
 *    two through the stored factors, as `get_hadK` does), applied at run time to `mid`.
 * 5. With `qk` (the reference's K-cache setting), queries and keys are transformed per head after
 *    RoPE at run time, so the KV cache holds rotated keys; no weight changes.
 *
 * The rotated float model computes what the original does (to rounding); its linears are then
 * quantized by `rtn` (with its `clip` search: the reference's `--w_clip`) or `gptq` (calibrated on
 * the rotated model, with GPTQ's options), and the format's `activations:` and `kv_cache:` quantize
 * the rotated activations at run time (W4A4, W4A8, KV4). The head and embedding stay float, as
 * the reference keeps `lm_head` in 16 bits.
 *
 * @module
 */
import type { Method, MethodContext } from "./method.ts";
import {
  dense,
  type LayerStream,
  type LayerWeights,
  LINEAR_NAMES,
  type LinearName,
  type LlamaConfig,
  type LlamaModel,
  type Matrix,
} from "../../core/model.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import { hadamardPlan, hadamardTransform } from "../../kernels/cpu/hadamard.ts";
import { seededRandom } from "../../core/random.ts";
import { decoded } from "./awq.ts";
import { rtn } from "./rtn.ts";
import { gptq } from "./gptq.ts";
import { transpose } from "./linalg.ts";

/**
 * Options and their defaults: the quantizer of the rotated weights (`rtn`, or `gptq` with its
 * options, QuaRot's default path), RTN's clipping search, and the run-time q/k transform.
 */
export const QUAROT_OPTIONS = {
  quantizer: "rtn",
  /** Transform queries and keys per head after RoPE (QuaRot's K-cache rotation). */
  qk: true,
  /** RTN's clipping search (`none` or `mse`, QuaRot's `--w_clip`); RTN only. */
  clip: "none",
  calibration: { dataset: "", samples: 128, seq_len: 2048 },
  damp: 0.01,
  block_size: 128,
  act_order: false,
  static_groups: false,
  true_sequential: true,
  device: "cpu",
};

/** Thrown for QuaRot options that do not apply, or a model it cannot rotate. */
export class QuarotError extends Error {
  override name = "QuarotError";
}

const GPTQ_KEYS = [
  "calibration",
  "damp",
  "block_size",
  "act_order",
  "static_groups",
  "true_sequential",
  "device",
] as const;

/** The inner method and its options, checked (a {@linkcode QuarotError} or the inner's error). */
function innerOf(options: Record<string, unknown>): {
  method: Method;
  options: Record<string, unknown>;
} {
  const o = { ...QUAROT_OPTIONS, ...options };
  if (o.quantizer !== "rtn" && o.quantizer !== "gptq") {
    throw new QuarotError(
      `QuaRot's quantizer must be "rtn" or "gptq", got ${JSON.stringify(o.quantizer)}`,
    );
  }
  if (o.quantizer === "gptq") {
    if (o.clip !== "none") {
      throw new QuarotError(
        `QuaRot's clip applies to quantizer rtn; with gptq it must be "none", got ${
          JSON.stringify(o.clip)
        }`,
      );
    }
    const inner = Object.fromEntries(GPTQ_KEYS.map((k) => [k, o[k]]));
    gptq.checkOptions?.(inner);
    return { method: gptq, options: inner };
  }
  const inner = { clip: o.clip };
  rtn.checkOptions?.(inner);
  return { method: rtn, options: inner };
}

/** Why QuaRot cannot produce `format`, or undefined when it can. */
function unsupported(format: FormatSpec): string | undefined {
  const element = elementFormats.get(format.weights);
  if (element.kind === "float") {
    return `method "quarot" quantizes; format "${format.id}" is ${format.weights}, the ` +
      `unquantized baseline (use method none)`;
  }
  return element.unsupported(format);
}

/** The residual stream's rotation `v ↦ H·(s ⊙ v)` of a model width, from the suite seed. */
export interface ResidualRotation {
  /** The random signs `s`. */
  signs: Float64Array;
  /** Rotates every length-`dim` row of `rows` in place. */
  apply(rows: Float64Array): void;
}

/** The residual rotation of width `dim` for `seed` (a {@linkcode QuarotError} without one). */
export function residualRotation(dim: number, seed: number): ResidualRotation {
  checkSize(dim, "the model width");
  const random = seededRandom(seed, "quarot:residual");
  const signs = Float64Array.from({ length: dim }, () => (random() < 0.5 ? -1 : 1));
  return {
    signs,
    apply(rows) {
      for (let i = 0; i < rows.length; i++) rows[i]! *= signs[i % dim]!;
      hadamardTransform(rows, dim);
    },
  };
}

/** A {@linkcode QuarotError} when `n` has no Hadamard transform here. */
function checkSize(n: number, what: string): void {
  try {
    hadamardPlan(n);
  } catch (e) {
    throw new QuarotError(`QuaRot cannot rotate ${what} (${n}): ${(e as Error).message}`);
  }
}

/** `f` applied to every column of a `rows × cols` matrix (each column as a row of `rows`). */
function onColumns(
  data: Float64Array,
  rows: number,
  cols: number,
  f: (rows: Float64Array) => void,
): Float64Array {
  const t = transpose(data, rows, cols);
  f(t);
  return transpose(t, cols, rows);
}

/** Multiplies column `j` of every row (of `norm.length`) by `norm[j]`. */
function fuseNorm(data: Float64Array, norm: Float32Array): void {
  for (let i = 0; i < data.length; i++) data[i]! *= norm[i % norm.length]!;
}

/** One layer rotated (see the module notes): dense float linears and its run-time transforms. */
export function rotateLayer(
  layer: LayerWeights,
  config: LlamaConfig,
  q: ResidualRotation,
  qk: boolean,
): LayerWeights {
  const { headDim, nHeads } = config;
  const w = Object.fromEntries(
    LINEAR_NAMES.map((n) => [n, Float64Array.from(decoded(layer[n]))]),
  ) as Record<LinearName, Float64Array>;
  const shape = (n: LinearName) => ({ rows: layer[n].rows, cols: layer[n].cols });
  for (const n of ["wq", "wk", "wv"] as const) fuseNorm(w[n], layer.attnNorm);
  for (const n of ["w1", "w3"] as const) fuseNorm(w[n], layer.ffnNorm);
  for (const n of ["wq", "wk", "wv", "w1", "w3"] as const) q.apply(w[n]);
  for (const n of ["wo", "w2"] as const) {
    const { rows, cols } = shape(n);
    w[n] = onColumns(w[n], rows, cols, (t) => q.apply(t));
  }
  // Values per head; `wo`'s input is the whole attention row's Hadamard at run time.
  const wv = shape("wv");
  w.wv = onColumns(w.wv, wv.rows, wv.cols, (t) => hadamardTransform(t, headDim));
  hadamardTransform(w.wo, nHeads * headDim);
  hadamardTransform(w.w2, config.hiddenDim);
  const f32 = (a: Float64Array) => Float32Array.from(a);
  const out: LayerWeights = {
    ...layer,
    attnNorm: new Float32Array(config.dim).fill(1),
    ffnNorm: new Float32Array(config.dim).fill(1),
    hadamard: { qk, attention: true, down: true },
  };
  for (const n of LINEAR_NAMES) out[n] = dense(layer[n].rows, layer[n].cols, f32(w[n]));
  if (layer.bv) {
    const bv = Float64Array.from(layer.bv);
    hadamardTransform(bv, headDim);
    out.bv = f32(bv);
  }
  if (layer.bo) {
    const bo = Float64Array.from(layer.bo);
    q.apply(bo);
    out.bo = f32(bo);
  }
  return out;
}

/**
 * `model` rotated, unquantized (see the module notes): it computes the same logits up to float
 * rounding. `seed` draws the residual rotation's signs; `qk` adds the run-time q/k transform.
 */
export function rotateModel(model: LlamaModel, seed: number, qk: boolean): LlamaModel {
  const c = model.config;
  const q = residualRotation(c.dim, seed);
  if (!(c.headDim > 0 && (c.headDim & (c.headDim - 1)) === 0)) {
    throw new QuarotError(
      `QuaRot needs a power-of-two head width (its Hadamard undoes itself), got ${c.headDim}`,
    );
  }
  checkSize(c.nHeads * c.headDim, "the attention width");
  checkSize(c.hiddenDim, "the MLP width");
  const w = model.weights;
  const embedding = Float64Array.from(w.tokenEmbedding);
  q.apply(embedding);
  const head = Float64Array.from(decoded(w.output));
  fuseNorm(head, w.finalNorm);
  q.apply(head);
  const rotate = (layer: LayerWeights) => rotateLayer(layer, c, q, qk);
  const stream: LayerStream | undefined = model.stream && {
    count: model.stream.count,
    read: async (i) => rotate(await model.stream!.read(i)),
    close: () => model.stream!.close(),
  };
  const output: Matrix = dense(w.output.rows, w.output.cols, Float32Array.from(head));
  return {
    ...model,
    weights: {
      tokenEmbedding: Float32Array.from(embedding),
      layers: w.layers.map(rotate),
      finalNorm: new Float32Array(c.dim).fill(1),
      output,
      tiedEmbeddings: false,
    },
    ...(stream ? { stream } : {}),
  };
}

/** QuaRot over a whole model: rotate, then the inner quantizer (see the module notes). */
async function quantizeModel(
  model: LlamaModel,
  format: FormatSpec,
  options: Record<string, unknown>,
  ctx: MethodContext,
): Promise<LlamaModel> {
  const reason = unsupported(format);
  if (reason !== undefined) throw new FormatSettingsError(reason);
  const inner = innerOf(options);
  const qk = { ...QUAROT_OPTIONS, ...options }.qk !== false;
  const rotated = rotateModel(model, ctx.seed, qk);
  // The result holds every layer: the rotating stream is not passed on.
  const { stream: _, ...quantized } = await inner.method.quantize(
    rotated,
    format,
    inner.options,
    ctx,
  );
  return quantized;
}

/** QuaRot: Hadamard rotations of the residual stream, values and MLP, then RTN or GPTQ. */
export const quarot: Method = {
  name: "quarot",
  description: "QuaRot (Hadamard-rotated residual stream, values and MLP; then RTN or GPTQ)",
  options: QUAROT_OPTIONS,
  unsupported,
  checkOptions: (options) => void innerOf(options),
  quantize: quantizeModel,
};
