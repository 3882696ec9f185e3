/**
 * The WebGPU backend: the ops of `kernels/cpu/ops.ts` in WGSL, with weights repacked at load time
 * (see `pack.ts`) and dequantized inside the matmul kernels. Each layer's dispatches are compiled
 * once, at load, from the block's steps (`core/graph.ts`, {@linkcode compileBlock}). A forward
 * pass records every layer's dispatches into one command encoder (one compute pass per slice of
 * at most `maxTokens` tokens, so activations stay within a storage binding), submits once and
 * reads the logits back once. The token embedding is gathered on the host there: it is a lookup,
 * not arithmetic. Greedy decoding ({@linkcode WebGpuRunner.decodeGreedy}) instead keeps token ids
 * on the GPU: an embedding gather, every layer and an argmax per token, many tokens per submit,
 * reading back only the ids. Activations and the
 * KV cache are float32, so results match the CPU reference to float32 rounding; f16 is used
 * where it is exact (scales are stored as f16). Run-time quantization as the model asks for it:
 * per-token activations (`gemv_a8_wgsl.ts`) and a KIVI-quantized KV cache (`kv_quant_wgsl.ts`:
 * codes and f16 sides for every position, quantized on the GPU as positions age, and floats only
 * for a window of the latest positions).
 *
 * Coded formats without a WGSL decoder, and integer matrices the kernels cannot take (e.g. a
 * group size that is not a power of two), are decoded to f32 on load; {@linkcode
 * WebGpuRunner.fallbacks} lists them, and the numbers stay exact.
 *
 * @module
 */
import type { Backend, BackendOps, ModelRunner, TokenScores } from "../backend.ts";
import type { LayerWeights, LinearName, LlamaModel, Matrix } from "../../core/model.ts";
import {
  type BlockStep,
  type BlockValue,
  hadamardSize,
  type HeadGroup,
  modelGraph,
  stepInputs,
} from "../../core/graph.ts";
import { adapterUnavailable, getGpu } from "./device.ts";
import { COMBINE_MAX_HEADS } from "./gemv_combine_wgsl.ts";
import {
  type DecodePartials,
  type Dispatch,
  encodeDispatches,
  fusesGemvInput,
  Kernels,
  normWeights,
  type QuantizedActivations,
  type QuantizedKv,
  skippedByFusedGemv,
  STEP_STRIDE,
} from "./kernels.ts";
import { kvKeyWords, kvQuantLayout, kvValueWords, kvWindowRewind } from "./kv_quant_wgsl.ts";
import {
  a8Supported,
  type ActivationElement,
  codesPerWord,
  quantizedRowWords,
} from "./gemv_a8_wgsl.ts";
import type { GemvTuning, PackedMatrix } from "./pack.ts";
import { packMatrix } from "./pack_matrix.ts";
import { stackRows } from "./stack_rows.ts";
import { embedParts } from "./embed_wgsl.ts";
import { ropeInverseFrequencies } from "../../core/rope.ts";

/** Run-time activation formats the backend quantizes to (per token: integers or FP8). */
const ACTIVATIONS: readonly string[] = [
  "int8",
  "int6",
  "int4",
  "int3",
  "int2",
  "fp8",
  "fp8_e5m2",
];

/**
 * How activations of a run-time `format` are quantized: integers to `±qmax` (`int<b>`:
 * 2^(b−1) − 1; their codes feed the integer GEMV) or FP8; undefined for none.
 */
function activationSpec(
  format: string | undefined,
): { element: ActivationElement; qmax: number } | undefined {
  if (format === "fp8" || format === "fp8_e5m2") return { element: format, qmax: 0 };
  const bits = format === undefined ? NaN : Number(/^int(\d)$/.exec(format)?.[1]);
  return Number.isInteger(bits) ? { element: "int", qmax: 2 ** (bits - 1) - 1 } : undefined;
}

/** Thrown when the device reports an error while running kernels. */
export class WebGpuError extends Error {
  override name = "WebGpuError";
}

/** Thrown by `load` for a model the backend cannot run as asked. */
export class WebGpuUnsupportedError extends Error {
  override name = "WebGpuUnsupportedError";
}

/**
 * `[position][pair]` (cos, sin) of `position · invFreq[pair]`, computed in float64 as the CPU
 * kernel does.
 */
export function ropeTable(positions: number, invFreq: ArrayLike<number>): Float32Array {
  const half = invFreq.length;
  const table = new Float32Array(positions * half * 2);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * invFreq[i]!;
      table[2 * (p * half + i)] = Math.cos(angle);
      table[2 * (p * half + i) + 1] = Math.sin(angle);
    }
  }
  return table;
}

/** Runs recorded dispatches once over `T` rows and reads `out` back. */
async function runOnce(
  k: Kernels,
  dispatches: Dispatch[],
  step: GPUBuffer,
  T: number,
  pos: number,
  out: GPUBuffer,
  length: number,
): Promise<Float32Array> {
  const device = k.device;
  device.queue.writeBuffer(step, 0, new Uint32Array([T, pos, 0, 0]));
  const read = k.buffer(length * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  device.pushErrorScope("validation");
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  encodeDispatches(pass, dispatches, T, 0);
  pass.end();
  enc.copyBufferToBuffer(out, 0, read, 0, length * 4);
  device.queue.submit([enc.finish()]);
  const error = await device.popErrorScope();
  if (error) throw new WebGpuError(`WebGPU validation failed: ${error.message}`);
  await read.mapAsync(GPUMapMode.READ);
  const result = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  return result;
}

/** `packMatrix` with the GEMV knobs of `tuning` in its layout. */
function packTuned(m: Matrix, maxBinding: number, tuning?: GemvTuning): PackedMatrix {
  const packed = packMatrix(m, maxBinding);
  return tuning ? { ...packed, layout: { ...packed.layout, ...tuning } } : packed;
}

/** Op-level entry points on the device (one submit per call; for tests, not speed). */
function webgpuOps(maxBinding?: number, tuning?: GemvTuning): BackendOps {
  const withKernels = async <R>(fn: (k: Kernels, step: GPUBuffer) => Promise<R>): Promise<R> => {
    const k = new Kernels(await getGpu());
    try {
      return await fn(k, k.buffer(STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST));
    } finally {
      k.destroy();
    }
  };
  return {
    matmul: (x, w, activations) =>
      withKernels(async (k, step) => {
        const T = x.length / w.cols;
        const packed = packTuned(w, Math.min(maxBinding ?? Infinity, k.gpu.maxBinding), tuning);
        const out = k.storage(T * w.rows * 4);
        let input = k.storage(x);
        const ds: Dispatch[] = [];
        let xq: QuantizedActivations | undefined;
        if (activations !== undefined) {
          const spec = activationSpec(activations);
          if (spec === undefined) {
            throw new WebGpuUnsupportedError(`No run-time "${activations}" activations here`);
          }
          const codes = {
            buffer: k.storage(T * quantizedRowWords(packed.chunks) * 4),
            per: a8Supported(packed.layout) ? codesPerWord(packed.layout.bits) : 1,
          };
          const xd = k.storage(x.byteLength);
          ds.push(
            await k.quantizeActivations(step, input, codes, xd, { cols: w.cols, ...spec }),
          );
          input = xd;
          if (spec.element === "int") xq = codes;
        }
        ds.push(...await k.matmul(step, packed, k.upload(packed), input, out, { xq }));
        return runOnce(k, ds, step, T, 0, out, T * w.rows);
      }),
    rmsnorm: (x, weight, eps) =>
      withKernels(async (k, step) => {
        const out = k.storage(x.length * 4);
        const d = await k.rmsnorm(step, k.storage(x), k.storage(weight), out, weight.length, eps);
        return runOnce(k, [d], step, x.length / weight.length, 0, out, x.length);
      }),
    rope: (x, nHeads, headDim, pos, theta, style) =>
      withKernels(async (k, step) => {
        const width = nHeads * headDim;
        const T = x.length / width;
        const buf = k.storage(x);
        const table = k.storage(
          ropeTable(pos + T, ropeInverseFrequencies({ headDim, ropeTheta: theta })),
        );
        const d = await k.rope(step, table, buf, {
          nHeads,
          headDim,
          rowStride: width,
          off: 0,
          posStride: 0,
          style,
        });
        return runOnce(k, [d], step, T, pos, buf, x.length);
      }),
    swiglu: (gate, up) =>
      withKernels(async (k, step) => {
        const g = k.storage(gate);
        const d = await k.swiglu(step, g, k.storage(up), gate.length);
        return runOnce(k, [d], step, 1, 0, g, gate.length);
      }),
    attention: (q, keyCache, valueCache, pos, nHeads, nKvHeads, headDim) =>
      withKernels(async (k, step) => {
        const T = q.length / (nHeads * headDim);
        const out = k.storage(q.length * 4);
        const ds = await k.attention(
          step,
          k.storage(q),
          k.storage(keyCache),
          k.storage(valueCache),
          out,
          { nHeads, nKvHeads, headDim },
        );
        return runOnce(k, ds, step, T, pos, out, q.length);
      }),
  };
}

/**
 * Thrown when a quantized KV cache is cut back (or continued after a profile pass that wrote
 * further) past what its float window still holds.
 */
export class KvWindowError extends Error {
  override name = "KvWindowError";
}

/** Thrown when a block's steps do not fit the patterns the WebGPU compiler lowers. */
export class WebGpuCompileError extends Error {
  override name = "WebGpuCompileError";
}

/** The activation buffers a block's values live in (one slice of tokens each). */
interface BlockBuffers {
  /** The residual stream (`x`, `h`, `out`), which the output projections accumulate into. */
  x: GPUBuffer;
  /** RMSNorm outputs (`xb`, `fb`). */
  normed: GPUBuffer;
  q: GPUBuffer;
  att: GPUBuffer;
  gate: GPUBuffer;
  up: GPUBuffer;
  /** Stacked q/k/v rows (`stack_rows.ts`), where a slice of them fits a storage binding. */
  qkv?: GPUBuffer;
  /** Stacked gate/up rows, likewise. */
  gateUp?: GPUBuffer;
}

/** What {@linkcode compileBlock} lowers a layer's steps with. */
interface BlockTarget {
  k: Kernels;
  config: LlamaModel["config"];
  /** The per-slice uniform (`T`, `pos`). */
  step: GPUBuffer;
  /** RoPE's (cos, sin) table. */
  table: GPUBuffer;
  buffers: BlockBuffers;
  /**
   * The layer's float KV cache: every position, or with `kv` the float window (position `p` at
   * row `p % window`).
   */
  keys: GPUBuffer;
  values: GPUBuffer;
  /** Its codes and sides, where the model asks for a quantized cache (`model.runtime.kvCache`). */
  kv?: QuantizedKv;
  /** A linear's weights packed for the device. */
  pack(name: LinearName): PackedMatrix;
  /** Stacked weights packed for the device, or undefined where they would not run in their format. */
  packStacked(m: Matrix): PackedMatrix | undefined;
  matmul(
    packed: PackedMatrix,
    input: GPUBuffer,
    out: GPUBuffer,
    o: Parameters<Kernels["matmul"]>[5],
  ): Promise<Dispatch[]>;
  /** Whether linear inputs are quantized at run time (then no GEMV normalizes its input). */
  quantizesActivations: boolean;
  /** Run-time activation quantization of a linear input for its first consumer. */
  quantize(
    input: GPUBuffer,
    cols: number,
    consumer: PackedMatrix,
  ): Promise<{ dispatches: Dispatch[]; input: GPUBuffer; xq?: QuantizedActivations }>;
}

/** Where a value lives: its buffer and row layout (KV cache rows are laid out by position). */
interface Slot {
  buffer: GPUBuffer;
  width: number;
  /** Cache rows: indexed by absolute position. */
  cache: boolean;
}

type LinearStep = Extract<BlockStep, { op: "linear" }>;

/**
 * Linears of a block computed as one matmul over their stacked rows (`stack_rows.ts`): q, k and
 * v (then split, with RoPE, by `qkv_scatter_wgsl.ts`), and gate and up (then SwiGLU over both
 * halves, `swiglu_pair_wgsl.ts`). Each plan names the steps it stands for. Only the plain Llama
 * pattern fuses — no biases, no per-head norms, both halves rotated alike — and only where the
 * matrices stack; anything else is compiled step by step.
 */
interface StackPlan {
  kind: "qkv" | "gateUp";
  linears: LinearStep[];
  packed: PackedMatrix;
  /** The steps the plan's dispatches replace. */
  covers: Set<BlockStep>;
}

function planStacks(
  steps: readonly BlockStep[],
  layer: LayerWeights,
  t: BlockTarget,
): StackPlan[] {
  const plans: StackPlan[] = [];
  const producer = (value: BlockValue) =>
    steps.find((s): s is LinearStep => s.op === "linear" && s.output === value);
  const stack = (kind: StackPlan["kind"], linears: LinearStep[], extra: BlockStep[]) => {
    if (linears.some((l) => l.bias !== undefined || l.input !== linears[0]!.input)) return;
    const matrix = stackRows(linears.map((l) => layer[l.weight]));
    const packed = matrix && t.packStacked(matrix);
    if (packed) plans.push({ kind, linears, packed, covers: new Set([...linears, ...extra]) });
  };
  const attention = steps.find((s) => s.op === "attention");
  if (attention?.op === "attention" && t.buffers.qkv) {
    const linears = [attention.q, attention.k, attention.v].map(producer);
    const ropes = steps.filter((s) => s.op === "rope");
    const normed = steps.some((s) => s.op === "head_rmsnorm");
    const rotated = ropes.length === 2 && ropes.some((r) => r.op === "rope" && r.value === "q") &&
      ropes.some((r) => r.op === "rope" && r.value === "k");
    if (linears.every((l) => l !== undefined) && rotated && !normed) {
      stack("qkv", linears as LinearStep[], ropes);
    }
  }
  const swiglu = steps.find((s) => s.op === "swiglu");
  if (swiglu?.op === "swiglu" && t.buffers.gateUp) {
    const linears = [producer(swiglu.gate), producer(swiglu.up)];
    if (linears.every((l) => l !== undefined)) stack("gateUp", linears as LinearStep[], [swiglu]);
  }
  return plans;
}

/**
 * Compiles a block's steps (`core/graph.ts`) into dispatches over the runner's buffers, lowered
 * as the kernels want them: the key and value projections write straight into the KV cache
 * (attention then reads all cached positions; a quantized cache's go to its step rows, which
 * enter its float window after attention), a linear whose output is added to the residual
 * stream accumulates into it (the `add` then costs nothing), RMSNorm outputs share one buffer,
 * SwiGLU writes over `gate`, and run-time activation quantization runs once per linear input,
 * before its first consumer. One-token GEMVs compute their input from an RMSNorm's input, from
 * stacked `[gate | up]` rows, or from split decode attention's partial results, where every
 * reader of that value can, and the RMSNorm, SwiGLU or combine dispatch is then skipped or left
 * out; with a float cache, a one-token step's split attention splits and rotates the stacked
 * `[q | k | v]` row itself (skipping the scatter). A plain Llama decode layer is then 5
 * dispatches.
 */
async function compileBlock(
  steps: readonly BlockStep[],
  layer: LayerWeights,
  t: BlockTarget,
): Promise<Dispatch[]> {
  const { k, config: c, step, buffers: b } = t;
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  const slots = new Map<BlockValue, Slot>([["x", { buffer: b.x, width: c.dim, cache: false }]]);
  const slot = (name: BlockValue): Slot => {
    const found = slots.get(name);
    if (found === undefined) {
      throw new WebGpuCompileError(`Block value "${name}" is read before it is computed`);
    }
    return found;
  };
  const rows = (s: Slot) =>
    s.cache ? { posStride: s.width, rowStride: s.width } : { posStride: 0, rowStride: s.width };
  const readers = (value: BlockValue) => steps.filter((s) => stepInputs(s).includes(value));
  const headWidth = (heads: HeadGroup) => heads === "query" ? c.nHeads : c.nKvHeads;
  // Each linear input is quantized once, for its first consumer.
  let quantized: { value: BlockValue; input: GPUBuffer; xq?: QuantizedActivations } | undefined;
  const program: Dispatch[] = [];
  // With a quantized KV cache: whether the stacked q/k/v split wrote a one-token step's key and
  // value into the float windows itself.
  let windowWritten = false;
  const packs = new Map<LinearName, PackedMatrix>();
  const packOf = (name: LinearName): PackedMatrix => {
    let packed = packs.get(name);
    if (packed === undefined) packs.set(name, packed = t.pack(name));
    return packed;
  };
  const plans = planStacks(steps, layer, t);
  // RMSNorm outputs that every reader (decode GEMVs) normalizes itself: their input and weights.
  const fusedNorms = new Map<BlockValue, { input: GPUBuffer; weights: GPUBuffer }>();
  // SwiGLU outputs of stacked gate/up rows that every reader's decode GEMV computes itself.
  const fusedSwiglus = new Set<BlockValue>();
  // With a float cache: the stacked [q | k | v] row whose split, with RoPE, a one-token step's
  // attention does itself (decode_attention_wgsl.ts), the scatter then not running.
  let fromQkv: { qkv: GPUBuffer; table: GPUBuffer; style: "interleaved" | "half" } | undefined;
  // Attention outputs whose readers' one-token GEMVs combine the split partial results themselves.
  const fusedCombines = new Map<BlockValue, DecodePartials>();
  // Split decode attention's combine, left out where every reader's GEMV combines instead.
  const attend = (output: BlockValue, dispatches: Dispatch[]): Dispatch[] => {
    const fused = !t.quantizesActivations &&
      readers(output).every((r) => r.op === "linear" && fusesGemvInput(packOf(r.weight)));
    return dispatches.filter((d) => {
      // Heads past the fused combine's workgroup memory keep the combine dispatch.
      if (!fused || d.partials === undefined) return true;
      if (d.partials.shape.nHeads > COMBINE_MAX_HEADS) return true;
      fusedCombines.set(output, d.partials);
      return false;
    });
  };
  const quantizeFor = async (value: BlockValue, packed: PackedMatrix) => {
    if (quantized?.value === value) return quantized;
    const q = await t.quantize(slot(value).buffer, packed.cols, packed);
    program.push(...q.dispatches);
    quantized = { value, input: q.input, xq: q.xq };
    return quantized;
  };
  for (const s of steps) {
    const plan = plans.find((p) => p.covers.has(s));
    if (plan !== undefined) {
      // A stacked plan's dispatches go where its first linear stood; its other steps are done.
      if (s !== plan.linears[0]) continue;
      const input = await quantizeFor(s.input, plan.packed);
      if (plan.kind === "qkv") {
        const [qOut, kOut, vOut] = plan.linears.map((l) => l.output) as BlockValue[];
        const norm = fusedNorms.get(s.input);
        const scatter = await k.qkvScatter(step, t.table, b.qkv!, {
          q: b.q,
          keys: t.keys,
          values: t.values,
        }, {
          nHeads: c.nHeads,
          nKvHeads: c.nKvHeads,
          headDim: c.headDim,
          style: c.ropeStyle,
        }, t.kv);
        // The split decode kernel (head sizes of whole vec4s) can take the scatter's place
        // where attention alone reads q, k and v.
        const fusable = !t.kv && c.headDim % 4 === 0 &&
          [qOut!, kOut!, vOut!].every((v) =>
            readers(v).every((r) => r.op === "attention" || plan.covers.has(r))
          );
        fromQkv = fusable ? { qkv: b.qkv!, table: t.table, style: c.ropeStyle } : undefined;
        program.push(
          ...await t.matmul(plan.packed, input.input, b.qkv!, { xq: input.xq, norm }),
          fusable
            ? { ...scatter, groups: (T) => T === 1 ? [0, 0, 0] : scatter.groups(T) }
            : scatter,
        );
        slots.set(qOut!, { buffer: b.q, width: qDim, cache: false });
        if (t.kv) {
          // The step's rows by token (attention and the quantization read them there).
          slots.set(kOut!, { buffer: t.kv.rows.keys, width: kvDim, cache: false });
          slots.set(vOut!, { buffer: t.kv.rows.values, width: kvDim, cache: false });
          windowWritten = true;
        } else {
          slots.set(kOut!, { buffer: t.keys, width: kvDim, cache: true });
          slots.set(vOut!, { buffer: t.values, width: kvDim, cache: true });
        }
      } else {
        const swiglu = [...plan.covers].find((x) => x.op === "swiglu")!;
        const pair = await k.swigluPair(step, b.gateUp!, b.gate, c.hiddenDim);
        // Where every reader's decode GEMV applies SwiGLU as it loads [gate | up], decoding
        // needs no SwiGLU dispatch.
        const output = swiglu.op === "swiglu" ? swiglu.output : s.output;
        const fused = !t.quantizesActivations &&
          readers(output).every((r) => r.op === "linear" && fusesGemvInput(packOf(r.weight)));
        if (fused) fusedSwiglus.add(output);
        program.push(
          ...await t.matmul(plan.packed, input.input, b.gateUp!, {
            xq: input.xq,
            norm: fusedNorms.get(s.input),
          }),
          fused ? skippedByFusedGemv(pair) : pair,
        );
        slots.set(output, { buffer: b.gate, width: c.hiddenDim, cache: false });
      }
      continue;
    }
    switch (s.op) {
      case "rmsnorm": {
        const input = slot(s.input);
        const d = await k.rmsnorm(
          step,
          input.buffer,
          k.storage(layer[s.weight]),
          b.normed,
          c.dim,
          c.normEps,
        );
        const readBy = readers(s.output);
        const fused = !t.quantizesActivations && readBy.every((r) =>
          r.op === "linear" &&
          fusesGemvInput(plans.find((p) => p.covers.has(r))?.packed ?? packOf(r.weight))
        );
        if (fused) {
          const weights = k.storage(normWeights(layer[s.weight], c.normEps));
          fusedNorms.set(s.output, { input: input.buffer, weights });
        }
        program.push(fused ? skippedByFusedGemv(d) : d);
        slots.set(s.output, { buffer: b.normed, width: c.dim, cache: false });
        break;
      }
      case "linear": {
        const packed = packOf(s.weight);
        const { xq, input: source } = await quantizeFor(s.input, packed);
        const norm = fusedNorms.get(s.input);
        const swiglu = fusedSwiglus.has(s.input) ? b.gateUp : undefined;
        const combine = fusedCombines.get(s.input);
        const attention = readers(s.output).find((r) => r.op === "attention");
        const residual = readers(s.output).find((r) => r.op === "add");
        let out: Slot;
        if (
          attention?.op === "attention" && (attention.k === s.output || attention.v === s.output) &&
          t.kv
        ) {
          // A quantized cache's step rows, by token; attention's step copies them into the window.
          out = {
            buffer: attention.k === s.output ? t.kv.rows.keys : t.kv.rows.values,
            width: kvDim,
            cache: false,
          };
          program.push(
            ...await t.matmul(packed, source, out.buffer, { xq, norm, swiglu, combine }),
          );
        } else if (
          attention?.op === "attention" && (attention.k === s.output || attention.v === s.output)
        ) {
          out = { buffer: attention.k === s.output ? t.keys : t.values, width: kvDim, cache: true };
          program.push(
            ...await t.matmul(packed, source, out.buffer, {
              outStride: kvDim,
              outPosStride: kvDim,
              xq,
              norm,
              swiglu,
              combine,
            }),
          );
        } else if (residual?.op === "add") {
          const other = residual.a === s.output ? residual.b : residual.a;
          if (slot(other).buffer !== b.x) {
            throw new WebGpuCompileError(
              `Linear "${s.weight}" is added to "${other}", not to the residual stream`,
            );
          }
          out = { buffer: b.x, width: c.dim, cache: false };
          program.push(
            ...await t.matmul(packed, source, b.x, {
              accumulate: true,
              xq,
              norm,
              swiglu,
              combine,
            }),
          );
        } else {
          const buffer = s.output === "q"
            ? b.q
            : s.output === "gate"
            ? b.gate
            : s.output === "up"
            ? b.up
            : undefined;
          if (buffer === undefined) {
            throw new WebGpuCompileError(
              `No buffer for linear "${s.weight}"'s output "${s.output}"`,
            );
          }
          out = { buffer, width: packed.rows, cache: false };
          program.push(
            ...await t.matmul(packed, source, buffer, { xq, norm, swiglu, combine }),
          );
        }
        if (s.bias !== undefined) {
          program.push(
            await k.bias(step, k.storage(layer[s.bias]!), out.buffer, out.width, rows(out)),
          );
        }
        slots.set(s.output, out);
        break;
      }
      case "head_rmsnorm": {
        const v = slot(s.value);
        program.push(
          await k.headNorm(step, k.storage(layer[s.weight]!), v.buffer, {
            headDim: c.headDim,
            eps: c.normEps,
            heads: headWidth(s.heads),
            ...rows(v),
          }),
        );
        break;
      }
      case "rope": {
        const v = slot(s.value);
        program.push(
          await k.rope(step, t.table, v.buffer, {
            nHeads: headWidth(s.heads),
            headDim: c.headDim,
            off: 0,
            ...rows(v),
            style: c.ropeStyle,
          }),
        );
        break;
      }
      case "hadamard": {
        const v = slot(s.value);
        const n = hadamardSize(c, s);
        program.push(...await k.hadamard(step, v.buffer, { n, blocks: v.width / n, ...rows(v) }));
        break;
      }
      case "attention": {
        const [q, keys, values] = [slot(s.q), slot(s.k), slot(s.v)];
        const shape = { nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim };
        if (t.kv) {
          if (keys.buffer !== t.kv.rows.keys || values.buffer !== t.kv.rows.values) {
            throw new WebGpuCompileError(`Attention reads keys and values from the KV cache only`);
          }
          // The step's keys and values are final here (projected, normed, roped): quantize what
          // they make due, then attend over the codes, the float window and the step's rows,
          // and only then let the step's rows overwrite window rows its queries read (a
          // one-token step's row goes in first: the decode kernel reads it from the window).
          program.push(...await k.kvQuantize(step, t.keys, t.values, t.kv));
          if (!windowWritten) {
            program.push(await k.kvWindowWrite(step, t.kv, t.keys, t.values, "decode"));
          }
          program.push(
            ...attend(
              s.output,
              await k.attention(step, q.buffer, t.keys, t.values, b.att, shape, t.kv),
            ),
            await k.kvWindowWrite(step, t.kv, t.keys, t.values, "prefill"),
          );
        } else {
          if (!keys.cache || !values.cache) {
            throw new WebGpuCompileError(`Attention reads keys and values from the KV cache only`);
          }
          program.push(
            ...attend(
              s.output,
              await k.attention(step, q.buffer, keys.buffer, values.buffer, b.att, {
                ...shape,
                fromQkv,
              }),
            ),
          );
        }
        slots.set(s.output, { buffer: b.att, width: qDim, cache: false });
        break;
      }
      case "swiglu": {
        const gate = slot(s.gate);
        program.push(await k.swiglu(step, gate.buffer, slot(s.up).buffer, c.hiddenDim));
        slots.set(s.output, gate);
        break;
      }
      case "add":
        // The linear operand accumulated into the residual stream when it was computed.
        if (slot(s.a).buffer !== b.x || slot(s.b).buffer !== b.x) {
          throw new WebGpuCompileError(
            `Add of "${s.a}" and "${s.b}" is not a residual accumulation`,
          );
        }
        slots.set(s.output, { buffer: b.x, width: c.dim, cache: false });
        break;
    }
  }
  return program;
}

/** Largest token slice of one compute pass. */
const MAX_SLICE = 512;

/**
 * Most tokens per submit of GPU-resident greedy decoding, each with its own `Step` slot: the host
 * records the next submit while the GPU runs the one before. Submits start at 2 tokens and double,
 * so the GPU starts soon after a call.
 */
const DECODE_ROUND = 16;

/**
 * Rows a quantized KV cache's float window keeps beyond KIVI's block, so that a cut back by less
 * than a decode chunk (`harness/engines/generate.ts` drops the tokens of a 16-token chunk past a
 * stop) continues (see {@linkcode WebGpuRunner.truncate}).
 */
const KV_REWIND = 32;

/** Back-to-back copies per timed submit of {@linkcode WebGpuRunner.copyBandwidth}. */
const COPY_REPEATS = 8;

/** GPU-resident greedy decoding's buffers and per-token dispatches (made on first use). */
interface Decoder {
  /** Token ids: `[0]` the first token, `[i + 1]` the pick of step `i` (the `Step`'s `a`). */
  ids: GPUBuffer;
  /** Where the picked ids are copied for reading. */
  read: GPUBuffer;
  /** Words `ids` and `read` hold. */
  capacity: number;
  /**
   * One token's dispatches (embedding gather, every layer, final norm and head, argmax) resolved
   * for one token row, so that recording thousands per submit only calls the encoder.
   */
  program: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; groups: number[] }[];
}

/** A model on the GPU with its KV cache. */
export class WebGpuRunner implements ModelRunner {
  /** Matrices decoded to f32 on load, with the reason (empty when all run in their format). */
  readonly fallbacks: string[];
  /** Storage formats of those matrices (`q4_k`, `hqq-int4-g64` …), each once. */
  readonly fallbackFormats: readonly string[];
  readonly #k: Kernels;
  readonly #model: LlamaModel;
  readonly #maxSeqLen: number;
  readonly #slice: number;
  readonly #program: Dispatch[];
  readonly #step: GPUBuffer;
  readonly #x: GPUBuffer;
  readonly #logits: GPUBuffer;
  #embed: GPUBuffer | undefined;
  #read: GPUBuffer | undefined;
  /** Buffers and dispatch of {@linkcode forwardScores}, made on its first call. */
  #scoring: Promise<{ targets: GPUBuffer; scores: GPUBuffer; dispatch: Dispatch }> | undefined;
  #length = 0;
  /** One past the furthest position the KV cache was written at since it was last emptied. */
  #reach = 0;
  /** How far past its length the cache may have been written and still continue (`truncate`). */
  readonly #rewind: number;
  /**
   * Bytes of the KV cache's buffers over all layers: float32 keys and values for every position,
   * or a quantized cache's codes, sides and float windows.
   */
  readonly kvCacheBytes: number;
  readonly #maxBinding: number;
  /** The token embedding on the GPU, by row parts within a storage binding (on first decode). */
  #table: { rowStart: number; rows: number; buffer: GPUBuffer }[] | undefined;
  #decoder: Decoder | undefined;

  private constructor(
    k: Kernels,
    model: LlamaModel,
    maxSeqLen: number,
    slice: number,
    buffers: { step: GPUBuffer; x: GPUBuffer; logits: GPUBuffer },
    program: Dispatch[],
    fallbacks: string[],
    fallbackFormats: readonly string[],
    maxBinding: number,
    kv: { bytes: number; rewind: number },
  ) {
    this.#k = k;
    this.#model = model;
    this.#maxSeqLen = maxSeqLen;
    this.#slice = slice;
    this.#step = buffers.step;
    this.#x = buffers.x;
    this.#logits = buffers.logits;
    this.#program = program;
    this.fallbacks = fallbacks;
    this.fallbackFormats = fallbackFormats;
    this.#maxBinding = maxBinding;
    this.kvCacheBytes = kv.bytes;
    this.#rewind = kv.rewind;
  }

  /** Uploads a model: packs its weights, allocates activations and the KV cache. */
  static async create(
    k: Kernels,
    model: LlamaModel,
    maxSeqLen: number,
    maxBinding: number,
    tuning?: GemvTuning,
  ): Promise<WebGpuRunner> {
    const { config: c, weights: w } = model;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKvHeads * c.headDim;
    const widest = Math.max(c.dim, qDim, c.hiddenDim, c.vocabSize);
    const slice = Math.max(
      1,
      Math.min(maxSeqLen, MAX_SLICE, Math.floor(maxBinding / (4 * widest))),
    );
    // A quantized KV cache (KIVI): each layer's codes and sides for every position, and its
    // floats for a window of KIVI's block and KV_REWIND more positions.
    const kvSettings = model.runtime?.kvCache;
    const kvLayout = kvSettings &&
      kvQuantLayout(kvSettings, c.nKvHeads, c.headDim, maxSeqLen, KV_REWIND);
    const floatRows = kvLayout?.window ?? maxSeqLen;
    if (floatRows * kvDim * 4 > maxBinding) {
      throw new RangeError(
        `A KV cache of ${floatRows} positions × ${kvDim} exceeds the largest storage binding`,
      );
    }
    const step = k.buffer(
      Math.max(Math.ceil(maxSeqLen / slice), DECODE_ROUND) * STEP_STRIDE,
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    );
    const act = (width: number) => k.storage(slice * width * 4);
    const x = act(c.dim);
    const xb = act(c.dim);
    const q = act(qDim);
    const att = act(qDim);
    const gate = act(c.hiddenDim);
    const up = act(c.hiddenDim);
    const logits = act(c.vocabSize);
    // Stacked projections (compileBlock) where a slice of their rows fits one binding.
    const fits = (width: number) => slice * width * 4 <= maxBinding;
    const qkv = fits(qDim + 2 * kvDim) ? act(qDim + 2 * kvDim) : undefined;
    const gateUp = fits(2 * c.hiddenDim) ? act(2 * c.hiddenDim) : undefined;
    // A quantized cache's step rows, by token (all layers share them).
    const kvRows = kvLayout && { keys: act(kvDim), values: act(kvDim) };
    const table = k.storage(ropeTable(maxSeqLen, ropeInverseFrequencies(c)));
    const fallbacks: string[] = [];
    const fallbackFormats = new Set<string>();
    const pack = (name: string, m: LlamaModel["weights"]["output"]): PackedMatrix => {
      const packed = packTuned(m, maxBinding, tuning);
      if (packed.fallback) fallbacks.push(`${name}: ${packed.fallback}`);
      if (packed.fallbackFormat) fallbackFormats.add(packed.fallbackFormat);
      return packed;
    };
    const mm = (
      packed: PackedMatrix,
      input: GPUBuffer,
      out: GPUBuffer,
      o: Parameters<Kernels["matmul"]>[5],
    ): Promise<Dispatch[]> => k.matmul(step, packed, k.upload(packed), input, out, o);
    // Run-time integer activations (W8A8 and kin): each transformer linear's input is quantized
    // per token, once for the linears that share it, into its codes (packed for the first
    // consumer's weight codes, see gemv_a8_wgsl.ts) and its dequantized values, which the
    // linears then read instead of the input.
    const spec = activationSpec(model.runtime?.activations);
    const widestInput = Math.max(c.dim, qDim, c.hiddenDim);
    const xqBuffer = spec === undefined
      ? undefined
      : k.storage(slice * quantizedRowWords(Math.ceil(widestInput / 32)) * 4);
    const xdBuffer = spec === undefined ? undefined : act(widestInput);
    const quantize = async (
      input: GPUBuffer,
      cols: number,
      consumer: PackedMatrix,
    ): Promise<{ dispatches: Dispatch[]; input: GPUBuffer; xq?: QuantizedActivations }> => {
      if (spec === undefined || !xqBuffer || !xdBuffer) return { dispatches: [], input };
      const xq = {
        buffer: xqBuffer,
        per: a8Supported(consumer.layout) ? codesPerWord(consumer.layout.bits) : 1,
      };
      const d = await k.quantizeActivations(step, input, xq, xdBuffer, { cols, ...spec });
      // FP8 activations have no integer codes: the float kernels read their values.
      return { dispatches: [d], input: xdBuffer, xq: spec.element === "int" ? xq : undefined };
    };
    const quantizedKv = (): QuantizedKv | undefined => {
      if (!kvLayout || !kvRows) return undefined;
      const words = Math.max(kvKeyWords(kvLayout), kvValueWords(kvLayout));
      if (words * 4 > maxBinding) {
        throw new RangeError(
          `A quantized KV cache of ${maxSeqLen} positions × ${kvDim} exceeds the largest ` +
            `storage binding`,
        );
      }
      return {
        layout: kvLayout,
        keys: k.storage(kvKeyWords(kvLayout) * 4),
        values: k.storage(kvValueWords(kvLayout) * 4),
        rows: kvRows,
      };
    };
    const program: Dispatch[] = [];
    const graph = modelGraph(w);
    // The step rows are activations (one slice, shared), not cache.
    let kvBytes = 0;
    for (const [l, layer] of w.layers.entries()) {
      const keys = k.storage(floatRows * kvDim * 4);
      const values = k.storage(floatRows * kvDim * 4);
      const kv = quantizedKv();
      kvBytes += keys.size + values.size + (kv ? kv.keys.size + kv.values.size : 0);
      program.push(
        ...await compileBlock(graph.blocks[l]!, layer, {
          k,
          config: c,
          step,
          table,
          buffers: { x, normed: xb, q, att, gate, up, qkv, gateUp },
          keys,
          values,
          kv,
          pack: (name) => pack(`layer ${l} ${name}`, layer[name]),
          packStacked: (m) => {
            const packed = packTuned(m, maxBinding, tuning);
            return packed.fallback ? undefined : packed;
          },
          matmul: mm,
          quantizesActivations: spec !== undefined,
          quantize,
        }),
      );
    }
    // The head's GEMV normalizes its input itself where it can (see compileBlock).
    const head = pack("output", w.output);
    const finalNorm = await k.rmsnorm(step, x, k.storage(w.finalNorm), xb, c.dim, c.normEps);
    const norm = fusesGemvInput(head)
      ? { input: x, weights: k.storage(normWeights(w.finalNorm, c.normEps)) }
      : undefined;
    program.push(
      norm ? skippedByFusedGemv(finalNorm) : finalNorm,
      ...await mm(head, xb, logits, { norm }),
    );
    return new WebGpuRunner(
      k,
      model,
      maxSeqLen,
      slice,
      { step, x, logits },
      program,
      fallbacks,
      [...fallbackFormats],
      maxBinding,
      { bytes: kvBytes, rewind: kvLayout ? kvWindowRewind(kvLayout) : Infinity },
    );
  }

  async forward(tokens: ArrayLike<number>, pos: number): Promise<Float32Array> {
    const vocab = this.#model.config.vocabSize;
    const bytes = tokens.length * vocab * 4;
    const ran = await this.#run(tokens, pos, [], (enc, s, n) =>
      enc.copyBufferToBuffer(
        this.#logits,
        0,
        this.#readBuffer(bytes),
        s * vocab * 4,
        n * vocab * 4,
      ));
    return ran ? new Float32Array(await this.#readBack(bytes)) : new Float32Array(0);
  }

  /** `forward` reading back only the last row's logits (see `ModelRunner.forwardLast`). */
  async forwardLast(tokens: ArrayLike<number>, pos: number): Promise<Float32Array> {
    const vocab = this.#model.config.vocabSize;
    const T = tokens.length;
    const read = this.#readBuffer(vocab * 4);
    const ran = await this.#run(tokens, pos, [], (enc, s, n) => {
      if (s + n === T) {
        enc.copyBufferToBuffer(this.#logits, (n - 1) * vocab * 4, read, 0, vocab * 4);
      }
    });
    return ran ? new Float32Array(await this.#readBack(vocab * 4)) : new Float32Array(0);
  }

  /** The NLL of each row's target and each row's argmax, scored on the GPU (`nll_wgsl.ts`). */
  async forwardScores(
    tokens: ArrayLike<number>,
    pos: number,
    targets: Int32Array,
  ): Promise<TokenScores> {
    const T = tokens.length;
    this.#checkTargets(T, targets);
    this.#readBuffer(T * 8);
    const ran = await this.#submitScores(tokens, pos, targets, 0);
    return ran ? unpackScores(await this.#readBack(T * 8), 0, T) : unpackScores(null, 0, 0);
  }

  /**
   * Windows scored back to back (see `ModelRunner.forwardScoresMany`): each window's targets
   * are written and its pass submitted without waiting for the one before (the queue keeps them
   * in order, so one targets buffer and one KV cache serve all), its scores copied to its own
   * range of the read-back buffer, which is read once.
   */
  async forwardScoresMany(
    windows: readonly { tokens: ArrayLike<number>; targets: Int32Array }[],
  ): Promise<TokenScores[]> {
    const offsets: number[] = [];
    let bytes = 0;
    for (const { tokens, targets } of windows) {
      this.#checkTargets(tokens.length, targets);
      offsets.push(bytes);
      bytes += tokens.length * 8;
    }
    this.#readBuffer(bytes);
    for (const [i, { tokens, targets }] of windows.entries()) {
      this.reset();
      await this.#submitScores(tokens, 0, targets, offsets[i]!);
    }
    const data = bytes > 0 ? await this.#readBack(bytes) : null;
    return windows.map(({ tokens }, i) => unpackScores(data, offsets[i]!, tokens.length));
  }

  #checkTargets(T: number, targets: Int32Array): void {
    const vocab = this.#model.config.vocabSize;
    if (targets.length !== T) {
      throw new RangeError(`${targets.length} targets for ${T} tokens`);
    }
    for (const target of targets) {
      if (!(target >= -1 && target < vocab)) {
        throw new RangeError(`Target id ${target} is out of range`);
      }
    }
  }

  /**
   * Submits a forward pass scoring `targets`, whose scores are copied to `readOffset` of the
   * read-back buffer (already large enough); false for no tokens.
   */
  async #submitScores(
    tokens: ArrayLike<number>,
    pos: number,
    targets: Int32Array,
    readOffset: number,
  ): Promise<boolean> {
    const T = tokens.length;
    const k = this.#k;
    // Targets and scores are indexed by position, so every slice's dispatch finds its rows.
    this.#scoring ??= (async () => {
      const targets = k.storage(this.#maxSeqLen * 4);
      const scores = k.storage(this.#maxSeqLen * 8);
      const dispatch = await k.nll(
        this.#step,
        this.#logits,
        targets,
        scores,
        this.#model.config.vocabSize,
      );
      return { targets, scores, dispatch };
    })();
    const scoring = await this.#scoring;
    if (pos >= 0 && pos + T <= this.#maxSeqLen) {
      k.device.queue.writeBuffer(scoring.targets, pos * 4, Int32Array.from(targets));
    }
    const read = this.#read!;
    return await this.#run(
      tokens,
      pos,
      [scoring.dispatch],
      () => {},
      (enc) => enc.copyBufferToBuffer(scoring.scores, pos * 8, read, readOffset, T * 8),
    );
  }

  /** The host buffer results are read back through, grown to at least `bytes`. */
  #readBuffer(bytes: number): GPUBuffer {
    if (!this.#read || this.#read.size < bytes) {
      this.#read?.destroy();
      this.#read = this.#k.device.createBuffer({
        size: Math.max(16, Math.ceil(bytes / 16) * 16),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
    }
    return this.#read;
  }

  /** The first `bytes` of the read-back buffer, once the submitted work is done. */
  async #readBack(bytes: number): Promise<ArrayBuffer> {
    const read = this.#read!;
    await read.mapAsync(GPUMapMode.READ, 0, bytes);
    const data = read.getMappedRange(0, bytes).slice(0);
    read.unmap();
    return data;
  }

  /**
   * Submits a forward pass over `tokens` at `pos`: per slice, the embeddings, the program and
   * `extra` dispatches in one compute pass, then `afterSlice`; `after` closes the encoder. False
   * (nothing submitted) for no tokens.
   */
  async #run(
    tokens: ArrayLike<number>,
    pos: number,
    extra: readonly Dispatch[],
    afterSlice: (enc: GPUCommandEncoder, start: number, n: number) => void,
    after?: (enc: GPUCommandEncoder) => void,
  ): Promise<boolean> {
    const { config: c, weights: w } = this.#model;
    const T = tokens.length;
    if (pos !== this.#length) {
      throw new RangeError(`Forward at position ${pos}, but the KV cache holds ${this.#length}`);
    }
    this.#checkWindow(pos);
    if (pos + T > this.#maxSeqLen) {
      throw new RangeError(`Context ${pos + T} exceeds the runner's maximum ${this.#maxSeqLen}`);
    }
    const dim = c.dim;
    const emb = new Float32Array(T * dim);
    for (let t = 0; t < T; t++) {
      const id = tokens[t]!;
      if (!(id >= 0 && id < c.vocabSize)) throw new RangeError(`Token id ${id} is out of range`);
      emb.set(w.tokenEmbedding.subarray(id * dim, (id + 1) * dim), t * dim);
    }
    if (T === 0) return false;
    const device = this.#k.device;
    if (!this.#embed || this.#embed.size < emb.byteLength) {
      this.#embed?.destroy();
      this.#embed = device.createBuffer({
        size: Math.ceil(emb.byteLength / 16) * 16,
        usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
    }
    const slices: [number, number][] = [];
    for (let s = 0; s < T; s += this.#slice) slices.push([s, Math.min(this.#slice, T - s)]);
    const steps = new Uint32Array((slices.length * STEP_STRIDE) / 4);
    slices.forEach(([s, n], i) => steps.set([n, pos + s], (i * STEP_STRIDE) / 4));
    device.queue.writeBuffer(this.#embed, 0, emb);
    device.queue.writeBuffer(this.#step, 0, steps);
    device.pushErrorScope("validation");
    const enc = device.createCommandEncoder();
    const program = [...this.#program, ...extra];
    slices.forEach(([s, n], i) => {
      enc.copyBufferToBuffer(this.#embed!, s * dim * 4, this.#x, 0, n * dim * 4);
      const pass = enc.beginComputePass();
      encodeDispatches(pass, program, n, i * STEP_STRIDE);
      pass.end();
      afterSlice(enc, s, n);
    });
    after?.(enc);
    device.queue.submit([enc.finish()]);
    this.#reach = Math.max(this.#reach, pos + T);
    const error = await device.popErrorScope();
    if (error) throw new WebGpuError(`WebGPU validation failed: ${error.message}`);
    this.#length = pos + T;
    return true;
  }

  /**
   * GPU time of each dispatch of one forward pass of `tokens` at `pos` (at most one slice), each
   * in its own compute pass between timestamps, summed by label (matrix parts together), largest
   * first: where a pass's time goes, for profiling on a GPU (`fixtures/scale/profile.ts`), not for
   * results. Writes the KV cache past its length (the next forward overwrites it) and leaves the
   * length as it was (a quantized cache then continues only where the window still holds its rows,
   * else after a reset: see {@linkcode WebGpuRunner.truncate}); needs the adapter's
   * `timestamp-query`.
   */
  async profile(tokens: ArrayLike<number>, pos: number): Promise<DispatchTime[]> {
    const k = this.#k;
    const T = tokens.length;
    if (!k.gpu.timestamps) {
      throw new WebGpuUnsupportedError("Profiling needs the adapter's timestamp-query feature");
    }
    if (!(T >= 1 && T <= this.#slice)) {
      throw new RangeError(`Profile of ${T} tokens: 1 to ${this.#slice} (one slice) can be timed`);
    }
    if (pos !== this.#length || pos + T > this.#maxSeqLen) {
      throw new RangeError(
        `Profile at position ${pos} of ${T} tokens; the KV cache holds ${this.#length} of ${this.#maxSeqLen}`,
      );
    }
    this.#checkWindow(pos);
    const device = k.device;
    const program = this.#program.filter((d) => d.groups(T).reduce((a, b) => a * b) > 0);
    const times = new Map<string, DispatchTime>();
    // A query set holds at most 4096 timestamps.
    for (let start = 0; start < program.length; start += 2048) {
      const part = program.slice(start, start + 2048);
      const query = device.createQuerySet({ type: "timestamp", count: 2 * part.length });
      const resolve = device.createBuffer({
        size: 16 * part.length,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      const read = device.createBuffer({
        size: 16 * part.length,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      try {
        device.queue.writeBuffer(this.#step, 0, Uint32Array.of(T, pos, 0, 0));
        this.#reach = Math.max(this.#reach, pos + T);
        const enc = device.createCommandEncoder();
        part.forEach((d, i) => {
          const pass = enc.beginComputePass({
            timestampWrites: {
              querySet: query,
              beginningOfPassWriteIndex: 2 * i,
              endOfPassWriteIndex: 2 * i + 1,
            },
          });
          encodeDispatches(pass, [d], T, 0);
          pass.end();
        });
        enc.resolveQuerySet(query, 0, 2 * part.length, resolve, 0);
        enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * part.length);
        device.queue.submit([enc.finish()]);
        await read.mapAsync(GPUMapMode.READ);
        const stamps = new BigUint64Array(read.getMappedRange().slice(0));
        read.unmap();
        part.forEach((d, i) => {
          const label = d.label.replace(/ part \d+/, "");
          const t = times.get(label) ?? { label, ms: 0, count: 0 };
          t.ms += Number(stamps[2 * i + 1]! - stamps[2 * i]!) / 1e6;
          t.count++;
          times.set(label, t);
        });
      } finally {
        query.destroy();
        resolve.destroy();
        read.destroy();
      }
    }
    return [...times.values()].sort((a, b) => b.ms - a.ms);
  }

  /**
   * Greedy decoding without a host round trip per token (see `ModelRunner.decodeGreedy`): the
   * first token id is written to a GPU buffer; each step gathers its embedding row from the
   * table on the GPU, runs the forward pass's dispatches at its position (its own `Step` slot)
   * and writes the argmax of its logits into the buffer, where the next step reads it. Steps go
   * out 2, 4, 8, then {@linkcode DECODE_ROUND} to a submit; only the ids come back, once.
   */
  async decodeGreedy(token: number, pos: number, count: number): Promise<Int32Array> {
    const c = this.#model.config;
    if (pos !== this.#length) {
      throw new RangeError(`Decode at position ${pos}, but the KV cache holds ${this.#length}`);
    }
    this.#checkWindow(pos);
    if (!(Number.isInteger(count) && count >= 0)) {
      throw new RangeError(`Decode step count ${count} is not a whole number`);
    }
    if (pos + count > this.#maxSeqLen) {
      throw new RangeError(
        `Context ${pos + count} exceeds the runner's maximum ${this.#maxSeqLen}`,
      );
    }
    if (!(Number.isInteger(token) && token >= 0 && token < c.vocabSize)) {
      throw new RangeError(`Token id ${token} is out of range`);
    }
    if (count === 0) return new Int32Array(0);
    const d = await this.#decoderFor(count + 1);
    const device = this.#k.device;
    this.#reach = Math.max(this.#reach, pos + count);
    device.queue.writeBuffer(d.ids, 0, Uint32Array.of(token));
    device.pushErrorScope("validation");
    for (let r = 0, round = 2; r < count; r += round, round = Math.min(2 * round, DECODE_ROUND)) {
      const n = Math.min(round, count - r);
      const steps = new Uint32Array((n * STEP_STRIDE) / 4);
      for (let i = 0; i < n; i++) steps.set([1, pos + r + i, r + i], (i * STEP_STRIDE) / 4);
      // Queue order: this write lands after the previous round's submit has run.
      device.queue.writeBuffer(this.#step, 0, steps);
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      const offsets = new Uint32Array(1);
      let last: GPUComputePipeline | undefined;
      for (let i = 0; i < n; i++) {
        offsets[0] = i * STEP_STRIDE;
        // As encodeDispatches, with the pipeline kept across tokens too.
        for (const { pipeline, bindGroup, groups } of d.program) {
          if (pipeline !== last) pass.setPipeline(last = pipeline);
          pass.setBindGroup(0, bindGroup, offsets, 0, 1);
          pass.dispatchWorkgroups(groups[0]!, groups[1], groups[2]);
        }
      }
      pass.end();
      if (r + n === count) enc.copyBufferToBuffer(d.ids, 4, d.read, 0, count * 4);
      device.queue.submit([enc.finish()]);
    }
    const error = await device.popErrorScope();
    if (error) throw new WebGpuError(`WebGPU validation failed: ${error.message}`);
    await d.read.mapAsync(GPUMapMode.READ, 0, count * 4);
    const ids = new Int32Array(d.read.getMappedRange(0, count * 4).slice(0));
    d.read.unmap();
    this.#length = pos + count;
    return ids;
  }

  /** The decoder with room for `words` token ids, made (or grown) on demand. */
  async #decoderFor(words: number): Promise<Decoder> {
    if (this.#decoder && this.#decoder.capacity >= words) return this.#decoder;
    const k = this.#k;
    const { config: c, weights: w } = this.#model;
    this.#table ??= embedParts(c.vocabSize, c.dim, this.#maxBinding).map(([rowStart, rows]) => ({
      rowStart,
      rows,
      buffer: k.storage(w.tokenEmbedding.subarray(rowStart * c.dim, (rowStart + rows) * c.dim)),
    }));
    this.#decoder?.ids.destroy();
    this.#decoder?.read.destroy();
    this.#decoder = undefined;
    const capacity = Math.max(words, 256);
    const ids = k.device.createBuffer({
      size: capacity * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    const read = k.device.createBuffer({
      size: capacity * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const gather = await Promise.all(
      this.#table.map((part) =>
        k.embed(this.#step, ids, part.buffer, this.#x, {
          dim: c.dim,
          rowStart: part.rowStart,
          rows: part.rows,
        })
      ),
    );
    const argmax = await k.argmax(this.#step, this.#logits, ids, c.vocabSize);
    // Dispatches with no workgroups at T = 1 (the split GEMMs' sums) are left out, as
    // encodeDispatches does: each would still cost encoding and a barrier, 7 a layer.
    const program = [...gather, ...this.#program, argmax].map((p) => ({
      pipeline: p.pipeline(1),
      bindGroup: p.bindGroupFor?.(1) ?? p.bindGroup,
      groups: p.groups(1),
    })).filter(({ groups: [x, y, z] }) => x * y * z > 0);
    this.#decoder = { ids, read, capacity, program };
    return this.#decoder;
  }

  /**
   * GB/s of a device copy of `bytes` (see `ModelRunner.copyBandwidth`), counting bytes read plus
   * written: the best of three passes of {@linkcode COPY_REPEATS} back-to-back copies, timed by
   * GPU timestamps where the adapter has them (else from submit to completion on the host), after
   * at least 100 ms of untimed copies (a GPU ran kernels slower for a while after buffers were
   * allocated and after host-side pauses: PERF.md).
   */
  async copyBandwidth(bytes: number): Promise<number> {
    const k = this.#k;
    const device = k.device;
    const size = Math.max(16, Math.floor(Math.min(bytes, this.#maxBinding) / 16) * 16);
    const owned: { destroy(): void }[] = [];
    const make = <T extends { destroy(): void }>(x: T): T => (owned.push(x), x);
    const src = make(device.createBuffer({ size, usage: GPUBufferUsage.STORAGE }));
    const dst = make(device.createBuffer({ size, usage: GPUBufferUsage.STORAGE }));
    const query = k.gpu.timestamps
      ? make(device.createQuerySet({ type: "timestamp", count: 2 }))
      : undefined;
    const resolve = make(device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    }));
    const read = make(device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    }));
    try {
      const copy = await k.copy(src, dst, size / 16);
      /** One pass of copies: its GB/s, timed when asked. */
      const pass = async (timed: boolean): Promise<number> => {
        const enc = device.createCommandEncoder();
        const stamps = timed && query
          ? { querySet: query, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 }
          : undefined;
        const p = enc.beginComputePass(stamps ? { timestampWrites: stamps } : {});
        p.setPipeline(copy.pipeline);
        p.setBindGroup(0, copy.bindGroup);
        for (let r = 0; r < COPY_REPEATS; r++) p.dispatchWorkgroups(...copy.groups);
        p.end();
        if (stamps) {
          enc.resolveQuerySet(query!, 0, 2, resolve, 0);
          enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
        }
        const t0 = performance.now();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        let ms = performance.now() - t0;
        if (stamps) {
          await read.mapAsync(GPUMapMode.READ);
          const t = new BigUint64Array(read.getMappedRange().slice(0));
          read.unmap();
          ms = Number(t[1]! - t[0]!) / 1e6;
        }
        return (2 * size * COPY_REPEATS) / (ms * 1e6);
      };
      device.pushErrorScope("validation");
      const warm = performance.now();
      do await pass(false); while (performance.now() - warm < 100);
      const best = Math.max(await pass(true), await pass(true), await pass(true));
      const error = await device.popErrorScope();
      if (error) throw new WebGpuError(`WebGPU validation failed: ${error.message}`);
      return best;
    } finally {
      for (const x of owned) x.destroy();
    }
  }

  /**
   * Keeps the first `length` positions of the KV cache (see `ModelRunner.truncate`). A quantized
   * cache's float window has overwritten the rows of positions more than a slice behind the
   * furthest one written; cutting back further throws {@linkcode KvWindowError} (`generate.ts`
   * cuts back less than one decode round).
   */
  truncate(length: number): void {
    if (!(Number.isInteger(length) && length >= 0 && length <= this.#length)) {
      throw new RangeError(
        `Cannot keep ${length} positions of a KV cache holding ${this.#length}`,
      );
    }
    if (length === 0) return this.reset();
    if (this.#reach - length > this.#rewind) {
      throw new KvWindowError(
        `Cannot keep ${length} positions of a quantized KV cache written up to ${this.#reach}: ` +
          `its float window holds the rows of ${this.#rewind} positions past the length at most`,
      );
    }
    this.#length = length;
  }

  reset(): void {
    this.#length = 0;
    this.#reach = 0;
  }

  /**
   * Throws {@linkcode KvWindowError} where a quantized cache's window no longer holds the rows a
   * step at `pos` reads: the cache was written further than it can be cut back (a profile pass).
   */
  #checkWindow(pos: number): void {
    // A step at 0 reads no earlier position.
    if (pos === 0) this.#reach = 0;
    if (this.#reach - pos > this.#rewind) {
      throw new KvWindowError(
        `A step at ${pos} of a quantized KV cache written up to ${this.#reach}: its float window ` +
          `no longer holds the rows the step reads (reset the cache)`,
      );
    }
  }

  dispose(): void {
    this.#embed?.destroy();
    this.#read?.destroy();
    this.#decoder?.ids.destroy();
    this.#decoder?.read.destroy();
    this.#k.destroy();
  }
}

/** Rows `[offset, offset + T·8)` of read-back scores: (f32 NLL, u32 argmax) pairs. */
function unpackScores(data: ArrayBuffer | null, offset: number, T: number): TokenScores {
  const words = data ? new Uint32Array(data, offset, 2 * T) : new Uint32Array(0);
  const floats = new Float32Array(words.buffer, words.byteOffset, words.length);
  return {
    nll: Float64Array.from({ length: T }, (_, t) => floats[2 * t]!),
    argmax: Int32Array.from({ length: T }, (_, t) => words[2 * t + 1]!),
  };
}

/** GPU time of the dispatches of one label in a profiled pass ({@linkcode WebGpuRunner.profile}). */
export interface DispatchTime {
  /** The dispatch's label, without its matrix part (`matmul 2048x5632`, `attention`, …). */
  label: string;
  /** Milliseconds, summed over the dispatches. */
  ms: number;
  /** Dispatches with this label. */
  count: number;
}

/** Options of {@linkcode createWebGpuBackend}. */
export interface WebGpuBackendOptions {
  /** Registry name (default `webgpu`). */
  name?: string;
  /** Caps the storage binding size (tests use a small one to exercise row splitting). */
  maxBinding?: number;
  /** Integer-activation GEMV knobs other than the defaults (tests of the perf sweep's variants). */
  gemv?: GemvTuning;
}

/** A WebGPU backend; the registry's `webgpu` is `createWebGpuBackend()`. */
export function createWebGpuBackend(options: WebGpuBackendOptions = {}): Backend {
  return {
    name: options.name ?? "webgpu",
    description:
      "WGSL kernels on the WebGPU adapter (float32, or run-time integer or FP8 activations and a KIVI-quantized KV cache)",
    unavailable: adapterUnavailable,
    runtimeQuantization: { activations: ACTIVATIONS, kvCache: true },
    async load(model, loadOptions) {
      // The registry declares what run-time quantization runs here, so suites skip other cells
      // before they get here.
      const act = model.runtime?.activations;
      if (act !== undefined && !ACTIVATIONS.includes(act)) {
        throw new WebGpuUnsupportedError(
          `The WebGPU backend quantizes activations to ${
            ACTIVATIONS.join(", ")
          }; the model asks for ${JSON.stringify(model.runtime)}`,
        );
      }
      const gpu = await getGpu();
      const k = new Kernels(gpu);
      try {
        return await WebGpuRunner.create(
          k,
          model,
          loadOptions?.maxSeqLen ?? model.config.maxSeqLen,
          Math.min(options.maxBinding ?? Infinity, gpu.maxBinding),
          options.gemv,
        );
      } catch (e) {
        k.destroy();
        throw e;
      }
    },
    ops: webgpuOps(options.maxBinding, options.gemv),
  };
}

/** The WebGPU backend. */
export const webgpuBackend: Backend = createWebGpuBackend();
