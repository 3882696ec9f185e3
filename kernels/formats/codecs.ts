/**
 * Registry of row codecs for {@linkcode CodedMatrix} weights: the codecs every registered format
 * module lists up front ({@linkcode WeightFormat.codecs}), made by {@linkcode codecRegistry}.
 *
 * Names: ggml block types in ggml's lower-case spelling (`q4_0` … `q6_k`, `q2_0`, `iq4_nl`;
 * ggml's MXFP4 block is `gguf_mxfp4`), OCP MX as `mx.ts` names them (`mxfp8_e4m3`, `mxfp8_e5m2`,
 * `mxfp6_e2m3`, `mxfp6_e3m2`, `mxfp4`, `mxint8`), `nvfp4`, `f16` and `bf16` storage, and scaled
 * minifloats as `scaled_minifloat.ts` names them (`fp8_e4m3-ch-f32`, `fp4_e2m1-g64-bf16`,
 * `fp8_e4m3-pt`, …). Scaled minifloats per channel (f32 scales) and per tensor are listed; other
 * groups and scale types are made by their format module on first use, and can be registered
 * here by {@linkcode ensureRowCodec}.
 *
 * @module
 */
import { Registry } from "../../core/registry.ts";
import type { RowCodec } from "../../core/coded.ts";
import type { WeightFormat } from "./format.ts";
import { weightFormats } from "./formats.ts";

/** The codecs the modules of `formats` list, by name; a name listed twice is an error. */
export function codecRegistry(formats: Registry<WeightFormat>): Registry<RowCodec> {
  const listed = formats.names().flatMap((name) => formats.get(name).codecs);
  return new Registry<RowCodec>("row codec", listed.map((codec) => [codec.name, codec]));
}

/** All known row codecs by name. */
export const rowCodecs: Registry<RowCodec> = codecRegistry(weightFormats);

/**
 * The registered codec named like `codec`, registering `codec` first when its name is new (for
 * codecs made from settings, such as a scaled minifloat with groups of 128 and bf16 scales).
 */
export function ensureRowCodec(codec: RowCodec): RowCodec {
  if (!rowCodecs.has(codec.name)) rowCodecs.register(codec.name, codec);
  return rowCodecs.get(codec.name);
}
