/**
 * The one layer loop of every weight quantization method: the blocks are quantized in order,
 * each from the activations its quantized predecessors produce, and what a block contains comes
 * from its description (`core/graph.ts`), never from the method.
 *
 * With calibration windows, their token embeddings are the hidden states at the input of layer
 * 0; for each layer the block's steps run over every window and the input of each group of
 * linears sharing an input (`linearGroups`: `[wq, wk, wv]`, `[wo]`, `[w1, w3]`, `[w2]` for
 * Llama) is captured and handed to the method, which returns quantized weights; then the windows
 * go through the block to the next layer. A {@linkcode SequentialMethod} is one of two kinds:
 *
 * - `groups`: each group in block order. With `sequential`, a group's inputs come from the block
 *   whose earlier groups are already quantized (GPTQ's `true_sequential`: the steps resume from
 *   where the last group's inputs were captured, with the quantized weights); otherwise from the
 *   float block. The windows then go through the quantized block, or first through
 *   `finishLayer`, which may change the quantized layer (AQLM's block-wise fine-tuning) given the
 *   block's inputs and reference outputs.
 * - `layer`: the float block's captures of every group at once (those `taps` selects); the
 *   method returns the whole quantized layer (it may rescale norms and other linears, as AWQ and
 *   SmoothQuant do), and the windows go through the float block, as those references do (on
 *   the method's window kernels, all windows at once, where it gives them).
 * - `block`: block-wise reconstruction (OmniQuant, AffineQuant). Two streams of hidden states go
 *   from layer to layer: the quantized model's (the method's quantized blocks, as the method runs
 *   them) and the float model's. The method gets the block's input on the quantized stream, the
 *   float block's output on the float stream (the target) and the float block's captures of every
 *   group there; it returns the quantized layer and its output on the quantized stream.
 *
 * Without windows (calibration-free methods: RTN, HQQ) the `groups` method is called with no
 * inputs, group by group and layer by layer.
 *
 * Memory stays bounded by one layer: the hidden states of all windows at the current layer's
 * input, the values of the current block that later steps still read, and the captures. The
 * weights too, for a streamed model (`LlamaModel.stream`): each layer is read when its turn
 * comes and its float copy dropped once quantized, so the weights held are the quantized layers
 * so far and one float layer. The meter counts them with the method's buffers: the weights
 * outside the blocks throughout, every float layer of a model loaded whole, a streamed layer
 * while it is quantized, and each quantized layer from then on (its matrices as the method
 * holds them, the rest here).
 *
 * @module
 */
import type { BlockStep, BlockValue, NormName } from "../../core/graph.ts";
import {
  BLOCK_OUTPUT,
  blockShape,
  blockSteps,
  linearGroups,
  linearInputs,
  stepInputs,
} from "../../core/graph.ts";
import {
  type LayerWeights,
  LINEAR_NAMES,
  type LinearName,
  type LlamaModel,
  type Matrix,
} from "../../core/model.ts";
import type { BlockValues } from "../../kernels/cpu/block_interpreter.ts";
import {
  CalibrationBlock,
  embed,
  layerBuffers,
  matrixBuffers,
  MemoryMeter,
  runWindows,
  weightBuffers,
  type WindowKernels,
} from "./calibration.ts";

/** Thrown when a method asks the driver for what it cannot do. */
export class SequentialCalibrationError extends Error {
  override name = "SequentialCalibrationError";
}

/** Linears of a block that share an input: a unit of sequential quantization. */
export interface LinearGroup {
  /** The linears, in block order. */
  names: LinearName[];
  /** Their common input: the tap point where calibration captures it. */
  input: BlockValue;
}

/** What a method sees of the layer it quantizes. */
export interface LayerContext {
  /** Index of the layer in the model. */
  index: number;
  /** The layer's weights as the model has them (read from the file when streamed). */
  original: LayerWeights;
  /** The layer's steps. */
  steps: BlockStep[];
  /** Its groups of linears, in block order. */
  groups: LinearGroup[];
  /** Runs (parts of) the block over calibration windows. */
  block: CalibrationBlock;
  /** Counts what the method holds, for `quantize_peak_bytes`. */
  meter: MemoryMeter;
}

/** How a method quantizes the layers (see the module notes). */
export type SequentialMethod =
  | {
    kind: "groups";
    /** Whether a group's inputs come from the block with its earlier groups quantized. */
    sequential: boolean;
    /**
     * Where the block's steps run over the windows (default the CPU). The inputs
     * `quantizeGroup` gets are the values the kernels ran on (a device may hold them): it reads
     * them and leaves them as they are.
     */
    windows?: WindowKernels;
    /**
     * Whether `quantizeGroup` reads its inputs on the device `windows` keeps them on (GPTQ's
     * Hessian, from the same store), so their host arrays need not be current; by default they
     * are read back first.
     */
    deviceInputs?: boolean;
    /** The quantized weights of `group`, given its inputs on every window (none without). */
    quantizeGroup(
      group: LinearGroup,
      inputs: Float32Array[] | undefined,
      layer: LayerContext,
    ):
      | Partial<Record<LinearName, Matrix>>
      | Promise<Partial<Record<LinearName, Matrix>>>;
    /**
     * With windows: the layer once every group is quantized, given the block's inputs and its
     * reference outputs on every window (block-wise fine-tuning); the windows then go through
     * the layer it returns. The reference outputs are those of the block the last group's inputs
     * were captured from: the float block, or with `sequential` the block with the earlier
     * groups quantized (AQLM's `outs`).
     */
    finishLayer?(
      weights: LayerWeights,
      io: { inputs: Float32Array[]; targets: Float32Array[] },
      layer: LayerContext,
    ): LayerWeights | Promise<LayerWeights>;
  }
  | {
    kind: "layer";
    /** Which groups' inputs to capture (default all). */
    taps?(group: LinearGroup, layer: LayerContext): boolean;
    /**
     * Where the float block's linears and attention run over the windows, all windows at once
     * (default the CPU, window by window).
     */
    windows?: WindowKernels;
    /** The quantized layer, given the float block's captures by tap point. */
    quantizeLayer(
      captures: Map<BlockValue, Float32Array[]>,
      layer: LayerContext,
    ): LayerWeights | Promise<LayerWeights>;
  }
  | {
    kind: "block";
    /** The quantized layer and its output on every window (see the module notes). */
    quantizeBlock(
      streams: BlockStreams,
      layer: LayerContext,
    ): BlockResult | Promise<BlockResult>;
  };

/** What a `block` method reconstructs from, one entry per window. */
export interface BlockStreams {
  /** The block's input in the quantized model. */
  inputs: Float32Array[];
  /** The float block's output in the float model: the reconstruction target. */
  targets: Float32Array[];
  /** The float block's input of every group (by tap point) in the float model. */
  captures: Map<BlockValue, Float32Array[]>;
}

/** A `block` method's quantized layer and its output on the quantized stream. */
export interface BlockResult {
  weights: LayerWeights;
  outputs: Float32Array[];
}

/**
 * Sees each group's calibration inputs as a `groups` method is handed them (layer index, group,
 * one array per window, on the host, each `tokens × cols`). It exists so that an independent
 * reference implementation (`fixtures/methods/`) can be fed the very statistics quantbench
 * quantized each linear against, and so compare the quantizers layer by layer without the
 * float32 rounding of two different forwards in between.
 */
export type GroupTap = (
  layer: number,
  group: LinearGroup,
  inputs: Float32Array[],
  cols: number,
) => void;

let groupTap: GroupTap | undefined;

/**
 * Runs `work` with `tap` seeing every group's inputs (see {@linkcode GroupTap}); the tap is
 * removed when `work` settles.
 *
 * @example
 * ```ts ignore
 * const seen: string[] = [];
 * await withGroupTap((layer, group) => seen.push(`${layer}:${group.names}`), () => run());
 * ```
 */
export async function withGroupTap<T>(tap: GroupTap, work: () => Promise<T>): Promise<T> {
  if (groupTap) throw new SequentialCalibrationError("A group tap is already installed");
  groupTap = tap;
  try {
    return await work();
  } finally {
    groupTap = undefined;
  }
}

/** The groups of linears of a block's steps, each with its input. */
export function groupsOf(steps: readonly BlockStep[]): LinearGroup[] {
  const inputs = linearInputs(steps);
  return linearGroups(steps).map((names) => ({ names, input: inputs.get(names[0]!)! }));
}

/** Copies of the RMSNorm weights the steps use, for methods that fold scales into them. */
export function normCopies(
  steps: readonly BlockStep[],
  layer: LayerWeights,
): Record<NormName, Float32Array> {
  return Object.fromEntries(
    steps.flatMap((s) => s.op === "rmsnorm" ? [[s.weight, layer[s.weight].slice()]] : []),
  ) as Record<NormName, Float32Array>;
}

/**
 * The index of the first linear of `steps` that reads `value` (the first of its group): steps
 * before it that rewrite `value` in place (a rotated model's `hadamard`) still run, so what is
 * captured there is the linears' input.
 */
export function firstReader(steps: readonly BlockStep[], value: BlockValue): number {
  return steps.findIndex((s) => s.op === "linear" && s.input === value);
}

/**
 * The model's layers quantized by `method`, over the token `windows` (hidden states start as
 * their embeddings), or without calibration when `windows` is undefined; a streamed model's
 * layers are read one at a time. Yields to the event loop between layers (so a worker can
 * deliver progress).
 */
export async function quantizeLayers(
  model: LlamaModel,
  method: SequentialMethod,
  windows: number[][] | undefined,
  meter: MemoryMeter = new MemoryMeter(),
): Promise<LayerWeights[]> {
  if (method.kind === "layer" && windows === undefined) {
    throw new SequentialCalibrationError(
      `A "layer" method quantizes from the block's captures and needs calibration windows`,
    );
  }
  const block = new CalibrationBlock(model.config);
  const { stream } = model;
  // The weights held throughout: those outside the blocks and, unless streamed, every float layer.
  const resident = new Set([
    ...weightBuffers({ ...model.weights, layers: [] }),
    ...(stream ? [] : model.weights.layers.flatMap(layerBuffers)),
  ]);
  meter.hold([...resident]);
  let hidden = windows && embed(model, windows);
  if (hidden) meter.hold(hidden);
  // The float model's stream, for `block` methods (both start at the embeddings).
  let floatHidden = method.kind === "block" ? hidden : undefined;
  const layers: LayerWeights[] = [];
  const count = stream ? stream.count : model.weights.layers.length;
  try {
    for (let index = 0; index < count; index++) {
      const { weights, next, floatNext } = await quantizeAt(
        model,
        index,
        method,
        block,
        hidden,
        meter,
        floatHidden,
      );
      if (floatHidden && floatNext) {
        // The float block's outputs were counted when it made them.
        if (floatHidden !== hidden) {
          meter.release(floatHidden.reduce((n, x) => n + x.byteLength, 0));
        }
        floatHidden = floatNext;
      }
      if (hidden && next) {
        meter.release(hidden.reduce((n, x) => n + x.byteLength, 0));
        meter.hold(next);
        hidden = next;
      }
      // Methods count the matrices they quantize; the rest of the layer (norms, biases, any float
      // linear) is counted here unless it is already resident.
      meter.hold(floatBuffers(weights).filter((b) => !resident.has(b)));
      layers.push(weights);
      await Promise.resolve();
    }
  } finally {
    // Device buffers the window kernels kept from layer to layer.
    if (method.kind !== "block") method.windows?.release?.();
  }
  return layers;
}

/**
 * Layer `index` quantized by `method`. A streamed layer is read here and is unreachable once this
 * returns: a separate (async) function, because a suspended async function keeps the values of
 * its locals from the last iteration, which would hold the previous float layer while the next
 * one is read.
 */
async function quantizeAt(
  model: LlamaModel,
  index: number,
  method: SequentialMethod,
  block: CalibrationBlock,
  hidden: Float32Array[] | undefined,
  meter: MemoryMeter,
  floatHidden?: Float32Array[],
): Promise<{ weights: LayerWeights; next?: Float32Array[]; floatNext?: Float32Array[] }> {
  const { stream } = model;
  const original = stream ? await stream.read(index) : model.weights.layers[index]!;
  const read = stream ? meter.hold(layerBuffers(original)) : 0;
  const steps = blockSteps(blockShape(original));
  const layer: LayerContext = { index, original, steps, groups: groupsOf(steps), block, meter };
  const done = method.kind === "groups"
    ? await quantizeGroups(method, layer, hidden)
    : method.kind === "block"
    ? await quantizeBlock(method, layer, hidden!, floatHidden!)
    : await quantizeLayer(method, layer, hidden!);
  meter.release(read);
  return done;
}

/** A layer's float arrays: norms, biases and dense matrices (what methods do not count). */
function floatBuffers(layer: LayerWeights): ArrayBufferView[] {
  return layerBuffers(layer).filter((b) => b instanceof Float32Array && !isQuantizedPart(layer, b));
}

/** Whether `b` belongs to a quantized matrix of `layer` (its scales are float arrays too). */
function isQuantizedPart(layer: LayerWeights, b: ArrayBufferView): boolean {
  return LINEAR_NAMES.some((n) => layer[n].kind !== "dense" && matrixBuffers(layer[n]).includes(b));
}

/** A `groups` method over one layer; the windows' values at its output when there are windows. */
async function quantizeGroups(
  method: Extract<SequentialMethod, { kind: "groups" }>,
  layer: LayerContext,
  hidden: Float32Array[] | undefined,
): Promise<{ weights: LayerWeights; next?: Float32Array[] }> {
  const { original, steps, block, meter } = layer;
  const weights: LayerWeights = { ...original };
  if (hidden === undefined) {
    for (const group of layer.groups) {
      Object.assign(weights, await method.quantizeGroup(group, undefined, layer));
    }
    return { weights };
  }
  const tokens = hidden.map((x) => x.length / block.config.dim);
  const values: BlockValues[] = hidden.map((x) => new Map([["x", x]]));
  // Steps up to `done` have run over every window's values.
  let done = 0;
  // The weights the last group's inputs came from.
  let source: LayerWeights = original;
  for (const group of layer.groups) {
    const start = firstReader(steps, group.input);
    source = method.sequential ? { ...weights } : original;
    await runSteps(method, block, steps, source, values, tokens, { from: done, to: start });
    done = start;
    // Counted: every value the windows hold besides their input (already counted as hidden).
    const held = meter.hold(
      values.flatMap((v) => [...v].flatMap(([k, x]) => k === "x" ? [] : [x])),
    );
    const inputs = values.map((v) => v.get(group.input)!);
    if (!method.deviceInputs || groupTap) await method.windows?.read?.(inputs);
    groupTap?.(layer.index, group, inputs, layer.original[group.names[0]!].cols);
    Object.assign(weights, await method.quantizeGroup(group, inputs, layer));
    meter.release(held);
    dropUnread(steps, done, values);
    // The device keeps the values still read, and the layer's input (the driver's).
    method.windows?.retain?.([...hidden, ...values.flatMap((v) => [...v.values()])]);
  }
  if (method.finishLayer) {
    // The reference outputs finish the pass the last group's inputs came from; the finished
    // layer then runs from the start.
    await runSteps(method, block, steps, source, values, tokens, { from: done, to: steps.length });
    const targets = values.map((v) => v.get(BLOCK_OUTPUT)!);
    await method.windows?.read?.([...hidden, ...targets]);
    values.length = 0;
    const held = meter.hold(targets);
    const finished = await method.finishLayer(weights, { inputs: hidden, targets }, layer);
    meter.release(held);
    const fresh = hidden.map((x): BlockValues => new Map([["x", x]]));
    await runSteps(method, block, steps, finished, fresh, tokens, { from: 0, to: steps.length });
    const next = fresh.map((v) => v.get(BLOCK_OUTPUT)!);
    method.windows?.retain?.(next);
    return { weights: finished, next };
  }
  // Without `sequential` the values came from the float block: the quantized one starts over.
  const resumed = method.sequential ? values : hidden.map((x): BlockValues => new Map([["x", x]]));
  const range = { from: method.sequential ? done : 0, to: steps.length };
  await runSteps(method, block, steps, weights, resumed, tokens, range);
  const next = resumed.map((v) => v.get(BLOCK_OUTPUT)!);
  // The next layer's input stays on the device; this layer's values are done.
  method.windows?.retain?.(next);
  return { weights, next };
}

/** Steps `[from, to)` over every window: on the method's window kernels, or window by window. */
async function runSteps(
  method: Extract<SequentialMethod, { kind: "groups" }>,
  block: CalibrationBlock,
  steps: readonly BlockStep[],
  layer: LayerWeights,
  values: BlockValues[],
  tokens: number[],
  range: { from: number; to: number },
): Promise<void> {
  if (method.windows) {
    await runWindows(block, method.windows, steps, layer, values, tokens, range);
    return;
  }
  values.forEach((v, i) => block.run(steps, layer, v, tokens[i]!, range));
}

/** Forgets the values no step from `from` on reads. */
function dropUnread(steps: readonly BlockStep[], from: number, values: BlockValues[]): void {
  const read = new Set(steps.slice(from).flatMap(stepInputs));
  for (const v of values) for (const name of [...v.keys()]) if (!read.has(name)) v.delete(name);
}

/** A `layer` method over one layer; the float block's values at its output. */
async function quantizeLayer(
  method: Extract<SequentialMethod, { kind: "layer" }>,
  layer: LayerContext,
  hidden: Float32Array[],
): Promise<{ weights: LayerWeights; next: Float32Array[] }> {
  const { original, steps, block, meter } = layer;
  const tapped = layer.groups.filter((g) => method.taps?.(g, layer) ?? true).map((g) => g.input);
  const captures = new Map<BlockValue, Float32Array[]>(tapped.map((name) => [name, []]));
  const next = method.windows
    ? await floatBlockOnWindows(method.windows, layer, hidden, captures).finally(() =>
      method.windows!.forget?.()
    )
    : hidden.map((x) => {
      const v: BlockValues = new Map([["x", x]]);
      block.run(steps, original, v, x.length / block.config.dim);
      for (const [name, list] of captures) list.push(v.get(name)!);
      return v.get(BLOCK_OUTPUT)!;
    });
  // The next layer's input is held while the method works, as are the captures.
  const held = meter.hold([...captures.values()].flat(), next);
  const weights = await method.quantizeLayer(captures, layer);
  meter.release(held);
  return { weights, next };
}

/**
 * The float block over every window at once on `windows`: its outputs, with the captures added
 * to `captures`. A function of its own so that the block's other values are unreachable once it
 * returns (a suspended async caller would keep them).
 */
async function floatBlockOnWindows(
  windows: WindowKernels,
  { original, steps, block }: LayerContext,
  hidden: Float32Array[],
  captures: Map<BlockValue, Float32Array[]>,
): Promise<Float32Array[]> {
  const values = hidden.map((x): BlockValues => new Map([["x", x]]));
  const tokens = hidden.map((x) => x.length / block.config.dim);
  await runWindows(block, windows, steps, original, values, tokens, { from: 0, to: steps.length });
  for (const [name, list] of captures) list.push(...values.map((v) => v.get(name)!));
  const outputs = values.map((v) => v.get(BLOCK_OUTPUT)!);
  // The method reads its captures on the host, and the next layer starts from the outputs there.
  await windows.read?.([...[...captures.values()].flat(), ...outputs]);
  return outputs;
}

/** A `block` method over one layer; both streams' values at its output. */
async function quantizeBlock(
  method: Extract<SequentialMethod, { kind: "block" }>,
  layer: LayerContext,
  hidden: Float32Array[],
  floatHidden: Float32Array[],
): Promise<{ weights: LayerWeights; next: Float32Array[]; floatNext: Float32Array[] }> {
  const { original, steps, block, meter } = layer;
  const captures = new Map<BlockValue, Float32Array[]>(layer.groups.map((g) => [g.input, []]));
  const targets = floatHidden.map((x) => {
    const v: BlockValues = new Map([["x", x]]);
    block.run(steps, original, v, x.length / block.config.dim);
    for (const [name, list] of captures) list.push(v.get(name)!);
    return v.get(BLOCK_OUTPUT)!;
  });
  const held = meter.hold([...captures.values()].flat());
  meter.hold(targets);
  const { weights, outputs } = await method.quantizeBlock(
    { inputs: hidden, targets, captures },
    layer,
  );
  meter.release(held);
  return { weights, next: outputs, floatNext: targets };
}
