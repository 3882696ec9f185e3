import assert from "node:assert/strict";
import { quantizeIntMse, quantizeMatrix, rtn, RtnOptionsError } from "./rtn.ts";
import { none } from "./none.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { openGguf } from "../models/gguf/reader.ts";
import { dense, type LinearName, type LlamaModel } from "../../core/model.ts";
import { linearBitsPerWeight } from "../models/bits.ts";
import { parseSuite } from "../suite/load.ts";
import { expandCells } from "../suite/expand.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { cpuBackend } from "../../kernels/cpu/backend.ts";
import { elementFormats, FormatSettingsError } from "../../kernels/formats/registry.ts";
import { rowCodecs } from "../../kernels/formats/codecs.ts";
import { decodeRow, matrixBits } from "../../kernels/formats/matrix.ts";

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin") &&
  hasShared(STORIES, "gguf", "stories260K-f32.gguf") &&
  hasShared("data/text/tinystories_sample.txt");

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {}, ...extra };
}

async function loadStories(): Promise<LlamaModel> {
  return await loadLlama2c(
    sharedPath(STORIES, "stories260K.bin"),
    sharedPath(STORIES, "tok512.bin"),
  );
}

/** Mean next-token NLL (nats) over `windows` windows of `context` tokens, scored from token 1. */
async function meanNll(model: LlamaModel, ids: number[], context: number, windows: number) {
  const runner = await cpuBackend.load(model);
  const vocab = model.config.vocabSize;
  let total = 0;
  for (let w = 0; w < windows; w++) {
    const window = ids.slice(w * context, (w + 1) * context);
    runner.reset();
    const logits = await runner.forward(window, 0);
    for (let t = 0; t + 1 < context; t++) {
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      const max = row.reduce((m, v) => Math.max(m, v), -Infinity);
      const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
      total += max + Math.log(sum) - row[window[t + 1]!]!;
    }
  }
  runner.dispose();
  return total / (windows * (context - 1));
}

// Formats by precision: ≥ 4 significant bits at 8 bits or more; 5–6-bit grids and E5M2 (3
// significant bits); 4-bit grids; 2- and 3-bit grids. Every registered format must be in one.
// AQLM's rtn is its k-means start at groups of 8: on stories260K, 1x16's 2^16 codewords outnumber
// a matrix's groups, so every group is a codeword (half precision) and the rest are low-bit.
const EIGHT_BIT = ["int8", "q8_0", "mxint8", "fp8", "mxfp8", "f16", "bf16", "aqlm_1x16"];
const MIDDLE = [
  "int6",
  "q5_0",
  "q5_1",
  "q5_k",
  "q6_k",
  "fp6_e2m3",
  "fp6_e3m2",
  "mxfp6",
  "mxfp6_e3m2",
  "fp8_e5m2",
  "mxfp8_e5m2",
];
const FOUR_BIT = ["int4", "q4_0", "q4_1", "q4_k", "iq4_nl", "mxfp4", "gguf_mxfp4", "nvfp4", "fp4"];
const LOW_BIT = [
  ...["int3", "int2", "q3_k", "q2_k", "q2_0"],
  ...["aqlm_2x8", "aqlm_1x8_g4", "aqlm_2x4_g4", "aqlm_1x4_g2", "aqlm_3x4_g4"],
  ...["vptq-v2-k16-0", "vptq-v2-k64-0", "vptq-v4-k256-0", "vptq-v4-k256-16"],
];

Deno.test({
  name: "rtn into every format: stories260K perplexity is finite and ordered by precision",
  ignore: !haveStories,
  async fn() {
    const model = await loadStories();
    const text = await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt"));
    const ids = model.tokenizer.encode(text);
    const [context, windows] = [256, 2];
    assert.ok(ids.length >= context * windows);
    const ppl = new Map<string, number>();
    const baseline = Math.exp(await meanNll(model, ids, context, windows));
    for (
      const name of elementFormats.names().filter((n) => elementFormats.get(n).kind !== "float")
    ) {
      const quantized = await rtn.quantize(model, spec(name), {}, { seed: 0 });
      const value = Math.exp(await meanNll(quantized, ids, context, windows));
      assert.ok(Number.isFinite(value), `${name}: perplexity ${value}`);
      ppl.set(name, value);
    }
    const classified = [...EIGHT_BIT, ...MIDDLE, ...FOUR_BIT, ...LOW_BIT].sort();
    assert.deepEqual(classified, [...ppl.keys()].sort());
    const of = (names: string[]) => names.map((n) => ppl.get(n)!);
    const table = [...ppl].map(([n, v]) => `${n} ${v.toFixed(3)}`).join(", ");
    for (const name of EIGHT_BIT) {
      const change = ppl.get(name)! / baseline - 1;
      assert.ok(Math.abs(change) < 0.01, `${name}: ${change} vs f32 ${baseline} (${table})`);
    }
    const minFour = Math.min(...of(FOUR_BIT));
    assert.ok(Math.max(...of([...EIGHT_BIT, ...MIDDLE])) < minFour, table);
    assert.ok(minFour > baseline * 1.02, table);
    assert.ok(Math.min(...of(LOW_BIT)) > Math.max(...of(FOUR_BIT)), table);
  },
});

/** GGUF tensor names of the linear weights llama.cpp quantized in the `-linear-` files. */
const GGUF_NAMES: Partial<Record<LinearName, string>> = {
  wq: "attn_q",
  wk: "attn_k",
  wv: "attn_v",
  wo: "attn_output",
  w1: "ffn_gate",
  w3: "ffn_up",
};
// ffn_down (172 input columns) stays F32 in llama.cpp's files: 172 is not a multiple of 32.
const LINEAR_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl"];

Deno.test({
  name: "ggml row codecs and rtn reproduce llama.cpp's stories260K-linear-* tensors byte for byte",
  ignore: !haveStories ||
    !LINEAR_TYPES.every((t) => hasShared(STORIES, "gguf", `stories260K-linear-${t}.gguf`)),
  async fn() {
    const model = await loadStories();
    using f32 = await openGguf(sharedPath(STORIES, "gguf", "stories260K-f32.gguf"));
    for (const type of LINEAR_TYPES) {
      using reference = await openGguf(
        sharedPath(STORIES, "gguf", `stories260K-linear-${type}.gguf`),
      );
      const codec = rowCodecs.get(type);
      const quantized = await rtn.quantize(model, spec(type), {}, { seed: 0 });
      let compared = 0;
      for (const [l, layer] of quantized.weights.layers.entries()) {
        for (const [name, ggufName] of Object.entries(GGUF_NAMES)) {
          const tensorName = `blk.${l}.${ggufName}.weight`;
          const info = reference.tensor(tensorName);
          assert.equal(info.typeName, type.toUpperCase(), tensorName);
          const expected = await reference.readTensorBytes(info);
          // The row-codec path: F32 rows from llama.cpp's own F32 file, encoded row by row.
          const [cols, rows] = f32.tensor(tensorName).shape as [number, number];
          const weights = await f32.readTensorF32(f32.tensor(tensorName));
          const bytes = new Uint8Array(rows * codec.rowBytes(cols));
          for (let r = 0; r < rows; r++) {
            codec.encodeRow(
              weights.subarray(r * cols, (r + 1) * cols),
              bytes.subarray(r * codec.rowBytes(cols), (r + 1) * codec.rowBytes(cols)),
              1,
            );
          }
          assert.deepEqual(bytes, expected, `${type} ${tensorName} (row codec)`);
          // The rtn path, from the llama2.c checkpoint.
          const m = layer[name as LinearName];
          assert.equal(m.kind, "coded");
          if (m.kind === "coded") assert.deepEqual(m.data, expected, `${type} ${tensorName} (rtn)`);
          compared++;
        }
      }
      assert.equal(compared, 5 * 6);
    }
  },
});

Deno.test("rtn: a group that contradicts a fixed block skips the cell", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/m.bin`, "not read by expansion");
    await Deno.writeTextFile(`${dir}/t.txt`, "text");
    const suite = await parseSuite(
      `name: t
models: [{ id: m, path: m.bin }]
methods: [none, rtn]
formats:
  - f32
  - { weights: mxfp4, group: 64 }
  - { weights: mxfp4, group: 32 }
  - { weights: q4_k, group: 32 }
  - { weights: q4_0, symmetric: false }
  - { weights: nvfp4, scale_dtype: f16 }
  - { id: int8-pt, weights: int8, group: -1, scale_dtype: bf16 }
  - { weights: fp8, group: 128, scale_dtype: bf16 }
tasks: [{ task: perplexity, dataset: t.txt }]
`,
      `${dir}/suite.yaml`,
    );
    const reasons = Object.fromEntries(
      expandCells(suite).map((c) => [`${c.method.id}/${c.format.id}`, c.skipReason]),
    );
    assert.equal(reasons["none/f32"], undefined);
    assert.match(reasons["rtn/f32"]!, /unquantized baseline/);
    assert.match(reasons["rtn/mxfp4-g64"]!, /fixed block of 32 weights; group 64 contradicts it/);
    assert.equal(reasons["rtn/mxfp4-g32"], undefined);
    assert.match(reasons["rtn/q4_k-g32"]!, /fixed block of 256 weights; group 32/);
    assert.match(reasons["rtn/q4_0-asym"]!, /no zero point or block minimum/);
    assert.match(reasons["rtn/nvfp4"]!, /scale_dtype "f16" contradicts it/);
    assert.equal(reasons["rtn/int8-pt"], undefined);
    assert.equal(reasons["rtn/fp8-g128"], undefined);
    assert.match(reasons["none/int8-pt"]!, /does not quantize/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.throws(
    () => quantizeMatrix(dense(1, 64, new Float32Array(64)), spec("q4_k", { group: 32 })),
    FormatSettingsError,
  );
  assert.throws(
    () => quantizeMatrix(dense(1, 4, new Float32Array(4)), spec("f32")),
    FormatSettingsError,
  );
});

Deno.test("rtn: bits per weight of the quantized model agree with the registry", () => {
  // 3 rows × 200 columns: 200 is not a multiple of 32 or 256, so block padding shows.
  const [rows, cols] = [3, 200];
  const data = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37) * 0.1);
  const m = dense(rows, cols, data);
  const settings: FormatSpec[] = [
    ...elementFormats.names().filter((n) => elementFormats.get(n).kind !== "float").map((n) =>
      spec(n)
    ),
    spec("int4", { group: 32, symmetric: false, options: { scale_dtype: "bf16" } }),
    spec("int8", { group: -1 }),
    spec("fp8", { group: 64, options: { scale_dtype: "f16" } }),
    spec("fp4", { group: -1 }),
  ];
  for (const format of settings) {
    const q = quantizeMatrix(m, format);
    const element = elementFormats.get(format.weights);
    const expected = element.bitsPerWeight(format, rows, cols) * rows * cols;
    assert.ok(Math.abs(matrixBits(q) - expected) < 1e-6, `${format.weights}: ${matrixBits(q)}`);
    const row = new Float32Array(cols);
    decodeRow(q, 1, row);
    assert.ok(row.every(Number.isFinite), format.weights);
  }
});

Deno.test({
  name: "rtn: linear bits per weight of stories260K in q4_0 count the padded ffn_down rows",
  ignore: !haveStories,
  async fn() {
    const model = await loadStories();
    const q = await rtn.quantize(model, spec("q4_0"), {}, { seed: 0 });
    // Per layer: q 64×64, k and v 32×64, o 64×64, gate and up 172×64 (4.5 bits), and down
    // 64×172 whose rows take 6 blocks of 32 (192 columns, 108 bytes for 172 weights).
    const weights = 64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 2 + 64 * 172;
    const bits = (weights - 64 * 172) * 4.5 + 64 * 108 * 8;
    assert.equal(linearBitsPerWeight(q), bits / weights);
    assert.equal(linearBitsPerWeight(await none.quantize(model, spec("f32"), {}, { seed: 0 })), 32);
  },
});

Deno.test("rtn clip: mse searches the GPTQ quantizer's shrink grid (brute force by hand)", () => {
  // One 2-bit symmetric group with an outlier: clipping it lets the seven 0.3s be represented.
  const row = Float32Array.from([1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]);
  const errorOf = (scale: number) =>
    row.reduce((e, x) => {
      const code = Math.min(3, Math.max(0, Math.round(x / scale) + 2));
      return e + Math.pow(Math.abs(scale * (code - 2) - x), 2.4);
    }, 0);
  let best = { err: Infinity, scale: 0 };
  for (let i = 0; i < 80; i++) {
    const scale = Math.f16round((2 * (1 - i / 100)) / 3);
    if (errorOf(scale) < best.err) best = { err: errorOf(scale), scale };
  }
  const q = quantizeIntMse(row, 1, 8, { bits: 2, group: 0, symmetric: true }, {
    grid: 100,
    maxshrink: 0.8,
    norm: 2.4,
  });
  assert.equal(q.scales[0], best.scale);
  assert.ok(best.err < errorOf(Math.f16round(2 / 3)), "clipping must pay off in this example");
});

Deno.test("rtn clip: options are checked", () => {
  const m = {
    config: {},
    weights: { layers: [{ wq: dense(1, 8, new Float32Array(8)) }] },
  } as unknown as Parameters<typeof rtn.quantize>[0];
  const fp8 = spec("fp8");
  assert.throws(
    () => rtn.quantize(m, fp8, { ...rtn.options, clip: "mse" }, { seed: 0 }),
    RtnOptionsError,
  );
  assert.throws(
    () => rtn.quantize(m, spec("int4"), { ...rtn.options, clip: "max" }, { seed: 0 }),
    /clip must be "none" or "mse"/,
  );
});
