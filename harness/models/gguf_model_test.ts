import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { ggufCodecName, loadGgufModel, readGgufModel } from "./gguf_model.ts";
import { loadLlama2c } from "./llama2c.ts";
import { GgufIoError, openGguf } from "./gguf/reader.ts";
import { writeTinyFiles } from "./testing.ts";
import { dense, LINEAR_NAMES, type LlamaModel, type Matrix } from "../../core/model.ts";
import { CpuRunner } from "../../kernels/cpu/backend.ts";
import { UnsupportedModelError } from "./errors.ts";

const GGUF_DIR = "models/stories260K/gguf";
const ORIGINAL = "models/stories260K/stories260K.bin";
const ignore = !hasShared(GGUF_DIR) || !hasShared(ORIGINAL);
const TEXT = "Lily saw a big dog. It was happy and ran to the park.";

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

async function originalLogits(): Promise<{ ids: number[]; logits: Float32Array }> {
  const model = await loadLlama2c(sharedPath(ORIGINAL));
  const ids = [model.tokenizer.bosId, ...model.tokenizer.encode(TEXT)];
  return { ids, logits: new CpuRunner(model).forwardSync(ids, 0) };
}

Deno.test({
  name: "gguf_model: llama.cpp's F32 stories260K gives the llama2.c original's logits exactly",
  ignore,
  async fn() {
    const { ids, logits } = await originalLogits();
    const model = await loadGgufModel(sharedPath(GGUF_DIR, "stories260K-f32.gguf"));
    assert.equal(model.config.ropeStyle, "interleaved");
    assert.equal(model.config.nKvHeads, 4);
    assert.deepEqual(new CpuRunner(model).forwardSync(ids, 0), logits);
    // The embedded SentencePiece vocabulary tokenizes as llama2.c's tokenizer does.
    assert.deepEqual(model.tokenizer.encode(TEXT), ids.slice(1));
    assert.equal(model.tokenizer.decode(ids), TEXT);
  },
});

Deno.test({
  name: "gguf_model: F16 and BF16 stories260K stay within their rounding of the original",
  ignore,
  async fn() {
    const { ids, logits } = await originalLogits();
    // Rounding every weight to 11 (F16) or 8 (BF16) significant bits moves logits of size ~10
    // by about 1e-3 and 1e-2 relative at most.
    for (const [file, tol] of [["stories260K-f16.gguf", 0.02], ["stories260K-bf16.gguf", 0.2]]) {
      const model = await loadGgufModel(sharedPath(GGUF_DIR, file as string));
      const diff = maxAbsDiff(new CpuRunner(model).forwardSync(ids, 0), logits);
      assert.ok(diff > 0 && diff < (tol as number), `${file}: ${diff}`);
    }
  },
});

/** The same model with every coded matrix decoded by the reader's whole-tensor path. */
async function denseTwin(path: string, model: LlamaModel): Promise<LlamaModel> {
  using gguf = await openGguf(path);
  const decode = async (name: string, m: Matrix): Promise<Matrix> =>
    m.kind === "coded" ? dense(m.rows, m.cols, await gguf.readTensorF32(gguf.tensor(name))) : m;
  const names = {
    wq: "attn_q",
    wk: "attn_k",
    wv: "attn_v",
    wo: "attn_output",
    w1: "ffn_gate",
    w2: "ffn_down",
    w3: "ffn_up",
  } as const;
  const layers = [];
  for (const [l, layer] of model.weights.layers.entries()) {
    const out = { ...layer };
    for (const n of LINEAR_NAMES) out[n] = await decode(`blk.${l}.${names[n]}.weight`, layer[n]);
    layers.push(out);
  }
  const output = await decode("output.weight", model.weights.output);
  return { ...model, weights: { ...model.weights, layers, output } };
}

Deno.test({
  name: "gguf_model: every llama.cpp-quantized stories260K runs from its blocks as decoded",
  ignore,
  async fn() {
    const { ids, logits } = await originalLogits();
    const files = [...Deno.readDirSync(sharedPath(GGUF_DIR))]
      .map((e) => e.name)
      .filter((n) => n.endsWith(".gguf") && !/-(f32|f16|bf16)\.gguf$/.test(n))
      .sort();
    assert.equal(files.length, 14);
    for (const file of files) {
      const path = sharedPath(GGUF_DIR, file);
      const model = await loadGgufModel(path);
      const wq = model.weights.layers[0]!.wq;
      assert.equal(wq.kind, "coded", file);
      // Row-by-row decoding inside the matmul equals the reader's bit-exact tensor decoding.
      const got = new CpuRunner(model).forwardSync(ids, 0);
      const want = new CpuRunner(await denseTwin(path, model)).forwardSync(ids, 0);
      assert.deepEqual(got, want, file);
      const diff = maxAbsDiff(got, logits);
      assert.ok(diff > 0 && diff < 30, `${file}: ${diff}`);
    }
  },
});

Deno.test({
  name: "gguf_model: the K-quant reference files load with their block types as codecs",
  ignore: !hasShared("models/gguf-blocks"),
  async fn() {
    for (const type of ["q2_k", "q3_k_s", "q4_k_s", "q5_k_s", "q6_k"]) {
      const model = await loadGgufModel(sharedPath("models/gguf-blocks", `rand256-${type}.gguf`));
      const codec = (model.weights.layers[0]!.wq as { codec?: string }).codec;
      assert.equal(codec, type.slice(0, 4), type);
      const logits = new CpuRunner(model, 4).forwardSync([1, 2, 3], 0);
      assert.ok(logits.every(Number.isFinite));
    }
  },
});

Deno.test("gguf_model: codec names follow ggml's type names", () => {
  assert.equal(ggufCodecName("Q4_K"), "q4_k");
  assert.equal(ggufCodecName("MXFP4"), "gguf_mxfp4");
  assert.equal(ggufCodecName("IQ2_XXS"), undefined);
});

Deno.test({
  name: "gguf_model: a vocabulary-only GGUF of another architecture is UnsupportedModelError",
  ignore: !hasShared("models/gguf-vocab/ggml-vocab-gpt-2.gguf"),
  async fn() {
    using gguf = await openGguf(sharedPath("models/gguf-vocab/ggml-vocab-gpt-2.gguf"));
    await assert.rejects(readGgufModel(gguf), UnsupportedModelError);
  },
});

Deno.test("gguf_model: a streamed load reads each layer as the eager load does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { gguf } = await writeTinyFiles(dir);
    const eager = await loadGgufModel(gguf);
    const streamed = await loadGgufModel(gguf, { stream: true });
    const stream = streamed.stream!;
    try {
      assert.deepEqual(streamed.weights.layers, []);
      assert.deepEqual({ ...streamed.weights, layers: eager.weights.layers }, eager.weights);
      assert.equal(stream.count, 1);
      const layer = await stream.read(0);
      assert.equal(layer.wq.kind, "coded");
      assert.deepEqual(layer, eager.weights.layers[0]);
    } finally {
      stream.close();
    }
    await assert.rejects(stream.read(0), GgufIoError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
