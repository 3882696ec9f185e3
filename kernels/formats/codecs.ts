/**
 * Registry of row codecs for {@linkcode CodedMatrix} weights.
 *
 * Names: ggml block types in ggml's lower-case spelling (`q4_0` … `q6_k`, `q2_0`, `iq4_nl`;
 * ggml's MXFP4 block is `gguf_mxfp4`), OCP MX as `mx.ts` names them (`mxfp8_e4m3`, `mxfp8_e5m2`,
 * `mxfp6_e2m3`, `mxfp6_e3m2`, `mxfp4`, `mxint8`), `nvfp4`, `f16` and `bf16` storage, and scaled
 * minifloats as `scaled_minifloat.ts` names them (`fp8_e4m3-ch-f32`, `fp4_e2m1-g64-bf16`,
 * `fp8_e4m3-pt`, …). Scaled minifloats per channel (f32 scales) and per tensor are registered
 * here; other groups and scale types are registered on first use by {@linkcode ensureRowCodec}.
 *
 * @module
 */
import { Registry } from "../../core/registry.ts";
import type { RowCodec } from "../../core/coded.ts";
import { ggmlTypeByName } from "./gguf/blocks.ts";
import { MX_FORMATS } from "./mx.ts";
import { ggufRowCodec, mxRowCodec, NVFP4_ROW_CODEC } from "./row_codecs.ts";
import {
  PER_CHANNEL,
  PER_TENSOR,
  SCALED_ELEMENTS,
  scaledMinifloatCodec,
} from "./scaled_minifloat.ts";

/** ggml types with an encoder, by codec name. */
export const GGUF_CODECS: readonly (readonly [string, string])[] = [
  ["q4_0", "Q4_0"],
  ["q4_1", "Q4_1"],
  ["q5_0", "Q5_0"],
  ["q5_1", "Q5_1"],
  ["q8_0", "Q8_0"],
  ["q2_0", "Q2_0"],
  ["q2_k", "Q2_K"],
  ["q3_k", "Q3_K"],
  ["q4_k", "Q4_K"],
  ["q5_k", "Q5_K"],
  ["q6_k", "Q6_K"],
  ["iq4_nl", "IQ4_NL"],
  ["gguf_mxfp4", "MXFP4"],
  ["f16", "F16"],
  ["bf16", "BF16"],
];

/** All known row codecs by name. */
export const rowCodecs: Registry<RowCodec> = new Registry<RowCodec>("row codec", [
  ...GGUF_CODECS.map(([name, type]) => [name, ggufRowCodec(name, ggmlTypeByName(type))] as const),
  ...MX_FORMATS.map((format) => [format.name, mxRowCodec(format)] as const),
  ["nvfp4", NVFP4_ROW_CODEC],
  ...SCALED_ELEMENTS.flatMap((element) =>
    [PER_CHANNEL, PER_TENSOR].map((group) => {
      const codec = scaledMinifloatCodec({ element, group, scaleDtype: "f32" });
      return [codec.name, codec] as const;
    })
  ),
]);

/**
 * The registered codec named like `codec`, registering `codec` first when its name is new (for
 * codecs made from settings, such as a scaled minifloat with groups of 128 and bf16 scales).
 */
export function ensureRowCodec(codec: RowCodec): RowCodec {
  if (!rowCodecs.has(codec.name)) rowCodecs.register(codec.name, codec);
  return rowCodecs.get(codec.name);
}
