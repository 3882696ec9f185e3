/**
 * Compiled pipelines and recorded dispatches of the WebGPU backend. A {@linkcode Dispatch} holds
 * a bind group made once at load time; encoding a forward pass only sets pipelines, bind groups
 * (with the dynamic offset of the slice's `Step` uniform) and workgroup counts.
 *
 * @module
 */
import type { Gpu } from "./device.ts";
import type { CombineShape } from "./gemv_combine_wgsl.ts";
import { gemvShader } from "./matmul_wgsl.ts";
import {
  chooseGemmTiling,
  DEFAULT_GEMM_TILING,
  gemmGroups,
  gemmReduceShader,
  gemmShader,
  type GemmTiling,
  SPLIT_TARGET_GROUPS,
  splitWays,
  validateGemmTiling,
  WIDE_GEMM_TILING,
} from "./gemm_wgsl.ts";
import {
  ATTENTION_WGSL,
  attentionShader,
  BIAS_WGSL,
  COPY_WGSL,
  HEADNORM_WGSL,
  RMSNORM_WGSL,
  ROPE_WGSL,
  SWIGLU_WGSL,
} from "./ops_wgsl.ts";
import { NLL_WGSL } from "./nll_wgsl.ts";
import {
  DECODE_SPLIT_KEYS,
  decodeAttentionShader,
  decodeCombineShader,
  decodePartialFloats,
} from "./decode_attention_wgsl.ts";
import {
  PREFILL_QUERIES,
  prefillAttentionShader,
  prefillKeyTile,
} from "./prefill_attention_wgsl.ts";
import { prefillRowsApplies, prefillRowsShader, ROW_QUERIES } from "./prefill_rows_wgsl.ts";
import {
  kvKeySlots,
  kvQuantizeKeysShader,
  kvQuantizeValuesShader,
  type KvQuantLayout,
} from "./kv_quant_wgsl.ts";
import { EMBED_WGSL } from "./embed_wgsl.ts";
import { KV_WINDOW_WGSL } from "./kv_window_wgsl.ts";
import { codebookMatmul } from "./codebook_matmul.ts";
import { quipMatmul } from "./quip_matmul.ts";
import { blockHadamardShader, HADAMARD_MAX_N, hadamardFactorData } from "./hadamard_wgsl.ts";
import { wideHadamardPasses } from "./hadamard_wide_wgsl.ts";
import { ARGMAX_WGSL } from "./argmax_wgsl.ts";
import {
  qkvScatterParams,
  qkvScatterShader,
  type QkvScatterShape,
  qkvScatterThreads,
} from "./qkv_scatter_wgsl.ts";
import { SWIGLU_PAIR_WGSL } from "./swiglu_pair_wgsl.ts";
import { gemvA8RowsPerGroup, gemvRowsPerGroup, type PackedMatrix } from "./pack.ts";
import {
  a8Supported,
  type ActivationElement,
  codesPerWord,
  gemvA8Shader,
  QUANTIZE_WORDS_PER_GROUP,
  quantizeActivationsShader,
  quantizedRowWords,
} from "./gemv_a8_wgsl.ts";

/** Byte stride of `Step` slots in the step buffer (the dynamic-offset alignment). */
export const STEP_STRIDE = 256;

/** Token rows up to which matmuls use the GEMV kernel (above: GEMM). */
export const GEMV_MAX_ROWS = 4;

/** Thrown when a WGSL pipeline fails to compile. */
export class ShaderError extends Error {
  override name = "ShaderError";
}

/** One recorded kernel launch; pipeline and grid may depend on the slice's token count. */
export interface Dispatch {
  label: string;
  pipeline(T: number): GPUComputePipeline;
  bindGroup: GPUBindGroup;
  /** A bind group for `T` rows other than `bindGroup` (kernels reading other inputs). */
  bindGroupFor?(T: number): GPUBindGroup;
  groups(T: number): [number, number, number];
  /**
   * On split decode attention's combine: the partial results it combines, which a float GEMV
   * reading its output may combine itself instead (`Kernels.matmul`'s `combine`).
   */
  partials?: DecodePartials;
}

/** Split decode attention's partial results (`decode_attention_wgsl.ts`) and their shape. */
export interface DecodePartials {
  buffer: GPUBuffer;
  shape: CombineShape;
}

/** Packed integer activation rows for the integer-activation GEMV (`quantizeActivations`). */
export interface QuantizedActivations {
  buffer: GPUBuffer;
  /** Activation codes per weight word: the weights' code width this packing serves. */
  per: number;
}

/**
 * A layer's quantized KV cache (`kv_quant_wgsl.ts`): its layout, its key and value buffers (codes
 * and sides), and the step's key and value rows by token (one pair of buffers all layers share),
 * where the step's own positions are read until they go into the float window.
 */
export interface QuantizedKv {
  layout: KvQuantLayout;
  keys: GPUBuffer;
  values: GPUBuffer;
  rows: { keys: GPUBuffer; values: GPUBuffer };
}

/** The GPU buffers (or ranges of buffers) of one row part of a packed matrix. */
export interface WeightBuffers {
  codes: GPUBuffer | GPUBufferBinding;
  scales: GPUBuffer | GPUBufferBinding;
}

/** Binding kinds: `u` uniform, `s` step uniform (dynamic offset), `r` read-only, `w` storage. */
type Signature = string;

/** Workgroup counts for `n` threads of 256, folded into two dimensions past 65535. */
export function linearGroups(n: number): [number, number, number] {
  const wgs = Math.max(1, Math.ceil(n / 256));
  const x = Math.min(wgs, 65535);
  return [x, Math.ceil(wgs / x), 1];
}

/** Bind group layouts and compiled pipelines, shared by everything on one device. */
const caches = new WeakMap<
  GPUDevice,
  {
    layouts: Map<Signature, GPUBindGroupLayout>;
    pipelines: Map<string, Promise<GPUComputePipeline>>;
  }
>();

/**
 * Pipelines and dispatch builders on one device. Buffers made through it are owned by it and
 * freed by {@linkcode Kernels.destroy}; compiled pipelines are shared per device.
 */
export class Kernels {
  readonly gpu: Gpu;
  readonly device: GPUDevice;
  readonly #layouts: Map<Signature, GPUBindGroupLayout>;
  readonly #pipelines: Map<string, Promise<GPUComputePipeline>>;
  readonly #owned: GPUBuffer[] = [];
  /** Bound where a format has no scales (bindings must not be empty). */
  readonly empty: GPUBuffer;
  /** Partial sums of split GEMMs, shared by all of them (dispatches run one after another). */
  #scratch: GPUBuffer | undefined;

  constructor(gpu: Gpu) {
    this.gpu = gpu;
    this.device = gpu.device;
    let cache = caches.get(this.device);
    if (!cache) caches.set(this.device, cache = { layouts: new Map(), pipelines: new Map() });
    this.#layouts = cache.layouts;
    this.#pipelines = cache.pipelines;
    this.empty = this.buffer(16, GPUBufferUsage.STORAGE);
  }

  /** A new owned buffer. */
  buffer(size: number, usage: GPUBufferUsageFlags, mappedAtCreation = false): GPUBuffer {
    const buf = this.device.createBuffer({ size, usage, mappedAtCreation });
    this.#owned.push(buf);
    return buf;
  }

  /** Frees every buffer this instance made. */
  destroy(): void {
    for (const b of this.#owned.splice(0)) b.destroy();
  }

  /** The bind group layout of a signature such as `usrrrw`. */
  layout(sig: Signature): GPUBindGroupLayout {
    let l = this.#layouts.get(sig);
    if (!l) {
      l = this.device.createBindGroupLayout({
        entries: [...sig].map((k, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: k === "u"
            ? { type: "uniform" }
            : k === "s"
            ? { type: "uniform", hasDynamicOffset: true }
            : { type: k === "r" ? "read-only-storage" : "storage" },
        })),
      });
      this.#layouts.set(sig, l);
    }
    return l;
  }

  /** Compiles (once) a pipeline; rejects with {@linkcode ShaderError} on WGSL errors. */
  pipeline(sig: Signature, code: string): Promise<GPUComputePipeline> {
    const key = `${sig}\n${code}`;
    let p = this.#pipelines.get(key);
    if (!p) {
      p = (async () => {
        const module = this.device.createShaderModule({ code });
        try {
          return await this.device.createComputePipelineAsync({
            layout: this.device.createPipelineLayout({ bindGroupLayouts: [this.layout(sig)] }),
            compute: { module, entryPoint: "main" },
          });
        } catch (e) {
          const info = await module.getCompilationInfo();
          const messages = info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
          throw new ShaderError(
            `WGSL pipeline failed: ${(e as Error).message} ${messages.join("; ")}`,
            { cause: e },
          );
        }
      })();
      this.#pipelines.set(key, p);
    }
    return p;
  }

  /** A uniform buffer holding `words` (u32 or f32 values as given by `floats`). */
  uniform(words: number[], floats: number[] = []): GPUBuffer {
    const n = Math.max(4, Math.ceil(words.length / 4) * 4);
    const buf = this.buffer(n * 4, GPUBufferUsage.UNIFORM, true);
    const u = new Uint32Array(buf.getMappedRange());
    const f = new Float32Array(u.buffer);
    words.forEach((w, i) => (floats.includes(i) ? (f[i] = w) : (u[i] = w)));
    buf.unmap();
    return buf;
  }

  /** A storage buffer initialised from `data` (padded to a multiple of 16 bytes, for vec4s). */
  storage(data: ArrayBufferView | number, extraUsage = 0): GPUBuffer {
    const bytes = typeof data === "number" ? data : data.byteLength;
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const buf = this.buffer(
      size,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage,
      typeof data !== "number",
    );
    if (typeof data !== "number") {
      new Uint8Array(buf.getMappedRange()).set(
        new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      );
      buf.unmap();
    }
    return buf;
  }

  #bind(sig: Signature, buffers: (GPUBuffer | GPUBufferBinding)[]) {
    return this.device.createBindGroup({
      layout: this.layout(sig),
      entries: buffers.map((b, binding) => ({
        binding,
        resource: b instanceof GPUBuffer ? { buffer: b } : b,
      })),
    });
  }

  /**
   * A dispatch of a kernel whose bindings are its uniform (`params`, those at `floats` as f32),
   * the `Step` uniform (dynamic offset), then `buffers`, as `sig` lists them (`us…`).
   */
  async #stepped(
    step: GPUBuffer,
    k: {
      label: string;
      sig: Signature;
      code: string;
      params: number[];
      floats?: number[];
      buffers: GPUBuffer[];
      groups: Dispatch["groups"];
    },
  ): Promise<Dispatch> {
    const pipe = await this.pipeline(k.sig, k.code);
    return {
      label: k.label,
      pipeline: () => pipe,
      bindGroup: this.#bind(k.sig, [
        this.uniform(k.params, k.floats ?? []),
        { buffer: step, size: 16 },
        ...k.buffers,
      ]),
      groups: k.groups,
    };
  }

  /** RMSNorm of `T` rows of `dim` from `x` into `out`. */
  async rmsnorm(
    step: GPUBuffer,
    x: GPUBuffer,
    weight: GPUBuffer,
    out: GPUBuffer,
    dim: number,
    eps: number,
  ): Promise<Dispatch> {
    return await this.#stepped(step, {
      label: "rmsnorm",
      sig: "usrrw",
      code: RMSNORM_WGSL,
      params: [dim, eps],
      floats: [1],
      buffers: [x, weight, out],
      groups: (T) => [T, 1, 1],
    });
  }

  /** RoPE in place on rows at `off + pos·posStride + t·rowStride`. */
  async rope(
    step: GPUBuffer,
    table: GPUBuffer,
    buf: GPUBuffer,
    o: {
      nHeads: number;
      headDim: number;
      rowStride: number;
      off: number;
      posStride: number;
      style: "interleaved" | "half";
    },
  ): Promise<Dispatch> {
    const params = [
      o.nHeads,
      o.headDim,
      o.rowStride,
      o.off,
      o.posStride,
      o.style === "interleaved" ? 1 : 0,
    ];
    return await this.#stepped(step, {
      label: "rope",
      sig: "usrw",
      code: ROPE_WGSL,
      params: params,
      buffers: [table, buf],
      groups: (T) => linearGroups((T * o.nHeads * o.headDim) / 2),
    });
  }

  /**
   * Causal GQA attention of `T` query rows at positions `pos …` over the KV cache: for one row
   * (decoding) split over blocks of cached positions and combined (`decode_attention_wgsl.ts`,
   * two dispatches), for more the prefill kernel's query tiles (`prefill_attention_wgsl.ts`), and
   * the one-workgroup-per-row kernel (`ATTENTION_WGSL`) where those do not apply. The dispatches
   * that do not apply to a `T` have no workgroups (and are skipped). With `kv`, a quantized KV
   * cache (`kv_quant_wgsl.ts`), read as the CPU's view reads it: `keys` and `values` are then its
   * float windows, and the step's own positions are read from `kv.rows`. With `fromQkv` (a float
   * cache), a one-token step's split kernel reads the stacked `[q | k | v]` row and does the
   * scatter's RoPE and cache write itself (`decode_attention_wgsl.ts`): its scatter need not run.
   */
  async attention(
    step: GPUBuffer,
    q: GPUBuffer,
    keys: GPUBuffer,
    values: GPUBuffer,
    out: GPUBuffer,
    o: {
      nHeads: number;
      nKvHeads: number;
      headDim: number;
      fromQkv?: { qkv: GPUBuffer; table: GPUBuffer; style: "interleaved" | "half" };
    },
    kv?: QuantizedKv,
  ): Promise<Dispatch[]> {
    if (o.headDim > 256 || o.headDim % 2 !== 0) {
      throw new RangeError(`Head size ${o.headDim} is not supported (even, at most 256)`);
    }
    const sig = kv ? "usrrrwrrrr" : "usrrrw";
    const pipe = kv
      ? await this.pipeline(sig, attentionShader(kv.layout))
      : await this.pipeline("usrrrw", ATTENTION_WGSL);
    const tile = prefillKeyTile(
      o.headDim,
      this.device.limits.maxComputeWorkgroupStorageSize,
      kv !== undefined,
    );
    // One thread a query row where the head fits its registers (float cache), else lanes a row.
    const rows = kv === undefined &&
      prefillRowsApplies(o.headDim, this.device.limits.maxComputeWorkgroupStorageSize);
    const queries = rows ? ROW_QUERIES : PREFILL_QUERIES;
    const prefill = rows
      ? await this.pipeline(sig, prefillRowsShader(o.headDim))
      : tile === undefined
      ? undefined
      : await this.pipeline(sig, prefillAttentionShader(o.headDim, tile, kv?.layout));
    const kvDim = o.nKvHeads * o.headDim;
    const scale = 1 / Math.sqrt(o.headDim);
    const params = [
      o.nHeads,
      o.nKvHeads,
      o.headDim,
      kvDim,
      scale,
      o.nHeads * o.headDim,
      o.headDim < 64 ? Math.floor(64 / o.headDim) : 1,
    ];
    const group = this.#bind(sig, [
      this.uniform(params, [4]),
      { buffer: step, size: 16 },
      q,
      keys,
      values,
      out,
      ...(kv ? [kv.keys, kv.values, kv.rows.keys, kv.rows.values] : []),
    ]);
    // Decoding: blocks over the whole cache, those past the position returning at once.
    const split = o.headDim % 4 === 0
      ? await this.#decodeAttention(step, q, keys, values, out, o, kvDim, scale, kv)
      : undefined;
    const main: Dispatch = {
      label: "attention",
      pipeline: (T) => (T === 1 ? split?.pipeline : T > 1 ? prefill : undefined) ?? pipe,
      bindGroup: group,
      bindGroupFor: split && ((T) => T === 1 ? split.bindGroup : group),
      groups: (T) =>
        T === 1 && split
          ? [split.blocks, o.nHeads, 1]
          : T > 1 && prefill
          ? [Math.ceil(T / queries), o.nHeads, 1]
          : [o.nHeads, T, 1],
    };
    if (!split) return [main];
    return [main, {
      label: "attention combine",
      pipeline: () => split.combine,
      bindGroup: split.combineGroup,
      groups: (T) => (T === 1 ? [o.nHeads, 1, 1] : [0, 0, 0]),
      partials: {
        buffer: split.partial,
        shape: {
          nHeads: o.nHeads,
          headDim: o.headDim,
          nSplits: split.blocks,
          splitKeys: DECODE_SPLIT_KEYS,
          blockFloats: decodePartialFloats(o.headDim),
        },
      },
    }];
  }

  /** The split decode attention's pipelines, partial results and bind groups for a cache. */
  async #decodeAttention(
    step: GPUBuffer,
    q: GPUBuffer,
    keys: GPUBuffer,
    values: GPUBuffer,
    out: GPUBuffer,
    o: Parameters<Kernels["attention"]>[5],
    kvDim: number,
    scale: number,
    kv: QuantizedKv | undefined,
  ) {
    const rope = kv ? undefined : o.fromQkv;
    // A quantized cache's float window is shorter than the positions it serves.
    const positions = kv?.layout.maxSeqLen ?? Math.floor(keys.size / (4 * kvDim));
    const blocks = Math.max(1, Math.ceil(positions / DECODE_SPLIT_KEYS));
    // Whole vec4s: a fused GEMV reads the partial results as vec4s (`gemv_combine_wgsl.ts`).
    const partialFloats = o.nHeads * blocks * decodePartialFloats(o.headDim);
    const partial = this.storage(Math.ceil(partialFloats / 4) * 16);
    const uniform = this.uniform(
      [o.nHeads, o.nKvHeads, o.headDim, kvDim, scale, blocks, 0, 0],
      [4],
    );
    return {
      blocks,
      partial,
      pipeline: rope
        ? await this.pipeline("usrwwwr", decodeAttentionShader(o.headDim, undefined, rope.style))
        : await this.pipeline(
          kv ? "usrrrwrr" : "usrrrw",
          decodeAttentionShader(o.headDim, kv?.layout),
        ),
      combine: await this.pipeline("usrw", decodeCombineShader(o.headDim)),
      bindGroup: rope
        ? this.#bind("usrwwwr", [
          uniform,
          { buffer: step, size: 16 },
          rope.qkv,
          keys,
          values,
          partial,
          rope.table,
        ])
        : this.#bind(kv ? "usrrrwrr" : "usrrrw", [
          uniform,
          { buffer: step, size: 16 },
          q,
          keys,
          values,
          partial,
          ...(kv ? [kv.keys, kv.values] : []),
        ]),
      combineGroup: this.#bind("usrw", [uniform, { buffer: step, size: 16 }, partial, out]),
    };
  }

  /**
   * Quantizes what a forward step makes due in a layer's KV cache (`kv_quant_wgsl.ts`): the key
   * groups it completes and its positions' values, from the float windows `keys` and `values` and
   * the step's rows (written and roped before these run) into `kv`'s buffers.
   */
  async kvQuantize(
    step: GPUBuffer,
    keys: GPUBuffer,
    values: GPUBuffer,
    kv: QuantizedKv,
  ): Promise<Dispatch[]> {
    const l = kv.layout;
    const [keyPipe, valuePipe] = await Promise.all([
      this.pipeline("srrw", kvQuantizeKeysShader(l)),
      this.pipeline("srrw", kvQuantizeValuesShader(l)),
    ]);
    const stepBinding = { buffer: step, size: 16 };
    return [{
      label: "kv quantize keys",
      pipeline: () => keyPipe,
      bindGroup: this.#bind("srrw", [stepBinding, keys, kv.rows.keys, kv.keys]),
      groups: (T) => linearGroups(kvKeySlots(l, T) * l.rowWords),
    }, {
      label: "kv quantize values",
      pipeline: () => valuePipe,
      bindGroup: this.#bind("srrw", [stepBinding, values, kv.rows.values, kv.values]),
      groups: (T) => linearGroups(T * l.rowWords),
    }];
  }

  /**
   * Writes a step's key and value rows (`kv.rows`, by token) into a quantized KV cache's float
   * windows `keys` and `values` at their positions (`kv_window_wgsl.ts`), for the steps `when`
   * names and no others: `decode` for one-token steps (before attention, which reads the row from
   * the window), `prefill` for longer ones (after attention, which read the window's rows the new
   * ones overwrite).
   */
  async kvWindowWrite(
    step: GPUBuffer,
    kv: QuantizedKv,
    keys: GPUBuffer,
    values: GPUBuffer,
    when: "decode" | "prefill",
  ): Promise<Dispatch> {
    const kvDim = kv.layout.kvDim;
    return await this.#stepped(step, {
      label: "kv window write",
      sig: "usrrww",
      code: KV_WINDOW_WGSL,
      params: [kvDim, kv.layout.window],
      buffers: [kv.rows.keys, kv.rows.values, keys, values],
      groups: (T) => (T === 1) === (when === "decode") ? linearGroups(T * kvDim) : [0, 0, 0],
    });
  }

  /** In place `gate = silu(gate)·up` over rows of `n`. */
  async swiglu(step: GPUBuffer, gate: GPUBuffer, up: GPUBuffer, n: number): Promise<Dispatch> {
    return await this.#stepped(step, {
      label: "swiglu",
      sig: "uswr",
      code: SWIGLU_WGSL,
      params: [n],
      buffers: [gate, up],
      groups: (T) => linearGroups(T * n),
    });
  }

  /**
   * Splits stacked `[q | k | v]` rows into `q` and the KV cache at the rows' positions, with RoPE
   * on the query and key heads (`qkv_scatter_wgsl.ts`). With `kv`, a quantized cache: keys and
   * values go to its step rows, and a one-token step's also to `keys` and `values`, its float
   * windows.
   */
  async qkvScatter(
    step: GPUBuffer,
    table: GPUBuffer,
    qkv: GPUBuffer,
    out: { q: GPUBuffer; keys: GPUBuffer; values: GPUBuffer },
    o: QkvScatterShape,
    kv?: QuantizedKv,
  ): Promise<Dispatch> {
    const rows = kv ? [kv.rows.keys, kv.rows.values] : [];
    return await this.#stepped(step, {
      label: "qkv rope scatter",
      sig: kv ? "usrrwwwww" : "usrrwww",
      code: qkvScatterShader(kv !== undefined),
      params: qkvScatterParams(o, kv?.layout.window ?? 0),
      buffers: [table, qkv, out.q, out.keys, out.values, ...rows],
      groups: (T) => linearGroups(qkvScatterThreads(o, T)),
    });
  }

  /** `out = silu(gate)·up` over rows of stacked `[gate | up]` of `2n` (`swiglu_pair_wgsl.ts`). */
  async swigluPair(
    step: GPUBuffer,
    gateUp: GPUBuffer,
    out: GPUBuffer,
    n: number,
  ): Promise<Dispatch> {
    return await this.#stepped(step, {
      label: "swiglu",
      sig: "usrw",
      code: SWIGLU_PAIR_WGSL,
      params: [n],
      buffers: [gateUp, out],
      groups: (T) => linearGroups(T * n),
    });
  }

  /** In place `buf[off + pos·posStride + t·rowStride + i] += bias[i]`. */
  async bias(
    step: GPUBuffer,
    bias: GPUBuffer,
    buf: GPUBuffer,
    n: number,
    o: { off?: number; posStride?: number; rowStride: number },
  ): Promise<Dispatch> {
    const params = [n, o.off ?? 0, o.posStride ?? 0, o.rowStride];
    return await this.#stepped(step, {
      label: "bias",
      sig: "usrw",
      code: BIAS_WGSL,
      params: params,
      buffers: [bias, buf],
      groups: (T) => linearGroups(T * n),
    });
  }

  /** In place RMSNorm of each of `heads` heads of `headDim` in rows at `off + pos·posStride`. */
  async headNorm(
    step: GPUBuffer,
    weight: GPUBuffer,
    buf: GPUBuffer,
    o: { heads: number; headDim: number; eps: number; posStride?: number; rowStride: number },
  ): Promise<Dispatch> {
    const params = [o.headDim, o.eps, 0, o.posStride ?? 0, o.rowStride];
    return await this.#stepped(step, {
      label: "headnorm",
      sig: "usrw",
      code: HEADNORM_WGSL,
      params: params,
      floats: [1],
      buffers: [weight, buf],
      groups: (T) => [o.heads, T, 1],
    });
  }

  /**
   * In place, every block of `n` values of `blocks` blocks per row is replaced by its Hadamard
   * transform `M · v` (a rotated model's run-time `hadamard` step), in rows at
   * `pos·posStride + t·rowStride`: one dispatch where a block fits a workgroup's memory
   * (`hadamard_wgsl.ts`), else the passes over global memory of `hadamard_wide_wgsl.ts`.
   */
  async hadamard(
    step: GPUBuffer,
    buf: GPUBuffer,
    o: { n: number; blocks: number; posStride?: number; rowStride: number },
  ): Promise<Dispatch[]> {
    const factor = this.storage(hadamardFactorData(o.n));
    if (o.n <= HADAMARD_MAX_N) {
      return [
        await this.#stepped(step, {
          label: "hadamard",
          sig: "usrw",
          code: blockHadamardShader(o.n),
          params: [0, o.posStride ?? 0, o.rowStride],
          buffers: [factor, buf],
          groups: (T) => [o.blocks, T, 1],
        }),
      ];
    }
    const passes = wideHadamardPasses(o.n, false, { input: "work", output: "work" });
    return await Promise.all(passes.map((p) =>
      this.#stepped(step, {
        label: `hadamard (${p.name})`,
        sig: p.sig,
        code: p.code,
        params: [0, o.posStride ?? 0, o.rowStride, 0, 0, 0, 0, 0],
        buffers: [buf, factor],
        groups: (T) => [p.groups, T, o.blocks],
      })
    ));
  }

  /**
   * Per-token dynamic quantization of `T` rows of `cols` activations in `x` to `±qmax`, or to FP8
   * with `element`: the dequantized rows go to `xd` (same row stride), and `xq` receives the
   * integer codes packed for weights of `8 / per`-bit codes (see `gemv_a8_wgsl.ts`; meaningless
   * for FP8).
   */
  async quantizeActivations(
    step: GPUBuffer,
    x: GPUBuffer,
    xq: QuantizedActivations,
    xd: GPUBuffer,
    o: { cols: number; xStride?: number; qmax: number; element?: ActivationElement },
  ): Promise<Dispatch> {
    const chunks = Math.ceil(o.cols / 32);
    const params = [o.cols, chunks, o.xStride ?? o.cols, quantizedRowWords(chunks), o.qmax];
    return await this.#stepped(step, {
      label: "quantize activations",
      sig: "usrww",
      code: quantizeActivationsShader(xq.per, o.element),
      params: params,
      floats: [4],
      buffers: [x, xq.buffer, xd],
      groups: (T) => [Math.ceil((chunks * 8) / QUANTIZE_WORDS_PER_GROUP), T, 1],
    });
  }

  /**
   * Scores `T` rows of `vocab` logits (`nll_wgsl.ts`): for the row at absolute position `pos + t`,
   * the NLL of `targets[pos + t]` (i32, `-1` none) and the argmax go to words `2·(pos + t)` and
   * `2·(pos + t) + 1` of `scores`.
   */
  async nll(
    step: GPUBuffer,
    logits: GPUBuffer,
    targets: GPUBuffer,
    scores: GPUBuffer,
    vocab: number,
  ): Promise<Dispatch> {
    if (!(Number.isInteger(vocab) && vocab > 0)) {
      throw new RangeError(`Vocabulary size ${vocab} is not a positive integer`);
    }
    return await this.#stepped(step, {
      label: "nll",
      sig: "usrrw",
      code: NLL_WGSL,
      params: [vocab],
      buffers: [logits, targets, scores],
      groups: (T) => [T, 1, 1],
    });
  }

  /**
   * Gathers the embedding rows of the `T` token ids at `ids[step.a …]` from one row part of the
   * table (rows `rowStart … rowStart + rows − 1`) into `x` (see `embed_wgsl.ts`).
   */
  async embed(
    step: GPUBuffer,
    ids: GPUBuffer,
    table: GPUBuffer,
    x: GPUBuffer,
    o: { dim: number; rowStart: number; rows: number },
  ): Promise<Dispatch> {
    return await this.#stepped(step, {
      label: `embed rows ${o.rowStart}+${o.rows}`,
      sig: "usrrw",
      code: EMBED_WGSL,
      params: [o.dim, o.rowStart, o.rows],
      buffers: [ids, table, x],
      groups: (T) => linearGroups(T * o.dim),
    });
  }

  /** Writes the index of the largest of `vocab` logits (the first on ties) to `ids[step.a + 1]`. */
  async argmax(
    step: GPUBuffer,
    logits: GPUBuffer,
    ids: GPUBuffer,
    vocab: number,
  ): Promise<Dispatch> {
    return await this.#stepped(step, {
      label: "argmax",
      sig: "usrw",
      code: ARGMAX_WGSL,
      params: [vocab],
      buffers: [logits, ids],
      groups: () => [1, 1, 1],
    });
  }

  /**
   * Copies `vecs` 16-byte vectors from `src` to `dst` (the bandwidth reference of decoding); no
   * `Step` uniform, so it is encoded without dynamic offsets.
   */
  async copy(
    src: GPUBuffer,
    dst: GPUBuffer,
    vecs: number,
  ): Promise<
    { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; groups: [number, number, number] }
  > {
    return {
      pipeline: await this.pipeline("urw", COPY_WGSL),
      bindGroup: this.#bind("urw", [this.uniform([vecs]), src, dst]),
      groups: linearGroups(Math.ceil(vecs / 4)),
    };
  }

  /** GPU buffers of a packed matrix's parts (created once per matrix). */
  upload(m: PackedMatrix): WeightBuffers[] {
    return m.parts.map((part) => ({
      codes: this.storage(part.codes),
      scales: part.scales.length > 0 ? this.storage(part.scales) : this.empty,
    }));
  }

  /**
   * `out[outOff + pos·outPosStride + t·outStride + r] (+)= Σ_k x[t·xStride + k]·W[r][k]`, one
   * dispatch per row part.
   */
  async matmul(
    step: GPUBuffer,
    m: PackedMatrix,
    gpuParts: WeightBuffers[],
    x: GPUBuffer,
    out: GPUBuffer,
    o: {
      xStride?: number;
      outOff?: number;
      outStride?: number;
      outPosStride?: number;
      accumulate?: boolean;
      /**
       * Integer activation codes of `x` (which then holds their dequantized values): decode
       * runs the integer-activation GEMV where the layout allows it.
       */
      xq?: QuantizedActivations;
      /** The GEMM's tile shape (perf sweeps; default: chosen per dispatch by `chooseGemmTiling`). */
      tiling?: GemmTiling;
      /**
       * `x` is the output of an RMSNorm of `input` with `weights` ({@linkcode normWeights}):
       * the float GEMV (`T ≤ GEMV_MAX_ROWS`) reads `input` and normalizes it itself, so the
       * RMSNorm's dispatch is needed only by larger `T` ({@linkcode fusesGemvInput} says where).
       */
      norm?: { input: GPUBuffer; weights: GPUBuffer };
      /**
       * `x` is SwiGLU of stacked `[gate | up]` rows in `swiglu` (`swiglu_pair_wgsl.ts`): the float
       * GEMV reads those and applies SwiGLU itself, so the SwiGLU dispatch is needed only by larger
       * `T` (as `norm`).
       */
      swiglu?: GPUBuffer;
      /**
       * `x` is split decode attention's output, combined from `combine`'s partial results: for a
       * one-token step the float GEMV reads and combines those itself, so the combine dispatch is
       * not needed (larger `T` read `x`, which attention's other kernels write).
       */
      combine?: DecodePartials;
    },
  ): Promise<Dispatch[]> {
    // QuIP: its rotations around the integer GEMV/GEMM of its codes (the matrix's parts).
    if (m.codebook?.kind === "quip") {
      const { codebook: _rotations, ...codes } = m;
      return quipMatmul(
        this,
        step,
        m,
        x,
        out,
        o,
        (u, z) => this.matmul(step, codes, gpuParts, u, z, {}),
      );
    }
    // Codebook formats (QuIP#, AQLM, VPTQ) run their own kernels over their stored parts.
    if (m.codebook) return codebookMatmul(this, step, m, x, out, o);
    const limits = {
      maxThreads: this.device.limits.maxComputeInvocationsPerWorkgroup,
      maxWorkgroupBytes: this.device.limits.maxComputeWorkgroupStorageSize,
    };
    if (o.tiling) validateGemmTiling(o.tiling, limits);
    // Without a tiling asked for, each dispatch takes the wide tile where the device allows it
    // and it leaves enough workgroups (chooseGemmTiling), else the default.
    const tilings = o.tiling ? [o.tiling] : [WIDE_GEMM_TILING, DEFAULT_GEMM_TILING].filter((t) => {
      try {
        validateGemmTiling(t, limits);
        return true;
      } catch {
        return false;
      }
    });
    const a8 = o.xq !== undefined && a8Supported(m.layout) &&
      codesPerWord(m.layout.bits) === o.xq.per;
    const gemv = await this.pipeline(
      "usrrrw",
      a8 ? gemvA8Shader(m.layout) : gemvShader(m.layout),
    );
    const norm = o.norm && !a8 && !m.codebook ? o.norm : undefined;
    const swiglu = o.swiglu && !a8 && !m.codebook ? o.swiglu : undefined;
    const combine = o.combine && !a8 && !m.codebook ? o.combine : undefined;
    const gemvCombined = combine &&
      await this.pipeline("usrrrw", gemvShader(m.layout, "combine", combine.shape));
    const gemvFused = norm
      ? await this.pipeline("usrrrwr", gemvShader(m.layout, "norm"))
      : swiglu && await this.pipeline("usrrrw", gemvShader(m.layout, "swiglu"));
    const gemms = new Map<Readonly<GemmTiling>, GPUComputePipeline>();
    for (const t of tilings) gemms.set(t, await this.pipeline("usrrrw", gemmShader(m.layout, t)));
    const maxWays = Math.max(...tilings.map((t) => t.splitK ?? 1));
    // A split dispatch has at most SPLIT_TARGET_GROUPS workgroups, each writing one tile of
    // partial sums, so this much scratch holds any of them.
    const scratchBytes = Math.min(
      SPLIT_TARGET_GROUPS * Math.max(...tilings.map((t) => t.rows * t.tokens)) * 4,
      this.gpu.maxBinding & ~15,
    );
    if (maxWays > 1 && !(this.#scratch && this.#scratch.size >= scratchBytes)) {
      this.#scratch = this.storage(scratchBytes);
    }
    const scratch = maxWays > 1 ? this.#scratch : undefined;
    const reduces = new Map<number, GPUComputePipeline>();
    for (let w = 2; w <= maxWays; w *= 2) {
      reduces.set(w, await this.pipeline("usrrrw", gemmReduceShader(w)));
    }
    const rowsPerGroup = gemvRowsPerGroup(m.layout);
    return m.parts.flatMap((part, i) => {
      const params = (xStride: number) => [
        part.rows,
        m.cols,
        m.chunks,
        m.groups,
        m.layout.gshift,
        0,
        xStride,
        (o.outOff ?? 0) + part.rowStart,
        o.outStride ?? m.rows,
        o.outPosStride ?? 0,
        o.accumulate ? 1 : 0,
        m.tensorScale,
      ];
      const bind = (input: GPUBuffer, xStride: number, output: GPUBuffer) =>
        this.#bind("usrrrw", [
          this.uniform(params(xStride), [11]),
          { buffer: step, size: 16 },
          input,
          gpuParts[i]!.codes,
          gpuParts[i]!.scales,
          output,
        ]);
      const xStride = o.xStride ?? m.cols;
      const floatGroup = bind(x, xStride, out);
      const a8Group = a8 ? bind(o.xq!.buffer, quantizedRowWords(m.chunks), out) : undefined;
      const fusedGroup = norm
        ? this.#bind("usrrrwr", [
          this.uniform(params(xStride), [11]),
          { buffer: step, size: 16 },
          norm.input,
          gpuParts[i]!.codes,
          gpuParts[i]!.scales,
          out,
          norm.weights,
        ])
        : swiglu && bind(swiglu, 2 * m.cols, out);
      const combineGroup = combine && bind(combine.buffer, xStride, out);
      // Split GEMMs write partial sums to the scratch buffer, which the reduction then reads.
      const splitGroup = scratch && bind(x, xStride, scratch);
      const reduceGroup = scratch && bind(scratch, xStride, out);
      const scratchFloats = scratch ? scratch.size / 4 : 0;
      const tiling = (T: number) =>
        tilings.length === 1
          ? tilings[0]!
          : chooseGemmTiling(tilings, part.rows, T, m.chunks, scratchFloats);
      const ways = (T: number) =>
        T <= GEMV_MAX_ROWS || !scratch
          ? 1
          : splitWays(tiling(T), part.rows, T, m.chunks, scratchFloats);
      const label = `matmul ${m.rows}x${m.cols} part ${i}`;
      const main: Dispatch = {
        label: `${label}${a8 ? " (int8 activations)" : ""}`,
        pipeline: (T: number) =>
          T === 1 && gemvCombined
            ? gemvCombined
            : T <= GEMV_MAX_ROWS
            ? gemvFused ?? gemv
            : gemms.get(tiling(T))!,
        bindGroup: floatGroup,
        bindGroupFor: (a8Group || splitGroup || fusedGroup || combineGroup) &&
          ((T: number) =>
            T === 1 && combineGroup
              ? combineGroup
              : T <= GEMV_MAX_ROWS
              ? a8Group ?? fusedGroup ?? floatGroup
              : ways(T) > 1
              ? splitGroup ?? floatGroup
              : floatGroup),
        groups: (T: number): [number, number, number] =>
          T <= GEMV_MAX_ROWS
            ? [Math.ceil(part.rows / (a8 ? gemvA8RowsPerGroup(m.layout) : rowsPerGroup)), T, 1]
            : gemmGroups(tiling(T), part.rows, T, ways(T)),
      };
      if (!reduceGroup) return [main];
      const reduce: Dispatch = {
        label: `${label} split sum`,
        pipeline: (T: number) => reduces.get(Math.max(2, ways(T)))!,
        bindGroup: reduceGroup,
        // No workgroups (the dispatch is skipped) where the GEMM was not split.
        groups: (T: number) => ways(T) > 1 ? linearGroups(T * part.rows) : [0, 0, 0],
      };
      return [main, reduce];
    });
  }
}

/**
 * Whether `Kernels.matmul` of `m` computes a `norm` or `swiglu` input inside its GEMV (without
 * run-time activation quantization, whose kernels read the finished, quantized input): the packed
 * layouts' float GEMV does, codebook formats and QuIP (whose GEMV reads the rotated input) do not.
 */
export function fusesGemvInput(m: PackedMatrix): boolean {
  return !m.codebook;
}

/**
 * `d` without workgroups where the GEMVs that read its output compute it from its input instead
 * (RMSNorm, SwiGLU).
 */
export function skippedByFusedGemv(d: Dispatch): Dispatch {
  return { ...d, groups: (T) => (T <= GEMV_MAX_ROWS ? [0, 0, 0] : d.groups(T)) };
}

/** An RMSNorm's weights for a fused GEMV: padded to vec4s, then `eps` in the next vec4. */
export function normWeights(weight: Float32Array, eps: number): Float32Array {
  const padded = Math.ceil(weight.length / 4) * 4;
  const out = new Float32Array(padded + 4);
  out.set(weight);
  out[padded] = eps;
  return out;
}

/**
 * Records `dispatches` for a slice of `T` tokens whose `Step` sits at `stepOffset`; those with no
 * workgroups for `T` are left out.
 */
export function encodeDispatches(
  pass: GPUComputePassEncoder,
  dispatches: readonly Dispatch[],
  T: number,
  stepOffset: number,
): void {
  // The typed-array form of the dynamic offsets: Deno's WebGPU converts a JS array per call,
  // which made encoding a dispatch 1.2–4 times slower (measured on lavapipe).
  const offsets = Uint32Array.of(stepOffset);
  // Consecutive matmuls often share a pipeline (q, k, v; gate, up); the pass keeps it set.
  let last: GPUComputePipeline | undefined;
  for (const d of dispatches) {
    const [x, y, z] = d.groups(T);
    if (x * y * z === 0) continue;
    const pipeline = d.pipeline(T);
    if (pipeline !== last) pass.setPipeline(last = pipeline);
    pass.setBindGroup(0, d.bindGroupFor?.(T) ?? d.bindGroup, offsets, 0, 1);
    pass.dispatchWorkgroups(x, y, z);
  }
}
