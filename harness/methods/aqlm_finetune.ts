/**
 * AQLM's block-wise fine-tuning, as the authors' repository runs it once every linear of a block
 * is quantized (Vahe1994/AQLM: `main.py` calls `finetune_groupwise` of `src/finetune.py`): the
 * block's trainable parameters are tuned by Adam through the backward pass so that the quantized
 * block's outputs match the reference block's outputs on the calibration windows. The codes stay
 * fixed; what trains is everything the reference leaves `requires_grad`: every AQLM linear's
 * codebooks and scales (`Ŵ = scale ⊙ Σ_m C_m[codes]`, the gradient in `Ŵ` carried back to both)
 * and the block's float parameters (RMSNorm weights, biases, q/k norms).
 *
 * The loss of a batch is the mean squared error over every element of its windows' outputs
 * (`F.mse_loss`), in float64 here (the reference: float32, TF32 matmuls). Batches
 * (`finetune_batch_size` windows) follow one random order of the windows drawn at the start and
 * walked cyclically (its `iterate_minibatches`: the last batch may be short); an epoch is
 * `⌊windows / batch⌋` batches, one Adam step each (`torch.optim.Adam`: betas
 * `finetune_adam_beta1`, `finetune_adam_beta2`, ε 1e-8, no weight decay), for
 * `finetune_max_epochs` epochs. The reference's validation split (`val_size`, default 0) with its
 * early stop and best-parameter restore is not run here: at its default every epoch runs and the
 * last parameters are kept, as here.
 *
 * @module
 */
import { AdamW } from "../../kernels/cpu/adamw.ts";
import { blockGradients, type TrainConfig, type TrainLayer } from "../../kernels/cpu/backward.ts";
import { aqlmGroups, type AqlmParts, buildAqlmMatrix } from "../../kernels/formats/aqlm.ts";
import { type LayerWeights, LINEAR_NAMES, type LinearName } from "../../core/model.ts";
import { shuffledIndices } from "../../core/random.ts";

/** An AQLM matrix's parts with its trainable codebooks and scales in float64. */
export interface AqlmFloatParts extends AqlmParts {
  codebooks: Float64Array;
  scales: Float64Array;
}

/** The fine-tuning settings (the reference's `finetune_*` options). */
export interface AqlmFinetuneSettings {
  maxEpochs: number;
  lr: number;
  /** Windows per Adam step. */
  batchSize: number;
  beta1: number;
  beta2: number;
}

/** Thrown when fine-tuning cannot run as asked or diverges. */
export class AqlmFinetuneError extends Error {
  override name = "AqlmFinetuneError";
}

/** `Ŵ = scale ⊙ Σ_m C_m[codes]`, `rows × cols` in float64 (the last group's padding dropped). */
export function aqlmDecoded(p: AqlmFloatParts): Float64Array {
  const { rows, cols, scheme } = p;
  const { codebooks: M, groupSize: g } = scheme;
  const groups = aqlmGroups(scheme, cols);
  const size = 2 ** scheme.bits;
  const w = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < groups; j++) {
      const codes = (r * groups + j) * M;
      for (let i = 0; i < g && j * g + i < cols; i++) {
        let sum = 0;
        for (let m = 0; m < M; m++) sum += p.codebooks[(m * size + p.codes[codes + m]!) * g + i]!;
        w[r * cols + j * g + i] = sum * p.scales[r]!;
      }
    }
  }
  return w;
}

/**
 * Adds to `out` the gradients in the codebooks and scales of a loss whose gradient in `Ŵ`
 * (`rows × cols`) is `dw`: `∂/∂C_m[k]_i = Σ scale_r · dw[r, j·g + i]` over the groups `(r, j)`
 * whose code `m` is `k`, `∂/∂scale_r = Σ_c dw[r, c] · Σ_m C_m[codes]_c`.
 */
export function aqlmChainGradients(
  p: AqlmFloatParts,
  dw: Float64Array,
  out: { codebooks: Float64Array; scales: Float64Array },
): void {
  const { rows, cols, scheme } = p;
  const { codebooks: M, groupSize: g } = scheme;
  const groups = aqlmGroups(scheme, cols);
  const size = 2 ** scheme.bits;
  for (let r = 0; r < rows; r++) {
    const s = p.scales[r]!;
    let ds = 0;
    for (let j = 0; j < groups; j++) {
      const codes = (r * groups + j) * M;
      for (let i = 0; i < g && j * g + i < cols; i++) {
        const d = dw[r * cols + j * g + i]!;
        if (d === 0) continue;
        let raw = 0;
        for (let m = 0; m < M; m++) {
          const at = (m * size + p.codes[codes + m]!) * g + i;
          raw += p.codebooks[at]!;
          out.codebooks[at]! += s * d;
        }
        ds += d * raw;
      }
    }
    out.scales[r]! += ds;
  }
}

/** The float parameters of a block the fine-tuning trains, when the layer has them. */
const FLOAT_PARAMETERS = ["attnNorm", "ffnNorm", "qNorm", "kNorm", "bq", "bk", "bv", "bo"] as const;
type FloatParameter = (typeof FLOAT_PARAMETERS)[number];

/**
 * A quantized block under fine-tuning: its trainable parameters by name (`wq.codebooks`,
 * `wq.scales`, …, `attnNorm`, …), its loss on windows and the layer it stores.
 */
export class AqlmBlock {
  /** The trainable tensors, updated in place. */
  readonly parameters = new Map<string, Float64Array>();
  readonly #floats: Partial<Record<FloatParameter, Float64Array>> = {};

  constructor(
    readonly config: TrainConfig,
    /** The quantized layer (its float parameters are copied, not changed). */
    readonly layer: LayerWeights,
    /** Every linear's AQLM parts; their codebooks and scales train in place. */
    readonly linears: Record<LinearName, AqlmFloatParts>,
  ) {
    for (const name of LINEAR_NAMES) {
      this.parameters.set(`${name}.codebooks`, linears[name].codebooks);
      this.parameters.set(`${name}.scales`, linears[name].scales);
    }
    for (const name of FLOAT_PARAMETERS) {
      const v = layer[name];
      if (v === undefined) continue;
      this.#floats[name] = Float64Array.from(v);
      this.parameters.set(name, this.#floats[name]);
    }
  }

  /** The block as the backward pass takes it, with the linears' current `Ŵ`. */
  #trainLayer(): TrainLayer {
    const linear = (name: LinearName) => {
      const p = this.linears[name];
      return { rows: p.rows, cols: p.cols, w: aqlmDecoded(p) };
    };
    return {
      ...this.#floats,
      attnNorm: this.#floats.attnNorm!,
      ffnNorm: this.#floats.ffnNorm!,
      ...Object.fromEntries(LINEAR_NAMES.map((n) => [n, linear(n)])),
    } as TrainLayer;
  }

  /**
   * The mean squared error between the block's outputs on `inputs[i]` and `targets[i]` over every
   * element of the windows `batch` selects; with `grads`, its gradients are added there by
   * parameter name.
   */
  loss(
    inputs: readonly Float32Array[],
    targets: readonly Float32Array[],
    batch: readonly number[],
    grads?: Map<string, Float64Array>,
  ): number {
    const layer = this.#trainLayer();
    const count = batch.reduce((n, i) => n + targets[i]!.length, 0);
    let loss = 0;
    for (const i of batch) {
      const target = targets[i]!;
      const { gradients } = blockGradients(
        this.config,
        layer,
        Float64Array.from(inputs[i]!),
        (y) =>
          y.map((v, k) => {
            const e = v - target[k]!;
            loss += e * e;
            return (2 * e) / count;
          }),
      );
      if (!grads) continue;
      for (const name of LINEAR_NAMES) {
        aqlmChainGradients(this.linears[name], gradients.get(name)!, {
          codebooks: grads.get(`${name}.codebooks`)!,
          scales: grads.get(`${name}.scales`)!,
        });
      }
      for (const name of Object.keys(this.#floats)) {
        const sum = grads.get(name)!;
        gradients.get(name)!.forEach((g, k) => sum[k]! += g);
      }
    }
    return loss / count;
  }

  /** The layer as stored: the linears with their codebooks and scales as halves. */
  weights(): LayerWeights {
    const out: LayerWeights = { ...this.layer };
    for (const name of LINEAR_NAMES) out[name] = buildAqlmMatrix(this.linears[name]);
    for (const [name, v] of Object.entries(this.#floats)) {
      out[name as FloatParameter] = Float32Array.from(v);
    }
    return out;
  }
}

/**
 * Fine-tunes `block` on `inputs` towards `targets` (one per window) as the module notes say;
 * `random` draws the windows' order, `log` hears each epoch's mean batch loss. Returns those
 * losses.
 */
export function aqlmFinetune(
  block: AqlmBlock,
  inputs: readonly Float32Array[],
  targets: readonly Float32Array[],
  settings: AqlmFinetuneSettings,
  random: () => number,
  log?: (epoch: number, loss: number) => void,
): number[] {
  const { batchSize } = settings;
  if (batchSize > inputs.length) {
    throw new AqlmFinetuneError(
      `AQLM option finetune_batch_size ${batchSize} exceeds the ${inputs.length} calibration windows`,
    );
  }
  const order = shuffledIndices(inputs.length, random);
  let cursor = 0;
  const nextBatch = () => {
    const batch = order.slice(cursor, cursor + batchSize);
    cursor += batchSize;
    if (cursor >= order.length) cursor = 0;
    return batch;
  };
  const adam = new AdamW({
    lr: settings.lr,
    beta1: settings.beta1,
    beta2: settings.beta2,
    eps: 1e-8,
    weightDecay: 0,
  });
  const grads = new Map(
    [...block.parameters].map(([name, p]) => [name, new Float64Array(p.length)]),
  );
  const batches = Math.floor(inputs.length / batchSize);
  const losses: number[] = [];
  for (let epoch = 0; epoch < settings.maxEpochs; epoch++) {
    let sum = 0;
    for (let b = 0; b < batches; b++) {
      for (const g of grads.values()) g.fill(0);
      const loss = block.loss(inputs, targets, nextBatch(), grads);
      if (!Number.isFinite(loss)) throw new AqlmFinetuneError(`Fine-tuning loss is ${loss}`);
      adam.step(block.parameters, grads);
      sum += loss;
    }
    losses.push(sum / batches);
    log?.(epoch, sum / batches);
  }
  return losses;
}
