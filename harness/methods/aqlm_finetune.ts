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
 * `finetune_max_epochs` epochs. With held-out windows (the reference's `val_size`, default none:
 * windows drawn out of the calibration set, quantized through but never trained on), their loss
 * (the mean of `⌊held-out / batch⌋` batch losses, batches walked as the training ones) is
 * measured before training and after each epoch; training stops after `finetune_early_stop`
 * epochs in a row without a new best, and the parameters of the best are restored.
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

/** Held-out windows: the block's inputs and reference outputs on them, and the early stop. */
export interface AqlmValidation {
  inputs: readonly Float32Array[];
  targets: readonly Float32Array[];
  /** Epochs in a row without a new best held-out loss that stop the training. */
  earlyStop: number;
}

/** The losses of a fine-tuning run. */
export interface AqlmFinetuneLosses {
  /** Each epoch's mean batch loss on the training windows. */
  train: number[];
  /** With held-out windows: their loss before training, then after each epoch. */
  valid: number[];
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

/** Batches of `size` of `n` windows along one random order, walked cyclically (the last may be short). */
function batchCycle(n: number, size: number, random: () => number): () => number[] {
  const order = shuffledIndices(n, random);
  let cursor = 0;
  return () => {
    const batch = order.slice(cursor, cursor + size);
    cursor += size;
    if (cursor >= n) cursor = 0;
    return batch;
  };
}

/**
 * Fine-tunes `block` on `inputs` towards `targets` (one per window) as the module notes say;
 * `random` draws the windows' orders, `log` hears each epoch's losses.
 */
export function aqlmFinetune(
  block: AqlmBlock,
  inputs: readonly Float32Array[],
  targets: readonly Float32Array[],
  settings: AqlmFinetuneSettings,
  random: () => number,
  log?: (epoch: number, train: number, valid?: number) => void,
  validation?: AqlmValidation,
): AqlmFinetuneLosses {
  const { batchSize } = settings;
  const enough = (n: number, what: string) => {
    if (batchSize > n) {
      throw new AqlmFinetuneError(
        `AQLM option finetune_batch_size ${batchSize} exceeds the ${n} ${what} windows`,
      );
    }
  };
  enough(inputs.length, "calibration");
  if (validation) enough(validation.inputs.length, "held-out");
  // The held-out order is drawn first, as the reference's first use of its iterators.
  const nextValid = validation && batchCycle(validation.inputs.length, batchSize, random);
  const validLoss = () => {
    const { inputs, targets } = validation!;
    const batches = Math.floor(inputs.length / batchSize);
    let sum = 0;
    for (let b = 0; b < batches; b++) sum += block.loss(inputs, targets, nextValid!());
    return sum / batches;
  };
  const nextBatch = batchCycle(inputs.length, batchSize, random);
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
  const snapshot = () => new Map([...block.parameters].map(([name, p]) => [name, p.slice()]));
  const losses: AqlmFinetuneLosses = { train: [], valid: [] };
  let best = validation ? validLoss() : Infinity;
  let bestParameters = validation && snapshot();
  if (validation) losses.valid.push(best);
  let worse = 0;
  const batches = Math.floor(inputs.length / batchSize);
  for (let epoch = 0; epoch < settings.maxEpochs; epoch++) {
    let sum = 0;
    for (let b = 0; b < batches; b++) {
      for (const g of grads.values()) g.fill(0);
      const loss = block.loss(inputs, targets, nextBatch(), grads);
      if (!Number.isFinite(loss)) throw new AqlmFinetuneError(`Fine-tuning loss is ${loss}`);
      adam.step(block.parameters, grads);
      sum += loss;
    }
    losses.train.push(sum / batches);
    if (!validation) {
      log?.(epoch, sum / batches);
      continue;
    }
    const valid = validLoss();
    losses.valid.push(valid);
    log?.(epoch, sum / batches, valid);
    if (valid < best) {
      [best, bestParameters, worse] = [valid, snapshot(), 0];
    } else if (++worse >= validation.earlyStop) break;
  }
  for (const [name, p] of bestParameters ?? []) block.parameters.get(name)!.set(p);
  return losses;
}
