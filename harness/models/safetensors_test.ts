import assert from "node:assert/strict";
import { join } from "node:path";
import { openSafetensors } from "./safetensors.ts";
import {
  HeaderError,
  MissingTensorError,
  type ModelFileError,
  TensorRangeError,
  TruncatedFileError,
  UnknownDtypeError,
} from "./errors.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "quantbench-st-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A safetensors file with this header (JSON) and `dataBytes` zero bytes of data. */
async function safetensors(path: string, header: unknown, dataBytes: number): Promise<void> {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const bytes = new Uint8Array(8 + json.length + dataBytes);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(json, 8);
  await Deno.writeFile(path, bytes);
}

function named<E extends ModelFileError>(
  type: new (...args: never[]) => E,
  file: string,
  tensor?: string,
  pattern?: RegExp,
): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof type, `${(e as Error).name}: ${(e as Error).message}`);
    assert.equal(e.file, file);
    assert.equal(e.tensor, tensor);
    assert.ok(e.message.startsWith(file), e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

Deno.test("safetensors: headers, offsets and dtypes are named errors", async () => {
  await withTemp(async (dir) => {
    const p = join(dir, "m.safetensors");
    const w = { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] };
    await Deno.writeFile(p, new Uint8Array(5));
    await assert.rejects(openSafetensors(p), named(TruncatedFileError, p));
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 1000n, true);
    await Deno.writeFile(p, huge);
    await assert.rejects(
      openSafetensors(p),
      named(HeaderError, p, undefined, /header length 1000 lies beyond/),
    );
    await Deno.writeFile(p, new TextEncoder().encode("GGUF\x03\0\0\0\0\0\0\0\0\0\0\0"));
    await assert.rejects(openSafetensors(p), HeaderError);
    const wrongMagic = new Uint8Array(12);
    new DataView(wrongMagic.buffer).setBigUint64(0, 4n, true);
    wrongMagic.set(new TextEncoder().encode("GGUF"), 8);
    await Deno.writeFile(p, wrongMagic);
    await assert.rejects(
      openSafetensors(p),
      named(HeaderError, p, undefined, /not a safetensors file/),
    );
    await safetensors(p, { w }, 8);
    await assert.rejects(openSafetensors(p), named(TensorRangeError, p, "w", /outside the 8-byte/));
    await safetensors(p, { w: { ...w, data_offsets: [0, 12] } }, 16);
    await assert.rejects(openSafetensors(p), named(TensorRangeError, p, "w", /needs 16/));
    await safetensors(p, { w: { ...w, dtype: "F12" } }, 16);
    await assert.rejects(openSafetensors(p), named(UnknownDtypeError, p, "w", /"F12"/));
    await safetensors(p, { w: { ...w, dtype: "I32" } }, 16);
    using file = await openSafetensors(p);
    await assert.rejects(file.readTensorF32(file.tensor("w")), named(UnknownDtypeError, p, "w"));
    assert.throws(() => file.tensor("v"), named(MissingTensorError, p));
  });
});

Deno.test("safetensors: float dtypes decode to IEEE values", async () => {
  await withTemp(async (dir) => {
    const p = join(dir, "m.safetensors");
    // F16 0x3C00 = 1, 0xC000 = −2, 0x0001 = 2^−24; BF16 0x3F80 = 1, 0xC040 = −3.
    const header = {
      h: { dtype: "F16", shape: [3], data_offsets: [0, 6] },
      b: { dtype: "BF16", shape: [2], data_offsets: [6, 10] },
    };
    const json = new TextEncoder().encode(JSON.stringify(header));
    const bytes = new Uint8Array(8 + json.length + 10);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
    bytes.set(json, 8);
    bytes.set([0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x80, 0x3f, 0x40, 0xc0], 8 + json.length);
    await Deno.writeFile(p, bytes);
    using file = await openSafetensors(p);
    assert.deepEqual([...await file.readTensorF32(file.tensor("h"))], [1, -2, 2 ** -24]);
    assert.deepEqual([...await file.readTensorF32(file.tensor("b"))], [1, -3]);
  });
});
