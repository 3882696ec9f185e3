/**
 * Lazy reader for safetensors files, the weight format of Hugging Face checkpoints: the header is
 * parsed on open and each tensor is read from its offset on demand, so loading a model never holds
 * more than one tensor's raw bytes beside the decoded weights.
 *
 * Layout (huggingface/safetensors README): u64 little-endian header length N, N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { string: string } }`,
 * then the data section; offsets are relative to its start.
 *
 * @module
 */
import { bf16ToF32, f16ToF32 } from "../../kernels/formats/gguf/numeric.ts";
import { didYouMean } from "../../core/registry.ts";
import {
  HeaderError,
  MissingTensorError,
  ModelFileError,
  ModelIoError,
  TensorRangeError,
  TruncatedFileError,
  UnknownDtypeError,
} from "./errors.ts";

/** Bytes per element of every dtype the safetensors format defines. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
  C64: 8,
};

/** Dtypes that load as float weights. */
export const FLOAT_DTYPES = ["F32", "F16", "BF16", "F64"] as const;

/** Headers longer than this are taken as corruption (real ones are well under 10 MiB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One tensor's entry in the header. */
export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: string;
  /** Row-major shape: the last dimension is contiguous (`[out][in]` for a linear weight). */
  readonly shape: readonly number[];
  readonly nElements: number;
  /** Absolute byte offset of the data in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

async function readAt(
  file: Deno.FsFile,
  path: string,
  offset: number,
  length: number,
  tensor?: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  try {
    await file.seek(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = await file.read(out.subarray(got));
      if (n === null) {
        throw new TruncatedFileError(
          path,
          `the file ended at byte ${offset + got} while reading ${length} bytes at ${offset}`,
          { tensor },
        );
      }
      got += n;
    }
  } catch (e) {
    if (e instanceof ModelFileError) throw e;
    throw new ModelIoError(path, `cannot read ${length} bytes at ${offset}`, { tensor, cause: e });
  }
  return out;
}

/** An open safetensors file: parsed header, tensor data read on demand. */
export class SafetensorsFile implements Disposable {
  readonly #byName: Map<string, SafetensorsTensorInfo>;
  #file: Deno.FsFile | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    file: Deno.FsFile,
    readonly fileSize: number,
    /** The `__metadata__` strings (empty when absent). */
    readonly metadata: Readonly<Record<string, string>>,
    /** Tensors in file order. */
    readonly tensors: readonly SafetensorsTensorInfo[],
  ) {
    this.#file = file;
    this.#byName = new Map(tensors.map((t) => [t.name, t]));
  }

  /** Whether the file holds a tensor with this name. */
  hasTensor(name: string): boolean {
    return this.#byName.has(name);
  }

  /** The tensor with this name; throws {@linkcode MissingTensorError} with a suggestion. */
  tensor(name: string): SafetensorsTensorInfo {
    const info = this.#byName.get(name);
    if (info !== undefined) return info;
    const guess = didYouMean(name, this.#byName.keys());
    throw new MissingTensorError(
      this.path,
      `no tensor named "${name}"${guess === undefined ? "" : `; did you mean "${guess}"?`}`,
    );
  }

  /** The tensor's raw little-endian bytes. */
  readTensorBytes(info: SafetensorsTensorInfo): Promise<Uint8Array> {
    const file = this.#file;
    if (file === undefined) {
      return Promise.reject(
        new ModelIoError(this.path, "the file is closed", { tensor: info.name }),
      );
    }
    const run = this.#queue.then(() =>
      readAt(file, this.path, info.offset, info.byteLength, info.name)
    );
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** The tensor as float32 (F32, F16, BF16 and F64 are exact or rounded once). */
  async readTensorF32(info: SafetensorsTensorInfo): Promise<Float32Array> {
    if (!(FLOAT_DTYPES as readonly string[]).includes(info.dtype)) {
      throw new UnknownDtypeError(
        this.path,
        `dtype ${info.dtype} cannot be loaded as weights (supported: ${FLOAT_DTYPES.join(", ")})`,
        { tensor: info.name },
      );
    }
    return decodeFloats(info.dtype, await this.readTensorBytes(info), info.nElements);
  }

  /** Closes the file; later reads fail with {@linkcode ModelIoError}. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Decodes `n` little-endian F32/F16/BF16/F64 values to float32. */
export function decodeFloats(dtype: string, bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case "F32":
      // A copy keeps the result aligned whatever the buffer's offset.
      new Uint8Array(out.buffer).set(bytes.subarray(0, 4 * n));
      if (!LITTLE_ENDIAN) { for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true); }
      break;
    case "F16":
      for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(2 * i, true));
      break;
    case "BF16":
      for (let i = 0; i < n; i++) out[i] = bf16ToF32(view.getUint16(2 * i, true));
      break;
    case "F64":
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      break;
    default:
      throw new RangeError(`Dtype ${dtype} is not a float dtype`);
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Validates the parsed header against the file size and returns tensor infos in file order. */
function parseHeader(
  path: string,
  header: unknown,
  dataStart: number,
  fileSize: number,
): { metadata: Record<string, string>; tensors: SafetensorsTensorInfo[] } {
  if (!isObject(header)) throw new HeaderError(path, "the header is not a JSON object");
  let metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  const dataSize = fileSize - dataStart;
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === "string")) {
        throw new HeaderError(path, `"__metadata__" must map strings to strings`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    if (!isObject(entry)) throw new HeaderError(path, "entry is not an object", { tensor: name });
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== "string") {
      throw new HeaderError(path, `dtype is ${JSON.stringify(dtype)}, not a string`, {
        tensor: name,
      });
    }
    const size = SAFETENSORS_DTYPE_BYTES[dtype];
    if (size === undefined) {
      throw new UnknownDtypeError(
        path,
        `unknown dtype "${dtype}" (known: ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")})`,
        { tensor: name },
      );
    }
    if (
      !Array.isArray(shape) || shape.length > 8 ||
      !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) {
      throw new HeaderError(path, `shape ${JSON.stringify(shape)} is not a list of sizes`, {
        tensor: name,
      });
    }
    const nElements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
    ) {
      throw new HeaderError(
        path,
        `data_offsets ${JSON.stringify(offsets)} is not a pair of byte offsets`,
        { tensor: name },
      );
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataSize) {
      throw new TensorRangeError(
        path,
        `data_offsets [${begin}, ${end}] lie outside the ${dataSize}-byte data section`,
        { tensor: name },
      );
    }
    if (!Number.isSafeInteger(nElements) || end - begin !== nElements * size) {
      throw new TensorRangeError(
        path,
        `data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but shape ` +
          `[${shape}] of ${dtype} needs ${nElements * size}`,
        { tensor: name },
      );
    }
    tensors.push({
      name,
      dtype,
      shape: shape as number[],
      nElements,
      offset: dataStart + begin,
      byteLength: end - begin,
    });
  }
  return { metadata, tensors };
}

/** Opens a safetensors file and parses its header (not the tensor data). */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new ModelIoError(path, `cannot open: ${(e as Error).message}`, { cause: e });
  }
  try {
    const size = (await file.stat()).size;
    if (size < 8) {
      throw new TruncatedFileError(path, `${size} bytes, too short for a safetensors header`);
    }
    const lengthBytes = await readAt(file, path, 0, 8);
    const n = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    if (n > BigInt(size - 8)) {
      throw new HeaderError(
        path,
        `header length ${n} lies beyond the end of the ${size}-byte file`,
      );
    }
    if (n > BigInt(MAX_HEADER_BYTES) || n < 2n) {
      throw new HeaderError(path, `header length ${n} is not plausible for a safetensors file`);
    }
    const raw = await readAt(file, path, 8, Number(n));
    if (raw[0] !== 0x7b) {
      throw new HeaderError(
        path,
        `not a safetensors file: the header starts with byte 0x${
          raw[0]!.toString(16).padStart(2, "0")
        }, not "{"`,
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
    } catch (e) {
      throw new HeaderError(path, `the header is not valid JSON (${(e as Error).message})`, {
        cause: e,
      });
    }
    const { metadata, tensors } = parseHeader(path, json, 8 + Number(n), size);
    return new SafetensorsFile(path, file, size, metadata, tensors);
  } catch (e) {
    file.close();
    if (e instanceof ModelFileError) throw e;
    throw new ModelIoError(path, `cannot read: ${(e as Error).message}`, { cause: e });
  }
}
