/**
 * Reads GGUF files (versions 2 and 3, little-endian), the format llama.cpp writes: the header
 * and metadata are parsed on open, tensor data is read on demand at its offset, so opening a
 * multi-gigabyte model costs only its metadata. Every length in the file is checked against the
 * file size before anything is allocated, and every problem is a named {@linkcode GgufError}
 * that names the file (and the tensor when there is one).
 *
 * Layout (ggml docs/gguf.md): magic "GGUF", u32 version, u64 tensor count, u64 metadata count,
 * metadata (string key, u32 value type, value), tensor infos (name, u32 n_dims, u64 ne[n_dims],
 * u32 ggml type, u64 offset), padding to `general.alignment` (default 32), tensor data.
 * Strings are a u64 byte length plus UTF-8 bytes; arrays a u32 element type, u64 count, elements.
 *
 * @example
 * ```ts
 * const gguf = await openGguf("model.gguf");
 * const dim = gguf.getNumber("llama.embedding_length");
 * const wq = await gguf.readTensorF32(gguf.tensor("blk.0.attn_q.weight")); // ne[0] fastest
 * gguf.close();
 * ```
 *
 * @module
 */
import { didYouMean } from "../../../core/registry.ts";
import {
  decodeTensor,
  type GgmlType,
  ggmlTypeById,
  GgmlUnsupportedTypeError,
} from "../../../kernels/formats/gguf/blocks.ts";

/** A metadata value: 64-bit integers are bigints, arrays may nest. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** One tensor's entry in the file. */
export interface GgufTensorInfo {
  readonly name: string;
  /** Dimensions in ggml order: `shape[0]` (ne[0]) is contiguous, so a matrix is `[cols, rows]`. */
  readonly shape: readonly number[];
  /** ggml type name (`F32`, `Q4_K`, …). */
  readonly typeName: string;
  readonly type: GgmlType;
  readonly nElements: number;
  /** Bytes of tensor data (whole blocks). */
  readonly byteSize: number;
  /** Absolute byte offset of the data in the file. */
  readonly offset: number;
}

/** Anything wrong with a GGUF file; `path` names it and `tensor` the tensor concerned. */
export class GgufError extends Error {
  override name = "GgufError";
  constructor(
    readonly path: string,
    message: string,
    options?: { tensor?: string; cause?: unknown },
  ) {
    super(
      `${path}: ${options?.tensor === undefined ? "" : `tensor "${options.tensor}": `}${message}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.tensor = options?.tensor;
  }
  readonly tensor: string | undefined;
}

/** The file could not be opened or read. */
export class GgufIoError extends GgufError {
  override name = "GgufIoError";
}
/** The file does not start with "GGUF". */
export class GgufMagicError extends GgufError {
  override name = "GgufMagicError";
}
/** A GGUF version other than 2 or 3, or a big-endian file. */
export class GgufVersionError extends GgufError {
  override name = "GgufVersionError";
}
/** The file ends before a structure it declares. */
export class GgufTruncatedError extends GgufError {
  override name = "GgufTruncatedError";
}
/** A count or length that cannot fit in the file, or is beyond any sane size. */
export class GgufLengthError extends GgufError {
  override name = "GgufLengthError";
}
/** A structural problem: unknown value type, duplicate key or tensor, bad alignment, …. */
export class GgufFormatError extends GgufError {
  override name = "GgufFormatError";
}
/** A tensor type id that ggml does not define. */
export class GgufUnknownTensorTypeError extends GgufError {
  override name = "GgufUnknownTensorTypeError";
}
/** A tensor whose rows are not a whole number of its type's blocks. */
export class GgufShapeError extends GgufError {
  override name = "GgufShapeError";
}
/** A tensor whose data lies outside the data section or is misaligned. */
export class GgufTensorRangeError extends GgufError {
  override name = "GgufTensorRangeError";
}
/** A known tensor type that quantbench cannot decode. */
export class GgufUnsupportedTypeError extends GgufError {
  override name = "GgufUnsupportedTypeError";
}
/** A metadata key that is missing or holds another type than asked for. */
export class GgufMetadataError extends GgufError {
  override name = "GgufMetadataError";
}
/** A tensor name that the file does not contain. */
export class GgufMissingTensorError extends GgufError {
  override name = "GgufMissingTensorError";
}

const GGUF_MAGIC = "GGUF";
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;
/** Longer strings are taken as corruption rather than allocated (chat templates are ~10 KiB). */
const MAX_STRING_BYTES = 64 * 1024 * 1024;
/** Arrays nested deeper than this are taken as corruption (real files nest at most once). */
const MAX_ARRAY_DEPTH = 8;
const DEFAULT_ALIGNMENT = 32;
/** Bytes read per refill while parsing the header. */
const CHUNK = 1 << 20;

/** GGUF metadata value types (gguf_type). */
const VALUE_TYPES = [
  "uint8",
  "int8",
  "uint16",
  "int16",
  "uint32",
  "int32",
  "float32",
  "bool",
  "string",
  "array",
  "uint64",
  "int64",
  "float64",
] as const;
const STRING = 8;
const ARRAY = 9;
/** Fixed byte size per value type; strings and arrays give their minimum (the length fields). */
const VALUE_SIZES = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];

async function readExactly(
  file: Deno.FsFile,
  path: string,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  try {
    await file.seek(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = await file.read(out.subarray(got));
      if (n === null) {
        throw new GgufTruncatedError(
          path,
          `the file ended at byte ${offset + got} while reading ${length} bytes at ${offset}`,
        );
      }
      got += n;
    }
  } catch (e) {
    if (e instanceof GgufError) throw e;
    throw new GgufIoError(path, `cannot read ${length} bytes at offset ${offset}`, { cause: e });
  }
  return out;
}

/** Sequential little-endian reads over a window of the file that refills on demand. */
class Cursor {
  pos = 0;
  #buf: Uint8Array = new Uint8Array(0);
  #view: DataView = new DataView(new ArrayBuffer(0));
  #start = 0;
  readonly #decoder = new TextDecoder();

  constructor(readonly file: Deno.FsFile, readonly size: number, readonly path: string) {}

  get remaining(): number {
    return this.size - this.pos;
  }

  /** Makes `n` bytes at the position readable, or throws if the file is shorter. */
  async need(n: number, what: string): Promise<void> {
    if (n > this.remaining) {
      throw new GgufTruncatedError(
        this.path,
        `${what} at byte ${this.pos} needs ${n} bytes but the file ends at byte ${this.size}`,
      );
    }
    const at = this.pos - this.#start;
    if (at >= 0 && at + n <= this.#buf.length) return;
    const length = Math.min(Math.max(n, CHUNK), this.remaining);
    this.#buf = await readExactly(this.file, this.path, this.pos, length);
    this.#view = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
    this.#start = this.pos;
  }

  #advance(n: number): number {
    const at = this.pos - this.#start;
    this.pos += n;
    return at;
  }

  u32(): number {
    return this.#view.getUint32(this.#advance(4), true);
  }
  u64(): bigint {
    return this.#view.getBigUint64(this.#advance(8), true);
  }
  bytes(n: number): Uint8Array {
    const at = this.#advance(n);
    return this.#buf.subarray(at, at + n);
  }

  /** Reads one scalar of a fixed-size value type (after `need`). */
  scalar(type: number): number | bigint | boolean {
    const v = this.#view;
    switch (type) {
      case 0:
        return v.getUint8(this.#advance(1));
      case 1:
        return v.getInt8(this.#advance(1));
      case 2:
        return v.getUint16(this.#advance(2), true);
      case 3:
        return v.getInt16(this.#advance(2), true);
      case 4:
        return v.getUint32(this.#advance(4), true);
      case 5:
        return v.getInt32(this.#advance(4), true);
      case 6:
        return v.getFloat32(this.#advance(4), true);
      case 7:
        return v.getUint8(this.#advance(1)) !== 0;
      case 10:
        return v.getBigUint64(this.#advance(8), true);
      case 11:
        return v.getBigInt64(this.#advance(8), true);
      default:
        return v.getFloat64(this.#advance(8), true);
    }
  }

  /** A count field, checked so that `count` items of at least `minSize` bytes fit in the file. */
  async count(what: string, minSize: number): Promise<number> {
    await this.need(8, what);
    const at = this.pos;
    const n = this.u64();
    if (n * BigInt(minSize) > BigInt(this.remaining)) {
      throw new GgufLengthError(
        this.path,
        `${what} ${n} at byte ${at} cannot fit in the ${this.remaining} bytes left in the file`,
      );
    }
    return Number(n);
  }

  /**
   * The next string if it lies wholly in the window and within limits, else undefined (and
   * nothing consumed): lets long string arrays parse without a promise per element.
   */
  bufferedString(): string | undefined {
    const at = this.pos - this.#start;
    if (at < 0 || at + 8 > this.#buf.length) return undefined;
    const n = this.#view.getBigUint64(at, true);
    if (n > BigInt(this.#buf.length - at - 8) || n > BigInt(MAX_STRING_BYTES)) return undefined;
    this.pos += 8;
    return this.#decoder.decode(this.bytes(Number(n)));
  }

  async string(what: string): Promise<string> {
    await this.need(8, what);
    const at = this.pos;
    const n = this.u64();
    if (n > BigInt(this.remaining) || n > BigInt(MAX_STRING_BYTES)) {
      throw new GgufLengthError(
        this.path,
        `${what} at byte ${at} claims ${n} bytes` +
          (n > BigInt(this.remaining)
            ? ` but only ${this.remaining} remain in the file`
            : ` (more than the ${MAX_STRING_BYTES}-byte limit)`),
      );
    }
    await this.need(Number(n), what);
    return this.#decoder.decode(this.bytes(Number(n)));
  }
}

function typeName(type: number): string {
  return VALUE_TYPES[type] ?? `type ${type}`;
}

/** Reads one metadata value of `type`; returns it and its type descriptor (`array<string>`). */
async function readValue(
  cur: Cursor,
  type: number,
  key: string,
  depth: number,
): Promise<[GgufValue, string]> {
  if (!Number.isInteger(type) || type < 0 || type >= VALUE_TYPES.length) {
    throw new GgufFormatError(cur.path, `metadata "${key}" has unknown value type ${type}`);
  }
  if (type === STRING) return [await cur.string(`string value of "${key}"`), "string"];
  if (type !== ARRAY) {
    await cur.need(VALUE_SIZES[type]!, `value of "${key}"`);
    return [cur.scalar(type), typeName(type)];
  }
  if (depth >= MAX_ARRAY_DEPTH) {
    throw new GgufFormatError(cur.path, `metadata "${key}" nests arrays deeper than ${depth}`);
  }
  await cur.need(4, `array type of "${key}"`);
  const elementType = cur.u32();
  if (elementType >= VALUE_TYPES.length) {
    throw new GgufFormatError(
      cur.path,
      `metadata "${key}" is an array of unknown value type ${elementType}`,
    );
  }
  const n = await cur.count(`array length of "${key}"`, VALUE_SIZES[elementType]!);
  const values: GgufValue[] = new Array(n);
  let descriptor = `array<${typeName(elementType)}>`;
  if (elementType === STRING) {
    for (let i = 0; i < n; i++) {
      values[i] = cur.bufferedString() ?? await cur.string(`element ${i} of "${key}"`);
    }
  } else if (elementType === ARRAY) {
    for (let i = 0; i < n; i++) {
      const [value, inner] = await readValue(cur, ARRAY, key, depth + 1);
      values[i] = value;
      descriptor = `array<${inner}>`;
    }
  } else {
    await cur.need(n * VALUE_SIZES[elementType]!, `array "${key}"`);
    for (let i = 0; i < n; i++) values[i] = cur.scalar(elementType);
  }
  return [values, descriptor];
}

/** An open GGUF file: parsed metadata and tensor infos, tensor data read on demand. */
export class GgufFile implements Disposable {
  readonly #byName: Map<string, GgufTensorInfo>;
  #file: Deno.FsFile | undefined;
  /** Serialises seek + read pairs on the shared handle. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    file: Deno.FsFile,
    readonly version: number,
    readonly fileSize: number,
    /** Metadata values by key, in file order. */
    readonly metadata: Map<string, GgufValue>,
    /** Declared type of each metadata value: `uint32`, `string`, `array<float32>`, …. */
    readonly metadataTypes: Map<string, string>,
    readonly tensors: readonly GgufTensorInfo[],
    /** `general.alignment`, or 32. */
    readonly alignment: number,
    /** Absolute offset where tensor data starts. */
    readonly dataOffset: number,
  ) {
    this.#file = file;
    this.#byName = new Map(tensors.map((t) => [t.name, t]));
  }

  /** The tensor with this name; throws {@linkcode GgufMissingTensorError} with a suggestion. */
  tensor(name: string): GgufTensorInfo {
    const info = this.#byName.get(name);
    if (info !== undefined) return info;
    const guess = didYouMean(name, this.#byName.keys());
    throw new GgufMissingTensorError(
      this.path,
      `no tensor named "${name}"${guess === undefined ? "" : `; did you mean "${guess}"?`}`,
    );
  }

  /** Whether the file has a tensor with this name. */
  hasTensor(name: string): boolean {
    return this.#byName.has(name);
  }

  #value(key: string): GgufValue {
    const value = this.metadata.get(key);
    if (value === undefined) throw new GgufMetadataError(this.path, `missing metadata "${key}"`);
    return value;
  }

  #wrongType(key: string, wanted: string): GgufMetadataError {
    return new GgufMetadataError(
      this.path,
      `metadata "${key}" is ${this.metadataTypes.get(key)}, not ${wanted}`,
    );
  }

  /**
   * A numeric metadata value as a number (64-bit integers must be exactly representable);
   * `fallback` is returned when the key is absent.
   */
  getNumber(key: string, fallback?: number): number {
    if (fallback !== undefined && !this.metadata.has(key)) return fallback;
    const value = this.#value(key);
    if (typeof value === "number") return value;
    if (typeof value === "bigint") {
      const n = Number(value);
      if (Number.isSafeInteger(n)) return n;
      throw new GgufMetadataError(this.path, `metadata "${key}" = ${value} exceeds 2^53`);
    }
    throw this.#wrongType(key, "a number");
  }

  /** A string metadata value; `fallback` is returned when the key is absent. */
  getString(key: string, fallback?: string): string {
    if (fallback !== undefined && !this.metadata.has(key)) return fallback;
    const value = this.#value(key);
    if (typeof value === "string") return value;
    throw this.#wrongType(key, "a string");
  }

  /** A boolean metadata value; `fallback` is returned when the key is absent. */
  getBoolean(key: string, fallback?: boolean): boolean {
    if (fallback !== undefined && !this.metadata.has(key)) return fallback;
    const value = this.#value(key);
    if (typeof value === "boolean") return value;
    throw this.#wrongType(key, "a boolean");
  }

  /** An array of strings (e.g. `tokenizer.ggml.tokens`). */
  getStringArray(key: string): string[] {
    const value = this.#value(key);
    if (Array.isArray(value) && value.every((v) => typeof v === "string")) {
      return value as string[];
    }
    throw this.#wrongType(key, "an array of strings");
  }

  /** An array of numbers (e.g. `tokenizer.ggml.scores`); 64-bit entries must fit 2^53. */
  getNumberArray(key: string): number[] {
    const value = this.#value(key);
    if (Array.isArray(value)) {
      const out: number[] = new Array(value.length);
      let ok = true;
      for (let i = 0; i < value.length && ok; i++) {
        const v = value[i];
        if (typeof v === "number") out[i] = v;
        else if (typeof v === "bigint" && Number.isSafeInteger(Number(v))) out[i] = Number(v);
        else ok = false;
      }
      if (ok) return out;
    }
    throw this.#wrongType(key, "an array of numbers");
  }

  /** Raw bytes of a tensor's data, exactly `info.byteSize` long. */
  readTensorBytes(info: GgufTensorInfo): Promise<Uint8Array> {
    const file = this.#file;
    if (file === undefined) {
      return Promise.reject(
        new GgufIoError(this.path, "the file is closed", { tensor: info.name }),
      );
    }
    if (info.offset < this.dataOffset || info.offset + info.byteSize > this.fileSize) {
      return Promise.reject(
        new GgufTensorRangeError(
          this.path,
          `bytes ${info.offset}..${info.offset + info.byteSize} lie outside the data section`,
          { tensor: info.name },
        ),
      );
    }
    const run = this.#queue.then(() => readExactly(file, this.path, info.offset, info.byteSize));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** A tensor's values as float32, decoded bit for bit as ggml's `dequantize_row_*`. */
  async readTensorF32(info: GgufTensorInfo): Promise<Float32Array> {
    const bytes = await this.readTensorBytes(info);
    try {
      return decodeTensor(info.type, bytes, info.nElements);
    } catch (e) {
      if (e instanceof GgmlUnsupportedTypeError) {
        throw new GgufUnsupportedTypeError(this.path, e.message, { tensor: info.name, cause: e });
      }
      throw e;
    }
  }

  /** Closes the file handle; later reads fail with {@linkcode GgufIoError}. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function describeMagic(bytes: Uint8Array): string {
  const printable = [...bytes].every((b) => b >= 0x20 && b < 0x7f);
  return printable
    ? `"${String.fromCharCode(...bytes)}"`
    : `0x${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

async function parse(cur: Cursor): Promise<GgufFile> {
  const path = cur.path;
  await cur.need(4, "magic");
  const magic = cur.bytes(4);
  if (String.fromCharCode(...magic) !== GGUF_MAGIC) {
    throw new GgufMagicError(
      path,
      `not a GGUF file: it starts with ${describeMagic(magic)}, not "GGUF"`,
    );
  }
  await cur.need(4, "version");
  const version = cur.u32();
  if (version !== 2 && version !== 3) {
    const hint = version === 1
      ? " (GGUF v1 predates 64-bit counts; re-convert with a current llama.cpp)"
      : (version & 0xffff) === 0
      ? " (this looks like a big-endian file, which quantbench does not read)"
      : "";
    throw new GgufVersionError(
      path,
      `unsupported GGUF version ${version}; versions 2 and 3 are read${hint}`,
    );
  }
  // Minimum encoded sizes: a tensor info is name length + n_dims + type + offset (24 bytes);
  // a metadata pair is key length + value type + a 1-byte value (13 bytes).
  const nTensors = await cur.count("tensor count", 24);
  const nKv = await cur.count("metadata count", 13);

  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, string>();
  for (let i = 0; i < nKv; i++) {
    const key = await cur.string(`key of metadata entry ${i}`);
    if (metadata.has(key)) throw new GgufFormatError(path, `duplicate metadata key "${key}"`);
    await cur.need(4, `value type of "${key}"`);
    const [value, descriptor] = await readValue(cur, cur.u32(), key, 0);
    metadata.set(key, value);
    metadataTypes.set(key, descriptor);
  }

  let alignment = DEFAULT_ALIGNMENT;
  if (metadata.has("general.alignment")) {
    const value = metadata.get("general.alignment");
    if (metadataTypes.get("general.alignment") !== "uint32" || typeof value !== "number") {
      throw new GgufFormatError(
        path,
        `"general.alignment" must be uint32, got ${metadataTypes.get("general.alignment")}`,
      );
    }
    if (value === 0 || (value & (value - 1)) !== 0) {
      throw new GgufFormatError(path, `"general.alignment" ${value} is not a power of two`);
    }
    alignment = value;
  }

  const raw: { name: string; shape: number[]; type: GgmlType; nElements: number; rel: bigint }[] =
    [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = await cur.string(`name of tensor ${i}`);
    if (names.has(name)) throw new GgufFormatError(path, `duplicate tensor name "${name}"`);
    names.add(name);
    await cur.need(4, `dimension count of tensor "${name}"`);
    const nDims = cur.u32();
    if (nDims > MAX_DIMS) {
      throw new GgufFormatError(path, `${nDims} dimensions, more than ggml's ${MAX_DIMS}`, {
        tensor: name,
      });
    }
    await cur.need(8 * nDims + 12, `info of tensor "${name}"`);
    const shape: number[] = [];
    let nElements = 1;
    for (let d = 0; d < nDims; d++) {
      const ne = cur.u64();
      if (ne > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new GgufLengthError(path, `dimension ${d} is ${ne}, beyond 2^53`, { tensor: name });
      }
      shape.push(Number(ne));
      nElements *= Number(ne);
    }
    if (!Number.isSafeInteger(nElements)) {
      throw new GgufLengthError(path, `shape [${shape}] has more than 2^53 elements`, {
        tensor: name,
      });
    }
    const typeId = cur.u32();
    const type = ggmlTypeById(typeId);
    if (type === undefined) {
      throw new GgufUnknownTensorTypeError(path, `unknown ggml tensor type id ${typeId}`, {
        tensor: name,
      });
    }
    const rowLength = shape[0] ?? 1;
    if (rowLength % type.blockSize !== 0) {
      throw new GgufShapeError(
        path,
        `ne[0] = ${rowLength} (shape [${shape}]) is not a multiple of ${type.name}'s block size ` +
          `${type.blockSize}`,
        { tensor: name },
      );
    }
    raw.push({ name, shape, type, nElements, rel: cur.u64() });
  }

  const dataOffset = Math.ceil(cur.pos / alignment) * alignment;
  const dataSize = cur.size - dataOffset;
  const tensors: GgufTensorInfo[] = raw.map(({ name, shape, type, nElements, rel }) => {
    const byteSize = (nElements / type.blockSize) * type.typeSize;
    if (rel % BigInt(alignment) !== 0n) {
      throw new GgufTensorRangeError(
        path,
        `data offset ${rel} is not a multiple of the alignment ${alignment}`,
        { tensor: name },
      );
    }
    if (rel + BigInt(byteSize) > BigInt(Math.max(0, dataSize))) {
      throw new GgufTensorRangeError(
        path,
        `data bytes ${rel}..${rel + BigInt(byteSize)} of the data section lie beyond its end ` +
          `(${Math.max(0, dataSize)} bytes from offset ${dataOffset})`,
        { tensor: name },
      );
    }
    return {
      name,
      shape,
      typeName: type.name,
      type,
      nElements,
      byteSize,
      offset: dataOffset + Number(rel),
    };
  });

  return new GgufFile(
    path,
    cur.file,
    version,
    cur.size,
    metadata,
    metadataTypes,
    tensors,
    alignment,
    dataOffset,
  );
}

/** Opens a GGUF file and parses its header, metadata and tensor infos (not the tensor data). */
export async function openGguf(path: string): Promise<GgufFile> {
  let file: Deno.FsFile;
  let size: number;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new GgufIoError(path, `cannot open: ${(e as Error).message}`, { cause: e });
  }
  try {
    size = (await file.stat()).size;
    return await parse(new Cursor(file, size, path));
  } catch (e) {
    file.close();
    if (e instanceof GgufError) throw e;
    throw new GgufIoError(path, `cannot read: ${(e as Error).message}`, { cause: e });
  }
}
