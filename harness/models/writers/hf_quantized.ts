/**
 * Writes an integer-quantized model as a Hugging Face folder in the packed layouts serving stacks
 * load (transformers, vLLM, AutoGPTQ/GPTQModel, AutoAWQ, llm-compressor's compressed-tensors),
 * with the tokenizer files and chat template of `hf.ts`. Every transformer linear must be an
 * `int` matrix of one width, group and symmetry; the embedding, norms and classifier are stored
 * as f16 (`torch_dtype: float16`, what the GPTQ and AWQ kernels compute in). The codes and
 * scales are quantbench's own, so the folder decodes to the benchmarked weights.
 *
 * Layouts (`W` is `[out][in]`, `q` the unsigned code, `z` the zero point, `G` groups per row):
 *
 * - `gptq` (AutoGPTQ / GPTQModel checkpoint format v1, `quantize_config.json`): `qweight` int32
 *   `[in·bits/32][out]`, `32/bits` codes per word along the input, the first in the lowest bits;
 *   `qzeros` int32 `[G][out·bits/32]` holding `z − 1` (v1's convention; readers add 1) packed
 *   along the output; `scales` f16 `[G][out]`; `g_idx` int32 `[in]` = `i / group`. 2, 3, 4 and 8
 *   bits; 3-bit codes run on across words (32 codes in 3 words, AutoGPTQ's layout). A zero point of 0 has no v1 encoding and is refused.
 * - `awq` (AutoAWQ GEMM, `version: gemm`): 4 bits; `qweight` int32 `[in][out/8]` and `qzeros`
 *   int32 `[G][out/8]` packed along the output in the nibble order `[0, 2, 4, 6, 1, 3, 5, 7]`
 *   (nibble k holds output `8j + order[k]`), zero points as they are; `scales` f16 `[G][out]`.
 *   Symmetric matrices store their zero point `8`.
 * - `compressed-tensors` (llm-compressor's `pack-quantized`): `weight_packed` int32
 *   `[out][in·bits/32]` of `q` (the signed code plus `2^(bits−1)`, i.e. quantbench's unsigned
 *   code) packed along the input, first in the lowest bits; `weight_scale` `[out][G]` in the
 *   scales' own type (f16 or bf16); `weight_shape` int64 `[out, in]`; when asymmetric,
 *   `weight_zero_point` int32 `[out·bits/32][G]`, the signed zero point plus `2^(bits−1)` packed
 *   along the output. 2, 4 and 8 bits.
 *
 * @module
 */
import type { LlamaModel, Matrix, QuantizedMatrix } from "../../../core/model.ts";
import { LINEAR_NAMES } from "../../../core/model.ts";
import { groupsPerRow, PER_TENSOR, zeroAt } from "../../../kernels/formats/int.ts";
import { elementFormats } from "../../../kernels/formats/registry.ts";
import { type FormatSettings, scaleDtypeOf } from "../../../kernels/formats/element_format.ts";
import { writeHfModel } from "./hf.ts";
import type { SafetensorsEntry } from "./safetensors.ts";

/** The packed layouts {@linkcode writeHfQuantized} writes. */
export const HF_LAYOUTS = ["gptq", "awq", "compressed-tensors"] as const;

/** One of {@linkcode HF_LAYOUTS}. */
export type HfLayout = typeof HF_LAYOUTS[number];

/** Thrown when a model's weights have no encoding in the asked layout. */
export class HfLayoutError extends Error {
  override name = "HfLayoutError";
}

/** The integer scheme every linear shares. */
interface Scheme {
  bits: number;
  /** Columns per group, or -1 for one group per row. */
  group: number;
  symmetric: boolean;
  scaleDtype: "f16" | "bf16" | "f32";
}

/** Why `layout` cannot hold `bits`-bit codes with `scaleDtype` scales, or undefined. */
function schemeUnsupported(layout: HfLayout, bits: number, scaleDtype: string): string | undefined {
  switch (layout) {
    case "gptq":
      if (![2, 3, 4, 8].includes(bits)) return "GPTQ packs 2, 3, 4 and 8 bits";
      return scaleDtype === "f16" ? undefined : "GPTQ stores f16 scales";
    case "awq":
      if (bits !== 4) return "AWQ GEMM packs 4-bit codes";
      return scaleDtype === "f16" ? undefined : "AWQ stores f16 scales";
    case "compressed-tensors":
      if (scaleDtype === "f32") {
        return "the scales are f32; compressed-tensors stores them in the model's f16/bf16";
      }
      return [2, 4, 8].includes(bits) ? undefined : "pack-quantized here covers 2, 4 and 8 bits";
  }
}

/**
 * Why a suite format's weights cannot be written in `layout`, decided from its settings before
 * anything is quantized; undefined when they may (the matrices are checked again on writing).
 */
export function hfLayoutFormatUnsupported(
  weights: string,
  settings: FormatSettings,
  layout: HfLayout,
): string | undefined {
  const element = elementFormats.get(weights);
  if (settings.options.activations !== undefined || settings.options.kv_cache !== undefined) {
    return `the format quantizes activations or the KV cache at run time; the ${layout} export ` +
      `holds weights only`;
  }
  if (element.kind !== "int") {
    return `the ${layout} layout holds integer formats (int2 … int8), not ${weights}; use ` +
      `--as gguf for ggml formats`;
  }
  if (settings.group === PER_TENSOR) return `${layout} has no per-tensor scales`;
  return schemeUnsupported(layout, element.bits, scaleDtypeOf(settings, "f16"));
}

function schemeOf(model: LlamaModel, layout: HfLayout): Scheme {
  let scheme: Scheme | undefined;
  model.weights.layers.forEach((layer, l) => {
    for (const name of LINEAR_NAMES) {
      const m: Matrix = layer[name];
      const tensor = `layers.${l}.${name}`;
      if (m.kind !== "int") {
        throw new HfLayoutError(
          `Weight ${tensor} is ${
            m.kind === "dense" ? "not quantized" : `coded as "${m.codec}"`
          }; ` +
            `the ${layout} layout holds integer formats (int2 … int8); use --as gguf for ggml ` +
            `formats`,
        );
      }
      if (m.perTensor) {
        throw new HfLayoutError(`Weight ${tensor} has one scale per tensor; ${layout} has none`);
      }
      if (m.sides !== undefined) {
        throw new HfLayoutError(`Weight ${tensor} carries side tensors ${layout} cannot hold`);
      }
      const own: Scheme = {
        bits: m.bits,
        group: groupsPerRow(m) === 1 ? -1 : m.groupSize,
        symmetric: m.symmetric,
        scaleDtype: m.scaleDtype ?? "f16",
      };
      if (own.group > 0 && m.cols % own.group !== 0) {
        throw new HfLayoutError(
          `Weight ${tensor} has ${m.cols} columns, not a multiple of its group ${own.group}`,
        );
      }
      scheme ??= own;
      if (JSON.stringify(own) !== JSON.stringify(scheme)) {
        throw new HfLayoutError(
          `Weight ${tensor} is quantized as ${JSON.stringify(own)}, unlike the first linear ` +
            `(${JSON.stringify(scheme)}); ${layout} configs name one scheme`,
        );
      }
    }
  });
  if (scheme === undefined) throw new HfLayoutError("The model has no transformer layers");
  const why = schemeUnsupported(layout, scheme.bits, scheme.scaleDtype);
  if (why !== undefined) {
    throw new HfLayoutError(
      `The weights are int${scheme.bits} ${scheme.symmetric ? "symmetric" : "asymmetric"} ` +
        `with ${scheme.scaleDtype} scales: ${why}`,
    );
  }
  return scheme;
}

/** Scales transposed to `[G][out]`. */
function scalesByGroup(m: QuantizedMatrix): Float32Array {
  const G = groupsPerRow(m);
  const out = new Float32Array(G * m.rows);
  for (let r = 0; r < m.rows; r++) {
    for (let g = 0; g < G; g++) out[g * m.rows + r] = m.scales[r * G + g]!;
  }
  return out;
}

function need(ok: boolean, message: string): void {
  if (!ok) throw new HfLayoutError(message);
}

/**
 * `count` values of `bits` bits as one little-endian bit stream in 32-bit words, value `k` at bit
 * `k·bits` (a value may straddle two words): AutoGPTQ's packing for 2, 4 and 8 bits, and its
 * three-word groups of 32 values for 3 bits.
 */
function bitStream(count: number, bits: number, value: (k: number) => number): Int32Array {
  const words = new Int32Array((count * bits) / 32);
  for (let k = 0; k < count; k++) {
    const at = k * bits;
    const v = value(k);
    const word = at >>> 5;
    const shift = at & 31;
    words[word] = words[word]! | (v << shift);
    if (shift + bits > 32) words[word + 1] = words[word + 1]! | (v >>> (32 - shift));
  }
  return words;
}

function gptqEntries(module: string, m: QuantizedMatrix): SafetensorsEntry[] {
  // Whole words: 32/bits values, or 32 values in 3 words for 3 bits.
  const unit = 32 % m.bits === 0 ? 32 / m.bits : 32;
  const mask = (1 << m.bits) - 1;
  need(
    m.cols % unit === 0 && m.rows % unit === 0,
    `${module}: ${m.rows}×${m.cols} is not a multiple of ${unit} both ways`,
  );
  const G = groupsPerRow(m);
  const inWords = (m.cols * m.bits) / 32;
  const outWords = (m.rows * m.bits) / 32;
  const qweight = new Int32Array(inWords * m.rows);
  for (let r = 0; r < m.rows; r++) {
    const column = bitStream(m.cols, m.bits, (i) => m.codes[r * m.cols + i]!);
    column.forEach((word, i) => (qweight[i * m.rows + r] = word));
  }
  const qzeros = new Int32Array(G * outWords);
  for (let g = 0; g < G; g++) {
    const row = bitStream(m.rows, m.bits, (r) => {
      const zero = zeroAt(m, r * G + g);
      need(
        zero > 0,
        `${module}: row ${r} group ${g} has zero point 0, which GPTQ v1 (zero − 1) cannot store`,
      );
      return (zero - 1) & mask;
    });
    qzeros.set(row, g * outWords);
  }
  const groupSize = G === 1 ? m.cols : m.groupSize;
  return [
    { name: `${module}.qweight`, shape: [inWords, m.rows], data: qweight, dtype: "I32" },
    { name: `${module}.qzeros`, shape: [G, outWords], data: qzeros, dtype: "I32" },
    { name: `${module}.scales`, shape: [G, m.rows], data: scalesByGroup(m), dtype: "F16" },
    {
      name: `${module}.g_idx`,
      shape: [m.cols],
      data: Int32Array.from({ length: m.cols }, (_, i) => Math.floor(i / groupSize)),
      dtype: "I32",
    },
  ];
}

/** AutoAWQ's nibble order: nibble k of a word holds output `8j + AWQ_ORDER[k]`. */
const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];

function awqEntries(module: string, m: QuantizedMatrix): SafetensorsEntry[] {
  need(m.rows % 8 === 0, `${module}: ${m.rows} outputs are not a multiple of 8`);
  const G = groupsPerRow(m);
  const words = m.rows / 8;
  const qweight = new Int32Array(m.cols * words);
  for (let i = 0; i < m.cols; i++) {
    for (let j = 0; j < words; j++) {
      let word = 0;
      for (let k = 0; k < 8; k++) word |= m.codes[(8 * j + AWQ_ORDER[k]!) * m.cols + i]! << (4 * k);
      qweight[i * words + j] = word;
    }
  }
  const qzeros = new Int32Array(G * words);
  for (let g = 0; g < G; g++) {
    for (let j = 0; j < words; j++) {
      let word = 0;
      for (let k = 0; k < 8; k++) word |= zeroAt(m, (8 * j + AWQ_ORDER[k]!) * G + g) << (4 * k);
      qzeros[g * words + j] = word;
    }
  }
  return [
    { name: `${module}.qweight`, shape: [m.cols, words], data: qweight, dtype: "I32" },
    { name: `${module}.qzeros`, shape: [G, words], data: qzeros, dtype: "I32" },
    { name: `${module}.scales`, shape: [G, m.rows], data: scalesByGroup(m), dtype: "F16" },
  ];
}

function compressedEntries(module: string, m: QuantizedMatrix): SafetensorsEntry[] {
  const per = 32 / m.bits;
  need(m.cols % per === 0, `${module}: ${m.cols} inputs are not a multiple of ${per}`);
  const words = m.cols / per;
  const packed = new Int32Array(m.rows * words);
  for (let r = 0; r < m.rows; r++) {
    for (let i = 0; i < words; i++) {
      let word = 0;
      for (let k = 0; k < per; k++) word |= m.codes[r * m.cols + i * per + k]! << (m.bits * k);
      packed[r * words + i] = word;
    }
  }
  const G = groupsPerRow(m);
  const scaleType = m.scaleDtype === "bf16" ? "BF16" : "F16";
  const entries: SafetensorsEntry[] = [
    { name: `${module}.weight_packed`, shape: [m.rows, words], data: packed, dtype: "I32" },
    { name: `${module}.weight_scale`, shape: [m.rows, G], data: m.scales, dtype: scaleType },
    {
      name: `${module}.weight_shape`,
      shape: [2],
      data: Int32Array.of(m.rows, m.cols),
      dtype: "I64",
    },
  ];
  if (m.zeros) {
    // Zero points, signed like the codes (stored plus 2^(bits−1): quantbench's own), packed along
    // the output dimension.
    need(m.rows % per === 0, `${module}: ${m.rows} outputs are not a multiple of ${per}`);
    const zeroWords = new Int32Array((m.rows / per) * G);
    for (let j = 0; j < m.rows / per; j++) {
      for (let g = 0; g < G; g++) {
        let word = 0;
        for (let k = 0; k < per; k++) word |= m.zeros[(j * per + k) * G + g]! << (m.bits * k);
        zeroWords[j * G + g] = word;
      }
    }
    entries.push({
      name: `${module}.weight_zero_point`,
      shape: [m.rows / per, G],
      data: zeroWords,
      dtype: "I32",
    });
  }
  return entries;
}

const PACKERS: Record<HfLayout, (module: string, m: QuantizedMatrix) => SafetensorsEntry[]> = {
  gptq: gptqEntries,
  awq: awqEntries,
  "compressed-tensors": compressedEntries,
};

function configs(
  scheme: Scheme,
  layout: HfLayout,
): { quantization: Record<string, unknown>; files: Record<string, string> } {
  const json = (x: unknown) => JSON.stringify(x, null, 2) + "\n";
  switch (layout) {
    case "gptq": {
      const config = {
        bits: scheme.bits,
        group_size: scheme.group,
        desc_act: false,
        sym: scheme.symmetric,
        static_groups: false,
        true_sequential: true,
        damp_percent: 0.01,
        lm_head: false,
        quant_method: "gptq",
        checkpoint_format: "gptq",
        model_file_base_name: "model",
      };
      return { quantization: config, files: { "quantize_config.json": json(config) } };
    }
    case "awq": {
      const config = {
        quant_method: "awq",
        bits: 4,
        group_size: scheme.group,
        zero_point: true,
        version: "gemm",
        modules_to_not_convert: null,
      };
      const autoawq = {
        zero_point: true,
        q_group_size: scheme.group,
        w_bit: 4,
        version: "GEMM",
      };
      return { quantization: config, files: { "quant_config.json": json(autoawq) } };
    }
    case "compressed-tensors": {
      const weights = {
        num_bits: scheme.bits,
        type: "int",
        symmetric: scheme.symmetric,
        strategy: scheme.group > 0 ? "group" : "channel",
        group_size: scheme.group > 0 ? scheme.group : null,
        dynamic: false,
        actorder: null,
        block_structure: null,
        observer: "minmax",
        observer_kwargs: {},
      };
      return {
        quantization: {
          quant_method: "compressed-tensors",
          format: "pack-quantized",
          quantization_status: "compressed",
          config_groups: {
            group_0: {
              targets: ["Linear"],
              weights,
              input_activations: null,
              output_activations: null,
              format: "pack-quantized",
            },
          },
          ignore: ["lm_head"],
          kv_cache_scheme: null,
          global_compression_ratio: null,
        },
        files: {},
      };
    }
  }
}

/**
 * Writes `model` (integer-quantized linears) into folder `dir` in `layout`; throws
 * {@linkcode HfLayoutError} when its weights have no encoding there.
 *
 * @example
 * ```ts
 * await writeHfQuantized(quantizedModel, "out/mini-gptq", "gptq");
 * ```
 */
export async function writeHfQuantized(
  model: LlamaModel,
  dir: string,
  layout: HfLayout,
): Promise<void> {
  const runtime = model.runtime;
  if (runtime?.activations !== undefined || runtime?.kvCache !== undefined) {
    throw new HfLayoutError(
      `The format quantizes activations or the KV cache at run time; the ${layout} export holds ` +
        `weights only`,
    );
  }
  const scheme = schemeOf(model, layout);
  const { quantization, files } = configs(scheme, layout);
  const pack = PACKERS[layout];
  // writeHfModel packs every linear before it writes a file, so a refused matrix writes nothing.
  const linear = (module: string, m: Matrix) => (m.kind === "int" ? pack(module, m) : undefined);
  await writeHfModel(model, dir, { dtype: "F16", linear, quantizationConfig: quantization, files });
}
