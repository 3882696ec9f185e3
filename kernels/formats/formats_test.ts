import assert from "node:assert/strict";
import { formatOf, formatOfCodec, UnknownCodecError, weightFormats } from "./formats.ts";
import { rowCodecs } from "./codecs.ts";
import { encodeMatrix } from "./row_codecs.ts";
import { quantizeInt } from "./int.ts";
import { affineCodec } from "./affine_codec.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const [ROWS, COLS] = [3, 64];
const DATA = pseudoRandom(ROWS * COLS, 5);

Deno.test("formats: every codec belongs to exactly one format, int matrices to int", () => {
  const owned = new Map<string, string[]>();
  for (const name of rowCodecs.names()) {
    const owners = weightFormats.names().filter((f) => weightFormats.get(f).owns(name));
    assert.equal(owners.length, 1, `${name}: ${owners}`);
    owned.set(owners[0]!, [...owned.get(owners[0]!) ?? [], name]);
  }
  assert.ok(owned.get("ggml")?.includes("q4_k"));
  assert.ok(owned.get("mx")?.includes("mxint8"));
  assert.deepEqual(owned.get("nvfp4"), ["nvfp4"]);
  assert.equal(formatOfCodec(affineCodec(4, 32).name).name, "affine");
  assert.equal(formatOfCodec("fp8_e4m3-g128-bf16").name, "scaled_minifloat");
  const m = quantizeInt(DATA, ROWS, COLS, { bits: 4, group: 32, symmetric: true });
  assert.equal(formatOf(m).name, "int");
  assert.throws(() => formatOfCodec("q4_x"), UnknownCodecError);
});

Deno.test("formats: each says whether it has a GPU decoder and a GPTQ grid", () => {
  const has = (name: string) => {
    const f = weightFormats.get(name);
    return [f.gpu !== "none", f.grid !== "none"];
  };
  assert.deepEqual(has("int"), [true, true]);
  assert.deepEqual(has("scaled_minifloat"), [true, true]);
  assert.deepEqual(has("mx"), [true, true]);
  assert.deepEqual(has("nvfp4"), [true, true]);
  assert.deepEqual(has("ggml"), [true, false]);
  assert.deepEqual(has("affine"), [false, false]);
});

Deno.test("formats: ggml runs legacy blocks on the GPU and names the codecs it cannot", () => {
  const gpu = weightFormats.get("ggml").gpu;
  if (gpu === "none") throw new Error("ggml has a GPU decoder");
  const data = pseudoRandom(ROWS * 256, 6);
  const plan = (codec: string) => gpu(encodeMatrix(rowCodecs.get(codec), ROWS, 256, data));
  assert.equal(typeof plan("q4_0"), "object");
  assert.equal(plan("q4_k"), `no WGSL decoder for codec "q4_k"`);
  assert.equal(plan("iq4_nl"), `no WGSL decoder for codec "iq4_nl"`);
});
