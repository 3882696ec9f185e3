/**
 * The `affine` format module: HQQ's integer codes with a float scale and a float (fractional)
 * zero point per group (`affine_codec.ts`; codecs `hqq-int<b>-g<group>`, `hqq-int<b>-ch`). The
 * codec is rebuilt from its name, so a matrix decodes without its codec having been registered.
 * The WebGPU kernels have no decoder for fractional zero points, so it runs decoded to f32 there;
 * its parameters come from HQQ's optimisation, not from fixed group scales, so there is no grid.
 *
 * @module
 */
import type { RowCodec } from "../../core/coded.ts";
import { affineCodec } from "./affine_codec.ts";
import { codecRows, type WeightFormat } from "./format.ts";

/** The codec names of `affineCodec`. */
const CODEC_NAME = /^hqq-int(\d+)-(?:ch|g(\d+))$/;

const codecs = new Map<string, RowCodec>();

/** The affine codec named `name` (a {@linkcode CODEC_NAME}). */
function codecNamed(name: string): RowCodec {
  let codec = codecs.get(name);
  if (codec === undefined) {
    const [, bits, group] = CODEC_NAME.exec(name) ?? [];
    codec = affineCodec(Number(bits), Number(group ?? 0));
    codecs.set(name, codec);
  }
  return codec;
}

/** HQQ's affine integer codes (what the `hqq` method makes of `int<b>` formats). */
export const AFFINE_FORMAT: WeightFormat = {
  name: "affine",
  description: "HQQ: integer codes + an f16 scale and fractional f16 zero point per group",
  // Made by the `hqq` method for `int<b>` formats, from settings; none is listed up front.
  codecs: [],
  elements: [],
  bounds: [],
  owns: (codec) => CODEC_NAME.test(codec),
  ...codecRows("affine", codecNamed),
  gpu: "none",
  grid: "none",
};
