import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../../core/shared.ts";
import {
  GgufError,
  GgufFormatError,
  GgufIoError,
  GgufLengthError,
  GgufMagicError,
  GgufMetadataError,
  GgufMissingTensorError,
  GgufShapeError,
  GgufTensorRangeError,
  GgufTruncatedError,
  GgufUnknownTensorTypeError,
  GgufUnsupportedTypeError,
  GgufVersionError,
  openGguf,
} from "./reader.ts";

// ---------------------------------------------------------------------------------------------
// A minimal GGUF writer for synthetic files, written from ggml's docs/gguf.md (not from reader.ts).

type Value =
  | { type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64"; value: number }
  | { type: "u64" | "i64"; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; element: number; items: Value[] };

const TYPE_IDS = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
};

class Writer {
  bytes: number[] = [];
  #view = new DataView(new ArrayBuffer(8));
  #push(n: number) {
    for (let i = 0; i < n; i++) this.bytes.push(this.#view.getUint8(i));
  }
  u32(v: number) {
    this.#view.setUint32(0, v, true);
    this.#push(4);
  }
  u64(v: bigint | number) {
    this.#view.setBigUint64(0, BigInt(v), true);
    this.#push(8);
  }
  str(s: string) {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes.push(...b);
  }
  value(v: Value) {
    const d = this.#view;
    switch (v.type) {
      case "u8":
        return this.bytes.push(v.value & 0xff);
      case "i8":
        return this.bytes.push(v.value & 0xff);
      case "bool":
        return this.bytes.push(v.value ? 1 : 0);
      case "u16":
      case "i16":
        d.setUint16(0, v.value & 0xffff, true);
        return this.#push(2);
      case "u32":
        return this.u32(v.value >>> 0);
      case "i32":
        d.setInt32(0, v.value, true);
        return this.#push(4);
      case "f32":
        d.setFloat32(0, v.value, true);
        return this.#push(4);
      case "f64":
        d.setFloat64(0, v.value, true);
        return this.#push(8);
      case "u64":
        return this.u64(v.value);
      case "i64":
        d.setBigInt64(0, v.value, true);
        return this.#push(8);
      case "string":
        return this.str(v.value);
      case "array":
        this.u32(v.element);
        this.u64(v.items.length);
        for (const item of v.items) this.value(item);
    }
  }
}

interface TensorSpec {
  name: string;
  shape: number[];
  type: number;
  data: Uint8Array;
}

/** A GGUF v3 file: metadata, tensor infos, padding to `alignment`, tensor data. */
function buildGguf(kv: [string, Value][], tensors: TensorSpec[], alignment = 32): Uint8Array {
  const w = new Writer();
  w.bytes.push(..."GGUF".split("").map((c) => c.charCodeAt(0)));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [key, value] of kv) {
    w.str(key);
    w.u32(TYPE_IDS[value.type]);
    w.value(value);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.shape.length);
    for (const ne of t.shape) w.u64(ne);
    w.u32(t.type);
    w.u64(offset);
    offsets.push(offset);
    offset = Math.ceil((offset + t.data.length) / alignment) * alignment;
  }
  const dataStart = Math.ceil(w.bytes.length / alignment) * alignment;
  const out = new Uint8Array(dataStart + offset);
  out.set(w.bytes);
  tensors.forEach((t, i) => out.set(t.data, dataStart + offsets[i]!));
  return out;
}

async function withTempFile<T>(bytes: Uint8Array, fn: (path: string) => Promise<T>): Promise<T> {
  const path = await Deno.makeTempFile({ suffix: ".gguf" });
  try {
    await Deno.writeFile(path, bytes);
    return await fn(path);
  } finally {
    await Deno.remove(path);
  }
}

/** Asserts that opening (and, if it opens, reading every tensor of) `bytes` fails with `kind`. */
async function assertRejects(
  bytes: Uint8Array,
  kind: (new (...args: never[]) => GgufError) | (new (...args: never[]) => GgufError)[],
  pattern: RegExp,
): Promise<void> {
  const kinds = Array.isArray(kind) ? kind : [kind];
  await withTempFile(bytes, async (path) => {
    let error: unknown;
    try {
      const file = await openGguf(path);
      try {
        for (const t of file.tensors) await file.readTensorF32(t);
      } finally {
        file.close();
      }
    } catch (e) {
      error = e;
    }
    assert.ok(
      error instanceof GgufError && kinds.some((k) => error instanceof k),
      `expected ${kinds.map((k) => k.name)}, got ${error}`,
    );
    assert.ok(error.message.startsWith(`${path}: `), error.message);
    assert.match(error.message, pattern);
  });
}

const f32Bytes = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);

// ---------------------------------------------------------------------------------------------

Deno.test("every metadata value type parses, including nested arrays and 64-bit integers", async () => {
  const kv: [string, Value][] = [
    ["t.u8", { type: "u8", value: 200 }],
    ["t.i8", { type: "i8", value: -100 }],
    ["t.u16", { type: "u16", value: 60000 }],
    ["t.i16", { type: "i16", value: -30000 }],
    ["t.u32", { type: "u32", value: 4000000000 }],
    ["t.i32", { type: "i32", value: -2000000000 }],
    ["t.f32", { type: "f32", value: 0.1 }],
    ["t.bool", { type: "bool", value: true }],
    ["t.string", { type: "string", value: "héllo ✓" }],
    ["t.u64", { type: "u64", value: 2n ** 63n + 5n }],
    ["t.i64", { type: "i64", value: -(2n ** 40n) }],
    ["t.f64", { type: "f64", value: 1e300 }],
    ["t.small_u64", { type: "u64", value: 4096n }],
    ["t.strings", {
      type: "array",
      element: 8,
      items: [{ type: "string", value: "a" }, { type: "string", value: "" }],
    }],
    ["t.floats", {
      type: "array",
      element: 6,
      items: [{ type: "f32", value: 1.5 }, { type: "f32", value: -2 }],
    }],
    ["t.empty", { type: "array", element: 4, items: [] }],
    ["t.nested", {
      type: "array",
      element: 9,
      items: [
        {
          type: "array",
          element: 5,
          items: [{ type: "i32", value: 1 }, { type: "i32", value: -2 }],
        },
        { type: "array", element: 5, items: [] },
      ],
    }],
  ];
  await withTempFile(buildGguf(kv, []), async (path) => {
    using file = await openGguf(path);
    const m = file.metadata;
    assert.equal(file.version, 3);
    assert.deepEqual([m.get("t.u8"), m.get("t.i8"), m.get("t.u16"), m.get("t.i16")], [
      200,
      -100,
      60000,
      -30000,
    ]);
    assert.deepEqual([m.get("t.u32"), m.get("t.i32")], [4000000000, -2000000000]);
    assert.equal(m.get("t.f32"), Math.fround(0.1));
    assert.equal(m.get("t.bool"), true);
    assert.equal(m.get("t.string"), "héllo ✓");
    assert.equal(m.get("t.u64"), 2n ** 63n + 5n);
    assert.equal(m.get("t.i64"), -(2n ** 40n));
    assert.equal(m.get("t.f64"), 1e300);
    assert.deepEqual(m.get("t.strings"), ["a", ""]);
    assert.deepEqual(m.get("t.floats"), [1.5, -2]);
    assert.deepEqual(m.get("t.empty"), []);
    assert.deepEqual(m.get("t.nested"), [[1, -2], []]);
    assert.equal(file.metadataTypes.get("t.floats"), "array<float32>");
    assert.equal(file.metadataTypes.get("t.nested"), "array<array<int32>>");
    assert.equal(file.metadataTypes.get("t.i64"), "int64");
    // Typed accessors.
    assert.equal(file.getNumber("t.small_u64"), 4096);
    assert.equal(file.getNumber("t.missing", 7), 7);
    assert.equal(file.getString("t.string"), "héllo ✓");
    assert.equal(file.getBoolean("t.bool"), true);
    assert.deepEqual(file.getStringArray("t.strings"), ["a", ""]);
    assert.deepEqual(file.getNumberArray("t.floats"), [1.5, -2]);
    assert.throws(() => file.getNumber("t.u64"), GgufMetadataError);
    assert.throws(() => file.getNumber("t.string"), /"t\.string" is string, not a number/);
    assert.throws(() => file.getString("t.absent"), /missing metadata "t\.absent"/);
    assert.throws(() => file.getStringArray("t.floats"), GgufMetadataError);
    assert.equal(file.alignment, 32);
    assert.deepEqual(file.tensors, []);
  });
});

Deno.test("tensor infos, general.alignment and data offsets follow the file", async () => {
  const q80 = new Uint8Array(34);
  q80.set([0x00, 0x3c]); // d = 1
  for (let j = 0; j < 32; j++) q80[2 + j] = (j - 16) & 0xff;
  const tensors: TensorSpec[] = [
    { name: "a", shape: [3, 2], type: 0, data: f32Bytes([1, 2, 3, 4, 5, 6]) },
    { name: "b.weight", shape: [32], type: 8, data: q80 },
    { name: "c", shape: [256], type: 16, data: new Uint8Array(66) }, // IQ2_XXS: no decoder
  ];
  const kv: [string, Value][] = [["general.alignment", { type: "u32", value: 64 }]];
  await withTempFile(buildGguf(kv, tensors, 64), async (path) => {
    using file = await openGguf(path);
    assert.equal(file.alignment, 64);
    assert.equal(file.dataOffset % 64, 0);
    assert.deepEqual(file.tensors.map((t) => [t.name, t.shape, t.typeName, t.byteSize]), [
      ["a", [3, 2], "F32", 24],
      ["b.weight", [32], "Q8_0", 34],
      ["c", [256], "IQ2_XXS", 66],
    ]);
    assert.deepEqual(file.tensors.map((t) => t.offset - file.dataOffset), [0, 64, 128]);
    assert.deepEqual([...await file.readTensorF32(file.tensor("a"))], [1, 2, 3, 4, 5, 6]);
    const b = await file.readTensorF32(file.tensor("b.weight"));
    assert.deepEqual([...b], Array.from({ length: 32 }, (_, j) => j - 16));
    assert.equal((await file.readTensorBytes(file.tensor("c"))).length, 66);
    await assert.rejects(() => file.readTensorF32(file.tensor("c")), (e) => {
      assert.ok(e instanceof GgufUnsupportedTypeError);
      assert.equal(e.tensor, "c");
      assert.match(e.message, /tensor "c": ggml type IQ2_XXS has no decoder/);
      return true;
    });
    assert.throws(() => file.tensor("b.weigth"), (e) => {
      assert.ok(e instanceof GgufMissingTensorError);
      assert.match(e.message, /did you mean "b\.weight"\?/);
      return true;
    });
    // Concurrent reads share one handle and must not interleave their seeks.
    const all = await Promise.all(
      [0, 1, 2, 0, 1].map((i) => file.readTensorBytes(file.tensors[i]!)),
    );
    assert.deepEqual(all.map((x) => x.length), [24, 34, 66, 24, 34]);
    assert.deepEqual(all[3], all[0]);
    file.close();
    await assert.rejects(() => file.readTensorBytes(file.tensors[0]!), GgufIoError);
  });
});

Deno.test("tensor data beyond 4 GiB is addressed exactly without reading the file", async () => {
  const gap = 2 ** 32 + 64; // a sparse file: the bytes before the tensor are never read
  const w = buildGguf([], [{ name: "far", shape: [4], type: 0, data: f32Bytes([0, 0, 0, 0]) }]);
  // Point the only tensor's offset field (after name "far", n_dims, ne[0], type) at `gap`.
  const fieldAt = 24 + 8 + 3 + 4 + 8 + 4;
  new DataView(w.buffer).setBigUint64(fieldAt, BigInt(gap), true);
  const path = await Deno.makeTempFile({ suffix: ".gguf" });
  try {
    await Deno.writeFile(path, w.subarray(0, w.length - 16));
    const dataOffset = Math.ceil((fieldAt + 8) / 32) * 32;
    await Deno.truncate(path, dataOffset + gap + 16);
    using file = await openGguf(path);
    const far = file.tensor("far");
    assert.equal(far.offset, dataOffset + gap);
    assert.deepEqual([...await file.readTensorF32(far)], [0, 0, 0, 0]);
  } finally {
    await Deno.remove(path);
  }
});

// ---------------------------------------------------------------------------------------------
// Corrupt input.

const STORIES = "models/stories260K/gguf";

Deno.test("bad magic, versions and truncation raise named errors that name the file", async () => {
  const good = buildGguf(
    [["general.name", { type: "string", value: "x" }]],
    [{ name: "w", shape: [4], type: 0, data: f32Bytes([1, 2, 3, 4]) }],
  );
  const mutate = (at: number, bytes: number[]) => {
    const copy = good.slice();
    copy.set(bytes, at);
    return copy;
  };
  await assertRejects(mutate(0, [0x47, 0x47, 0x4d, 0x4c]), GgufMagicError, /starts with "GGML"/);
  await assertRejects(mutate(0, [0, 1, 2, 3]), GgufMagicError, /0x00010203/);
  await assertRejects(mutate(4, [1, 0, 0, 0]), GgufVersionError, /version 1;.*re-convert/);
  await assertRejects(mutate(4, [0, 0, 0, 3]), GgufVersionError, /big-endian/);
  await assertRejects(mutate(4, [4, 0, 0, 0]), GgufVersionError, /unsupported GGUF version 4/);
  await assertRejects(good.slice(0, 2), GgufTruncatedError, /magic at byte 0 needs 4 bytes/);
  // A cut file fails where a read runs out, or earlier where a count cannot fit what is left.
  for (const cut of [6, 12, 30, 40, 60, 80]) {
    await assertRejects(
      good.slice(0, cut),
      [GgufTruncatedError, GgufLengthError],
      /the file ends at byte|left in the file|remain in the file/,
    );
  }
  // Cut inside the tensor data: the header parses, the tensor does not fit.
  // buildGguf pads the 16 data bytes to 32; keep 15 of them.
  await assertRejects(good.slice(0, good.length - 17), GgufTensorRangeError, /tensor "w"/);
});

Deno.test("structural corruption raises the matching named error", async () => {
  const q80 = new Uint8Array(34);
  const spec = (shape: number[], type = 8): TensorSpec => ({ name: "wq", shape, type, data: q80 });
  const kv: [string, Value][] = [["k", { type: "u32", value: 1 }]];
  // Offsets of fields in buildGguf's layout: magic 0, version 4, counts 8 and 16, first key at 24.
  const firstValueType = 24 + 8 + 1;
  const patch = (bytes: Uint8Array, at: number, v: bigint | number, size: 4 | 8) => {
    const view = new DataView(bytes.buffer);
    if (size === 4) view.setUint32(at, Number(v), true);
    else view.setBigUint64(at, BigInt(v), true);
    return bytes;
  };
  const tensorInfoAt = (bytes: Uint8Array) => bytes.indexOf("w".charCodeAt(0), 40) + 2; // after name
  const base = () => buildGguf(kv, [spec([32])]);

  await assertRejects(
    patch(base(), 24, 2n ** 40n, 8),
    GgufLengthError,
    /claims 1099511627776 bytes/,
  );
  await assertRejects(patch(base(), 16, 2n ** 50n, 8), GgufLengthError, /metadata count/);
  await assertRejects(patch(base(), 8, 2n ** 60n, 8), GgufLengthError, /tensor count/);
  await assertRejects(
    patch(base(), firstValueType, 13, 4),
    GgufFormatError,
    /unknown value type 13/,
  );
  {
    const b = base();
    await assertRejects(patch(b, tensorInfoAt(b), 5, 4), GgufFormatError, /5 dimensions/);
  }
  {
    const b = base();
    await assertRejects(patch(b, tensorInfoAt(b) + 12, 99, 4), GgufUnknownTensorTypeError, /id 99/);
  }
  await assertRejects(buildGguf(kv, [spec([48])]), GgufShapeError, /ne\[0\] = 48 .*Q8_0.* 32/);
  {
    const b = base();
    await assertRejects(patch(b, tensorInfoAt(b) + 16, 1 << 20, 8), GgufTensorRangeError, /beyond/);
  }
  {
    const b = base();
    await assertRejects(patch(b, tensorInfoAt(b) + 16, 4, 8), GgufTensorRangeError, /alignment/);
  }
  const dup: [string, Value][] = [["k", { type: "u8", value: 1 }], ["k", { type: "u8", value: 2 }]];
  await assertRejects(buildGguf(dup, []), GgufFormatError, /duplicate metadata key "k"/);
  const badAlign: [string, Value][] = [["general.alignment", { type: "u32", value: 48 }]];
  await assertRejects(buildGguf(badAlign, []), GgufFormatError, /48 is not a power of two/);
  const alignType: [string, Value][] = [["general.alignment", { type: "u64", value: 32n }]];
  await assertRejects(buildGguf(alignType, []), GgufFormatError, /must be uint32/);
  const huge: [string, Value][] = [["a", { type: "array", element: 0, items: [] }]];
  const hugeArray = patch(buildGguf(huge, []), 24 + 8 + 1 + 4 + 4, 2n ** 62n, 8);
  await assertRejects(hugeArray, GgufLengthError, /array length of "a"/);
  await assertRejects(new Uint8Array(0), GgufTruncatedError, /magic/);
  await assert.rejects(() => openGguf("/nonexistent/x.gguf"), (e) => {
    assert.ok(e instanceof GgufIoError);
    assert.match(e.message, /^\/nonexistent\/x\.gguf: cannot open/);
    return true;
  });
});

Deno.test("random byte corruption never escapes as anything but a GgufError", async () => {
  const good = buildGguf(
    [
      ["general.architecture", { type: "string", value: "llama" }],
      ["tokens", {
        type: "array",
        element: 8,
        items: ["<s>", "a", "b"].map((value) => ({ type: "string" as const, value })),
      }],
      ["scores", { type: "array", element: 6, items: [{ type: "f32", value: 1 }] }],
    ],
    [
      { name: "a", shape: [32, 2], type: 8, data: new Uint8Array(68) },
      { name: "b", shape: [4], type: 0, data: f32Bytes([1, 2, 3, 4]) },
    ],
  );
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const path = await Deno.makeTempFile({ suffix: ".gguf" });
  try {
    for (let trial = 0; trial < 300; trial++) {
      const bytes = good.slice();
      for (let k = 0; k < 1 + (trial % 3); k++) {
        bytes[Math.floor(random() * 260)] = Math.floor(random() * 256);
      }
      await Deno.writeFile(path, bytes);
      try {
        using file = await openGguf(path);
        for (const t of file.tensors) if (t.type.decode) await file.readTensorF32(t);
      } catch (e) {
        if (!(e instanceof GgufError)) throw new Error(`trial ${trial}: ${e}`, { cause: e });
      }
    }
  } finally {
    await Deno.remove(path);
  }
});

// ---------------------------------------------------------------------------------------------
// llama.cpp-written files.

Deno.test({
  name: "stories260K-f32.gguf holds llama2.c's header values and weights exactly",
  ignore: !hasShared(STORIES) || !hasShared("models/stories260K/stories260K.bin"),
  fn: async () => {
    const bin = await Deno.readFile(sharedPath("models/stories260K/stories260K.bin"));
    const header = new Int32Array(bin.buffer, 0, 7);
    const [dim, hidden, layers, heads, kvHeads, vocab] = [...header];
    using file = await openGguf(sharedPath(STORIES, "stories260K-f32.gguf"));
    assert.equal(file.getString("general.architecture"), "llama");
    assert.equal(file.getNumber("llama.embedding_length"), dim);
    assert.equal(file.getNumber("llama.feed_forward_length"), hidden);
    assert.equal(file.getNumber("llama.block_count"), layers);
    assert.equal(file.getNumber("llama.attention.head_count"), heads);
    assert.equal(file.getNumber("llama.attention.head_count_kv"), kvHeads);
    assert.equal(file.getNumber("llama.rope.dimension_count"), dim! / heads!);
    assert.equal(file.getNumber("llama.attention.layer_norm_rms_epsilon"), Math.fround(1e-5));
    assert.equal(file.getStringArray("tokenizer.ggml.tokens").length, vocab);
    assert.deepEqual(file.getStringArray("tokenizer.ggml.tokens").slice(0, 4), [
      "<unk>",
      "<s>",
      "</s>",
      "<0x00>",
    ]);
    assert.equal(file.getNumberArray("tokenizer.ggml.scores").length, vocab);
    assert.equal(file.getString("tokenizer.ggml.model"), "llama");
    assert.equal(file.getNumber("tokenizer.ggml.bos_token_id"), 1);
    assert.equal(file.getNumber("tokenizer.ggml.eos_token_id"), 2);

    // llama2.c's float32 tensors follow the 28-byte header in a fixed order.
    const weights = new Float32Array(bin.buffer.slice(28));
    let at = 0;
    const take = (n: number) => weights.subarray(at, at += n);
    const kvDim = (dim! / heads!) * kvHeads!;
    const expected = new Map<string, Float32Array>([["token_embd.weight", take(vocab! * dim!)]]);
    const perLayer = (suffix: string, size: number) => {
      for (let l = 0; l < layers!; l++) expected.set(`blk.${l}.${suffix}`, take(size));
    };
    perLayer("attn_norm.weight", dim!);
    perLayer("attn_q.weight", dim! * dim!);
    perLayer("attn_k.weight", kvDim * dim!);
    perLayer("attn_v.weight", kvDim * dim!);
    perLayer("attn_output.weight", dim! * dim!);
    perLayer("ffn_norm.weight", dim!);
    perLayer("ffn_gate.weight", hidden! * dim!);
    perLayer("ffn_down.weight", dim! * hidden!);
    perLayer("ffn_up.weight", hidden! * dim!);
    expected.set("output_norm.weight", take(dim!));
    // The classifier is tied in llama2.c; the converter writes it out as output.weight.
    expected.set("output.weight", expected.get("token_embd.weight")!);

    assert.deepEqual(file.tensors.map((t) => t.name).sort(), [...expected.keys()].sort());
    const shapes: Record<string, number[]> = {
      "token_embd.weight": [dim!, vocab!],
      "blk.0.attn_q.weight": [dim!, dim!],
      "blk.0.attn_k.weight": [dim!, kvDim],
      "blk.0.ffn_gate.weight": [dim!, hidden!],
      "blk.0.ffn_down.weight": [hidden!, dim!],
      "output_norm.weight": [dim!],
    };
    for (const [name, shape] of Object.entries(shapes)) {
      assert.deepEqual(file.tensor(name).shape, shape, name);
    }
    for (const t of file.tensors) {
      assert.equal(t.typeName, "F32");
      assert.deepEqual(await file.readTensorF32(t), expected.get(t.name), t.name);
    }
  },
});

Deno.test({
  name: "every shared GGUF file opens with aligned, in-bounds, non-overlapping tensors",
  ignore: !hasShared(STORIES) || !hasShared("models/gguf-blocks"),
  fn: async () => {
    const expected: Record<string, [dim: number, hidden: number, layers: number, heads: number]> = {
      "models/stories260K/gguf": [64, 172, 5, 8],
      "models/gguf-blocks": [256, 768, 2, 4],
    };
    for (const [dir, [dim, hidden, layers, heads]] of Object.entries(expected)) {
      for (const entry of Deno.readDirSync(sharedPath(dir))) {
        if (!entry.name.endsWith(".gguf")) continue;
        using file = await openGguf(sharedPath(dir, entry.name));
        assert.equal(file.version, 3);
        assert.equal(file.getNumber("llama.embedding_length"), dim, entry.name);
        assert.equal(file.getNumber("llama.feed_forward_length"), hidden);
        assert.equal(file.getNumber("llama.block_count"), layers);
        assert.equal(file.getNumber("llama.attention.head_count"), heads);
        assert.equal(file.tensors.length, 3 + 9 * layers);
        const sorted = [...file.tensors].sort((a, b) => a.offset - b.offset);
        let end = file.dataOffset;
        for (const t of sorted) {
          assert.equal((t.offset - file.dataOffset) % file.alignment, 0, t.name);
          assert.ok(t.offset >= end, `${entry.name} ${t.name} overlaps the previous tensor`);
          end = t.offset + t.byteSize;
          assert.equal(t.byteSize, (t.nElements / t.type.blockSize) * t.type.typeSize);
        }
        assert.ok(end <= file.fileSize && file.fileSize - end < file.alignment, entry.name);
      }
    }
  },
});
