/**
 * One training step: the loss and gradients of `backward.ts`, then an AdamW update of the chosen
 * parameters (by name, as `parameters` lists them: e.g. only the norm gains, or only a
 * fake-quantized linear's scales and channel factors).
 *
 * @example
 * ```ts
 * import { AdamW } from "./adamw.ts";
 * import { trainParams } from "./backward.ts";
 * declare const model: import("../../core/model.ts").LlamaModel;
 * const params = trainParams(model);
 * const adamw = new AdamW({ lr: 1e-3, weightDecay: 0 });
 * const objective = { kind: "cross_entropy", targets: [5, 9, 2, -1] } as const;
 * trainStep(model.config, params, [1, 5, 9, 2], objective, adamw, (n) => n.endsWith("Norm"));
 * ```
 *
 * @module
 */
import type { AdamW } from "./adamw.ts";
import {
  lossAndGradients,
  type Objective,
  parameters,
  type TrainConfig,
  type TrainParams,
} from "./backward.ts";

/**
 * Computes the loss on `tokens` and updates, in place, the parameters whose name `trainable`
 * accepts (all by default). Returns the loss before the update.
 */
export function trainStep(
  config: TrainConfig,
  params: TrainParams,
  tokens: ArrayLike<number>,
  objective: Objective,
  optimizer: AdamW,
  trainable: (name: string) => boolean = () => true,
): number {
  const { loss, gradients } = lossAndGradients(config, params, tokens, objective);
  const chosen = new Map([...parameters(params)].filter(([name]) => trainable(name)));
  optimizer.step(chosen, gradients);
  return loss;
}
