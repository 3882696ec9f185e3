/**
 * Writes safetensors files: u64 little-endian header length, the JSON header (padded with spaces
 * to a multiple of 8 bytes, as the reference implementation pads it), then the tensors in header
 * order. Float32 weights are stored as F32, or rounded to nearest-even F16/BF16 (torch's casts);
 * an entry may name its own type, e.g. I32 for packed integer codes or I64 for a shape.
 *
 * @module
 */
import { f32ToF16 } from "../../../kernels/formats/gguf/numeric.ts";
import { f32ToBf16 } from "../../../kernels/formats/gguf/blocks.ts";
import { writeAll, writeFileAtomically } from "./export.ts";

/** Element types the writer stores. */
export type SafetensorsWriteDtype = "F32" | "F16" | "BF16";

/** Integer element types an entry may be stored as (its values are whole numbers in range). */
export type SafetensorsIntDtype = "I32" | "I64" | "U8";

/** One tensor to write, row-major. */
export interface SafetensorsEntry {
  name: string;
  shape: readonly number[];
  data: Float32Array | Int32Array;
  /** This entry's stored type (default: the file's). */
  dtype?: SafetensorsWriteDtype | SafetensorsIntDtype;
}

const BYTES: Record<SafetensorsWriteDtype | SafetensorsIntDtype, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  U8: 1,
};

function encode(
  data: Float32Array | Int32Array,
  dtype: SafetensorsWriteDtype | SafetensorsIntDtype,
): Uint8Array {
  const out = new Uint8Array(data.length * BYTES[dtype]);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) {
    if (dtype === "I32") view.setInt32(4 * i, data[i]!, true);
    else if (dtype === "I64") view.setBigInt64(8 * i, BigInt(data[i]!), true);
    else if (dtype === "U8") view.setUint8(i, data[i]!);
    else if (dtype === "F32") view.setFloat32(4 * i, data[i]!, true);
    else view.setUint16(2 * i, dtype === "F16" ? f32ToF16(data[i]!) : f32ToBf16(data[i]!), true);
  }
  return out;
}

/** Writes `entries` to `path` as one safetensors file (atomically). */
export async function writeSafetensors(
  path: string,
  entries: readonly SafetensorsEntry[],
  dtype: SafetensorsWriteDtype,
  metadata: Record<string, string> = {},
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (n !== e.data.length) {
      throw new RangeError(`Tensor ${e.name} has ${e.data.length} values for shape [${e.shape}]`);
    }
    const type = e.dtype ?? dtype;
    const size = n * BYTES[type];
    header[e.name] = { dtype: type, shape: e.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  const length = new TextEncoder().encode(json).length;
  json += " ".repeat((8 - (length % 8)) % 8);
  const jsonBytes = new TextEncoder().encode(json);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  await writeFileAtomically(path, async (file) => {
    await writeAll(file, prefix);
    await writeAll(file, jsonBytes);
    for (const e of entries) await writeAll(file, encode(e.data, e.dtype ?? dtype));
  });
}
