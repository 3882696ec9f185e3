import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../../../core/shared.ts";
import { LINEAR_NAMES, type Matrix } from "../../../core/model.ts";
import { dequantizeInt, quantizeInt } from "../../../kernels/formats/int.ts";
import { elementFormats } from "../../../kernels/formats/registry.ts";
import { seededRandom } from "../../../core/random.ts";
import { methods } from "../../methods/registry.ts";
import { loadModel, loadModelPath } from "../load.ts";
import { toDense } from "./export.ts";
import { writeGguf } from "./gguf.ts";
import { ggufFormatUnsupported, ggufMatrix, ggufModel, NoGgufTypeError } from "./gguf_map.ts";
import { reorderRows } from "./rope_order.ts";

const MINI = join(REPO_ROOT, "fixtures", "models", "mini");

function randomWeights(n: number, seed: number, center = 0.5): Float32Array {
  const rand = seededRandom(seed, "gguf_map_test");
  return Float32Array.from({ length: n }, () => (rand() - center) * 0.2);
}

/** Same values bit for bit, or with `signedZero: false` equal as numbers (−0 = 0). */
function assertSameValues(a: Matrix, b: Matrix, what: string, signedZero = true): void {
  const x = toDense(a).data;
  const y = toDense(b).data;
  assert.equal(x.length, y.length);
  for (let i = 0; i < x.length; i++) {
    if (signedZero ? !Object.is(x[i], y[i]) : x[i] !== y[i]) {
      assert.fail(`${what}: element ${i} is ${y[i]}, expected ${x[i]}`);
    }
  }
}

Deno.test("gguf_map: int4/int8 g32 symmetric become q4_0/q8_0 blocks with identical values", () => {
  const data = randomWeights(8 * 64, 1);
  for (const [bits, codec] of [[4, "q4_0"], [8, "q8_0"]] as const) {
    for (const restricted of [false, true]) {
      const m = quantizeInt(data, 8, 64, { bits, group: 32, symmetric: true, restricted });
      const coded = ggufMatrix(m, "w");
      assert.equal(coded.kind === "coded" && coded.codec, codec);
      assertSameValues(m, coded, `int${bits}${restricted ? " restricted" : ""}`);
      assert.deepEqual(toDense(coded).data, dequantizeInt(m));
    }
  }
});

Deno.test("gguf_map: int4 g32 asymmetric is q4_1 only when −scale·zero is an f16 value", () => {
  // Scales that are powers of two make every offset exact.
  const exact = quantizeInt(new Float32Array(64).map((_, i) => (i % 16) - 3), 2, 32, {
    bits: 4,
    group: 32,
    symmetric: false,
  });
  assert.equal(exact.scales[0], 1);
  const coded = ggufMatrix(exact, "w");
  assert.equal(coded.kind === "coded" && coded.codec, "q4_1");
  assertSameValues(exact, coded, "q4_1");
  const inexact = quantizeInt(randomWeights(64, 2, 0.2), 2, 32, {
    bits: 4,
    group: 32,
    symmetric: false,
  });
  assert.ok(inexact.zeros!.some((z) => z % 2 === 1), "an odd zero point needs more f16 bits");
  assert.throws(
    () => ggufMatrix(inexact, "layers.0.wq"),
    (e: Error) =>
      e instanceof NoGgufTypeError && /layers\.0\.wq/.test(e.message) &&
      /no f16 value/.test(e.message),
  );
});

function coded(name: string, data: Float32Array): Matrix {
  const element = elementFormats.get(name);
  if (element.kind !== "coded") throw new Error(`${name} is not coded`);
  return element.quantize({ group: 0, symmetric: true, options: {} }, {
    kind: "dense",
    rows: data.length / 128,
    cols: 128,
    data,
  });
}

Deno.test("gguf_map: OCP mxfp4 is re-coded as ggml MXFP4 with identical values", () => {
  const m = coded("mxfp4", randomWeights(4 * 128, 4));
  const mapped = ggufMatrix(m, "w");
  assert.equal(mapped.kind === "coded" && mapped.codec, "gguf_mxfp4");
  // OCP E2M1 has a −0 code; ggml's table has only +0, which no product or sum tells apart.
  assertSameValues(m, mapped, "mxfp4", false);
});

Deno.test("gguf_map: formats without a ggml type are named errors saying what maps", () => {
  const data = randomWeights(4 * 128, 3);
  const cases: [string, Matrix][] = [
    ["int4 group 128", quantizeInt(data, 4, 128, { bits: 4, group: 128, symmetric: true })],
    ["int3", quantizeInt(data, 4, 128, { bits: 3, group: 32, symmetric: true })],
    [
      "bf16 scales",
      quantizeInt(data, 4, 128, { bits: 4, group: 32, symmetric: true, scaleDtype: "bf16" }),
    ],
    ["OCP mxfp8", coded("mxfp8", data)],
    ["nvfp4", coded("nvfp4", data)],
  ];
  for (const [what, m] of cases) {
    assert.throws(
      () => ggufMatrix(m, "layers.3.w2"),
      (e: Error) =>
        e instanceof NoGgufTypeError && /layers\.3\.w2/.test(e.message) &&
        /int4 g32 symmetric \(→ q4_0\)/.test(e.message) && /--as gptq/.test(e.message),
      what,
    );
  }
});

Deno.test("gguf_map: RTN int4 g32 mini written as GGUF loads back with every weight's values", async () => {
  const loaded = await loadModel({ id: "mini", path: MINI });
  const format = { id: "int4-g32", weights: "int4", group: 32, symmetric: true, options: {} };
  const model = await methods.get("rtn").quantize(loaded, format, {}, { seed: 0 });
  const dir = await Deno.makeTempDir({ prefix: "quantbench-ggufmap-" });
  try {
    const path = join(dir, "mini.gguf");
    await writeGguf(ggufModel(model), path);
    const back = await loadModelPath(path);
    const c = model.config;
    for (const [l, layer] of model.weights.layers.entries()) {
      for (const name of LINEAR_NAMES) {
        const got = back.weights.layers[l]![name];
        assert.equal(got.kind === "coded" && got.codec, "q4_0", `layers.${l}.${name}`);
        // The file stores llama.cpp's interleaved q/k rows; the loader keeps them so.
        const heads = name === "wq" ? c.nHeads : c.nKvHeads;
        const want = name === "wq" || name === "wk"
          ? reorderRows(layer[name], heads, c.headDim, c.ropeStyle, back.config.ropeStyle)
          : layer[name];
        assertSameValues(want, got, `layers.${l}.${name}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gguf_map: a format's settings say before quantizing whether it can map", () => {
  const at = (group: number, symmetric = true, options: Record<string, unknown> = {}) => ({
    group,
    symmetric,
    options,
  });
  for (
    const [weights, settings] of [
      ["f32", at(0)],
      ["int4", at(32)],
      ["int4", at(32, false)],
      ["int8", at(32)],
      ["int4", at(32, true, { range: "restricted" })],
      ["q4_k", at(0)],
      ["mxfp4", at(0)],
      ["gguf_mxfp4", at(0)],
    ] as const
  ) {
    assert.equal(ggufFormatUnsupported(weights, settings), undefined, weights);
  }
  for (
    const [weights, settings, reason] of [
      ["int4", at(128), /not a ggml block of 32/],
      ["int4", at(32, true, { scale_dtype: "bf16" }), /with bf16 scales/],
      ["int8", at(32, false), /no ggml type/],
      ["int3", at(32), /no ggml type/],
      ["nvfp4", at(0), /codec "nvfp4" is no ggml block type/],
      ["int4", at(32, true, { activations: "int8" }), /activations/],
    ] as const
  ) {
    assert.match(ggufFormatUnsupported(weights, settings) ?? "", reason, weights);
  }
});
