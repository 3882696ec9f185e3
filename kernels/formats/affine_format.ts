/**
 * The `affine` format module: HQQ's integer codes with a float scale and a float (fractional)
 * zero point per group (`affine_codec.ts`; codecs `hqq-int<b>-g<group>`, `hqq-int<b>-ch`). The
 * WebGPU kernels have no decoder for fractional zero points, so it runs decoded to f32 there; its
 * parameters come from HQQ's optimisation, not from fixed group scales, so there is no grid.
 *
 * @module
 */
import { codecBits, codecDecodeRow, type WeightFormat } from "./format.ts";

/** The codec names of `affineCodec`. */
const CODEC_NAME = /^hqq-int\d+-(ch|g\d+)$/;

/** HQQ's affine integer codes (what the `hqq` method makes of `int<b>` formats). */
export const AFFINE_FORMAT: WeightFormat = {
  name: "affine",
  description: "HQQ: integer codes + an f16 scale and fractional f16 zero point per group",
  owns: (codec) => CODEC_NAME.test(codec),
  decodeRow: codecDecodeRow,
  bits: codecBits,
  gpu: "none",
  grid: "none",
};
