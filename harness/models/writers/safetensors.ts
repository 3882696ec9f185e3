/**
 * Writes safetensors files: u64 little-endian header length, the JSON header (padded with spaces
 * to a multiple of 8 bytes, as the reference implementation pads it), then the tensors in header
 * order. Float32 weights are stored as F32, or rounded to nearest-even F16/BF16 (torch's casts).
 *
 * @module
 */
import { f32ToF16 } from "../../../kernels/formats/gguf/numeric.ts";
import { f32ToBf16 } from "../../../kernels/formats/gguf/blocks.ts";
import { writeAll, writeFileAtomically } from "./export.ts";

/** Element types the writer stores. */
export type SafetensorsWriteDtype = "F32" | "F16" | "BF16";

/** One tensor to write, row-major. */
export interface SafetensorsEntry {
  name: string;
  shape: readonly number[];
  data: Float32Array;
}

const BYTES: Record<SafetensorsWriteDtype, number> = { F32: 4, F16: 2, BF16: 2 };

function encode(data: Float32Array, dtype: SafetensorsWriteDtype): Uint8Array {
  const out = new Uint8Array(data.length * BYTES[dtype]);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) {
    if (dtype === "F32") view.setFloat32(4 * i, data[i]!, true);
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
    const size = n * BYTES[dtype];
    header[e.name] = { dtype, shape: e.shape, data_offsets: [offset, offset + size] };
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
    for (const e of entries) await writeAll(file, encode(e.data, dtype));
  });
}
