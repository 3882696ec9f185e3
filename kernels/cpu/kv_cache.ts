/**
 * The CPU backend's quantized KV cache (KIVI-style; the recipe is in
 * `kernels/formats/runtime_quant.ts`): beside the float32 cache the runner keeps, a dequantized
 * copy holds every key group and value that has left the full-precision window, and
 * {@linkcode KvView} tells attention, per query position, which positions to read from it.
 *
 * @module
 */
import type { KvCacheSettings } from "../../core/model.ts";
import type { KvView } from "./ops.ts";
import { quantizeKvGroup, RuntimeQuantizationError } from "../formats/runtime_quant.ts";

/** Quantized copies of a runner's key and value caches, one pair per layer. */
export class QuantizedKvCache {
  readonly #settings: KvCacheSettings;
  readonly #kvDim: number;
  /** Tokens per key group (per channel). */
  readonly #keyGroup: number;
  /** Keys enter the quantized copy a block of this many tokens at a time. */
  readonly #keyBlock: number;
  /** Channels per value group (per token, within a head). */
  readonly #valueGroup: number;
  readonly #keys: Float32Array[];
  readonly #values: Float32Array[];
  /** Per layer: positions whose key groups are quantized. */
  readonly #keysDone: number[];

  constructor(
    settings: KvCacheSettings,
    layers: number,
    maxSeqLen: number,
    nKvHeads: number,
    headDim: number,
  ) {
    const { group, residual } = settings;
    this.#settings = settings;
    this.#kvDim = nKvHeads * headDim;
    this.#keyGroup = group > 0 ? group : residual;
    this.#keyBlock = residual > 0 ? residual : group;
    this.#valueGroup = group > 0 ? Math.min(group, headDim) : headDim;
    if (!(this.#keyGroup > 0) || this.#keyBlock % this.#keyGroup !== 0) {
      throw new RuntimeQuantizationError(
        `kv_cache group ${group} and residual ${residual} do not fit: the residual must be a ` +
          `multiple of the group, and one of them positive`,
      );
    }
    if (headDim % this.#valueGroup !== 0) {
      throw new RuntimeQuantizationError(
        `kv_cache group ${group} does not divide the head width ${headDim} (values are ` +
          `quantized per token in groups of channels of one head)`,
      );
    }
    this.#keys = Array.from({ length: layers }, () => new Float32Array(maxSeqLen * this.#kvDim));
    this.#values = Array.from({ length: layers }, () => new Float32Array(maxSeqLen * this.#kvDim));
    this.#keysDone = new Array(layers).fill(0);
  }

  /**
   * Quantizes what positions `[pos, end)` of layer `l` (just written to `keys` and `values`,
   * the float caches) make due: those positions' values, and every key group they complete.
   */
  update(l: number, keys: Float32Array, values: Float32Array, pos: number, end: number): void {
    const kvDim = this.#kvDim;
    const format = this.#settings.format;
    const valuesQ = this.#values[l]!;
    for (let t = pos; t < end; t++) {
      for (let c = 0; c < kvDim; c += this.#valueGroup) {
        quantizeKvGroup(values, valuesQ, t * kvDim + c, 1, this.#valueGroup, format);
      }
    }
    if (pos < this.#keysDone[l]!) this.#keysDone[l] = pos - (pos % this.#keyGroup);
    const keysQ = this.#keys[l]!;
    for (let t0 = this.#keysDone[l]!; t0 + this.#keyGroup <= end; t0 += this.#keyGroup) {
      for (let c = 0; c < kvDim; c++) {
        quantizeKvGroup(keys, keysQ, t0 * kvDim + c, kvDim, this.#keyGroup, format);
      }
      this.#keysDone[l] = t0 + this.#keyGroup;
    }
  }

  /** What attention reads for layer `l`. */
  view(l: number): KvView {
    const block = this.#keyBlock;
    const residual = this.#settings.residual;
    return {
      keys: this.#keys[l]!,
      values: this.#values[l]!,
      keysBefore: (p) => block * Math.floor((p + 1) / block),
      valuesBefore: (p) => Math.max(0, p + 1 - residual),
    };
  }
}
