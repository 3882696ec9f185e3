/**
 * AdamW (Loshchilov & Hutter), as PyTorch's `torch.optim.AdamW` computes it: per step `t`,
 *
 * `p ← p − lr·λ·p`; `m ← β₁m + (1−β₁)g`; `v ← β₂v + (1−β₂)g²`;
 * `p ← p − lr · (m / (1−β₁ᵗ)) / (sqrt(v / (1−β₂ᵗ)) + ε)`.
 *
 * @example
 * ```ts
 * const w = new Float64Array([1, 2]);
 * const adamw = new AdamW({ lr: 0.1 });
 * adamw.step(new Map([["w", w]]), new Map([["w", new Float64Array([0.5, -1])]]));
 * ```
 *
 * @module
 */

/** AdamW's hyper-parameters (PyTorch's defaults where optional). */
export interface AdamWOptions {
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay λ; default 0.01. */
  weightDecay?: number;
}

/** Thrown when a parameter has no gradient or one of another size. */
export class AdamWError extends Error {
  override name = "AdamWError";
}

/** AdamW's state over named float64 parameters, updated in place. */
export class AdamW {
  readonly #lr: number;
  readonly #beta1: number;
  readonly #beta2: number;
  readonly #eps: number;
  readonly #decay: number;
  readonly #m = new Map<string, Float64Array>();
  readonly #v = new Map<string, Float64Array>();
  #t = 0;

  constructor(options: AdamWOptions) {
    this.#lr = options.lr;
    this.#beta1 = options.beta1 ?? 0.9;
    this.#beta2 = options.beta2 ?? 0.999;
    this.#eps = options.eps ?? 1e-8;
    this.#decay = options.weightDecay ?? 0.01;
  }

  /** Steps taken so far. */
  get steps(): number {
    return this.#t;
  }

  /**
   * One update of every parameter in `params` with its gradient from `grads`, at learning rate
   * `lr` (the constructor's by default; a schedule passes each step's).
   */
  step(
    params: ReadonlyMap<string, Float64Array>,
    grads: ReadonlyMap<string, Float64Array>,
    lr: number = this.#lr,
  ): void {
    this.#t++;
    const c1 = 1 - this.#beta1 ** this.#t;
    const c2 = 1 - this.#beta2 ** this.#t;
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (g === undefined || g.length !== p.length) {
        throw new AdamWError(
          `Parameter "${name}" (${p.length} values) has ${g ? g.length : "no"} gradient values`,
        );
      }
      let m = this.#m.get(name);
      let v = this.#v.get(name);
      if (m === undefined || v === undefined) {
        m = new Float64Array(p.length);
        v = new Float64Array(p.length);
        this.#m.set(name, m);
        this.#v.set(name, v);
      }
      for (let i = 0; i < p.length; i++) {
        p[i]! -= lr * this.#decay * p[i]!;
        m[i] = this.#beta1 * m[i]! + (1 - this.#beta1) * g[i]!;
        v[i] = this.#beta2 * v[i]! + (1 - this.#beta2) * g[i]! * g[i]!;
        p[i]! -= (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + this.#eps);
      }
    }
  }
}
