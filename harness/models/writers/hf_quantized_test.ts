import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../../../core/shared.ts";
import { LINEAR_NAMES, type LlamaModel, type QuantizedMatrix } from "../../../core/model.ts";
import { groupsPerRow, zeroAt } from "../../../kernels/formats/int.ts";
import { methods } from "../../methods/registry.ts";
import { loadModel } from "../load.ts";
import { reorderRows } from "./rope_order.ts";
import { type HfLayout, HfLayoutError, writeHfQuantized } from "./hf_quantized.ts";

const MINI = join(REPO_ROOT, "fixtures", "models", "mini");
const UNPACKERS: Record<HfLayout, string> = {
  gptq: "unpack_gptq.py",
  awq: "unpack_awq.py",
  "compressed-tensors": "unpack_compressed_tensors.py",
};
const HF_NAMES = {
  wq: "self_attn.q_proj",
  wk: "self_attn.k_proj",
  wv: "self_attn.v_proj",
  wo: "self_attn.o_proj",
  w1: "mlp.gate_proj",
  w2: "mlp.down_proj",
  w3: "mlp.up_proj",
} as const;

/** Whether python3 with numpy runs here (the unpackers need nothing else). */
async function hasNumpy(): Promise<boolean> {
  try {
    const out = await new Deno.Command("python3", { args: ["-c", "import numpy"], stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

const numpy = await hasNumpy();
if (!numpy) {
  console.log(
    "hf_quantized_test: python3 with numpy not found; the independent unpacker checks are " +
      "skipped (apt-get install -y python3-numpy)",
  );
}

async function rtnMini(
  group: number,
  symmetric: boolean,
  bits = 4,
  scaleDtype = "f16",
): Promise<LlamaModel> {
  const model = await loadModel({ id: "mini", path: MINI });
  const format = {
    id: `int${bits}`,
    weights: `int${bits}`,
    group,
    symmetric,
    options: { scale_dtype: scaleDtype },
  };
  return await methods.get("rtn").quantize(model, format, {}, { seed: 0 });
}

async function unpack(layout: HfLayout, dir: string): Promise<string> {
  const out = join(dir, "unpacked");
  const script = join(REPO_ROOT, "fixtures", "export", UNPACKERS[layout]);
  const run = await new Deno.Command("python3", { args: [script, dir, out] }).output();
  assert.ok(run.success, new TextDecoder().decode(run.stderr));
  return out;
}

/** The unpacked files of every linear equal quantbench's codes, zero points and scales. */
async function assertSameCodes(model: LlamaModel, out: string): Promise<number> {
  const manifest = JSON.parse(await Deno.readTextFile(join(out, "manifest.json")));
  let checked = 0;
  for (const [l, layer] of model.weights.layers.entries()) {
    for (const name of LINEAR_NAMES) {
      const module = `model.layers.${l}.${HF_NAMES[name]}`;
      const heads = name === "wq" ? model.config.nHeads : model.config.nKvHeads;
      const m = (name === "wq" || name === "wk")
        ? reorderRows(layer[name], heads, model.config.headDim, model.config.ropeStyle, "half")
        : layer[name];
      const q = m as QuantizedMatrix;
      const G = groupsPerRow(q);
      assert.deepEqual(manifest[module], { rows: q.rows, cols: q.cols, groups: G, bits: q.bits });
      const codes = await Deno.readFile(join(out, `${module}.codes`));
      assert.ok(codes.every((c, i) => c === q.codes[i]), `${module} codes`);
      const zeros = await Deno.readFile(join(out, `${module}.zeros`));
      assert.ok(zeros.every((z, i) => z === zeroAt(q, i)), `${module} zero points`);
      const bytes = await Deno.readFile(join(out, `${module}.scales`));
      const scales = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      assert.deepEqual(scales, q.scales, `${module} scales`);
      checked++;
    }
  }
  return checked;
}

for (
  const [layout, symmetric] of [
    ["gptq", true],
    ["gptq", false],
    ["awq", false],
    ["awq", true],
    ["compressed-tensors", true],
    ["compressed-tensors", false],
  ] as const
) {
  Deno.test({
    name: `hf_quantized: ${layout} int4 g32 ${
      symmetric ? "symmetric" : "asymmetric"
    } unpacks with the independent Python unpacker to quantbench's codes and scales`,
    ignore: !numpy,
    async fn() {
      const model = await rtnMini(32, symmetric);
      const dir = await Deno.makeTempDir({ prefix: "quantbench-hfq-" });
      try {
        await writeHfQuantized(model, dir, layout);
        const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
        assert.equal(config.quantization_config.quant_method, layout);
        assert.equal(config.torch_dtype, "float16");
        const checked = await assertSameCodes(model, await unpack(layout, dir));
        assert.equal(checked, 7 * model.config.nLayers);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "hf_quantized: int8 per channel to GPTQ unpacks alike (4 codes per word, group -1)",
  ignore: !numpy,
  async fn() {
    const model = await rtnMini(0, true, 8);
    const dir = await Deno.makeTempDir({ prefix: "quantbench-hfq-" });
    try {
      await writeHfQuantized(model, dir, "gptq");
      const qc = JSON.parse(await Deno.readTextFile(join(dir, "quantize_config.json")));
      assert.equal(qc.group_size, -1);
      assert.equal(qc.bits, 8);
      await assertSameCodes(model, await unpack("gptq", dir));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "hf_quantized: int3 g32 asymmetric to GPTQ unpacks alike (codes straddling words)",
  ignore: !numpy,
  async fn() {
    const model = await rtnMini(32, false, 3);
    const dir = await Deno.makeTempDir({ prefix: "quantbench-hfq-" });
    try {
      await writeHfQuantized(model, dir, "gptq");
      await assertSameCodes(model, await unpack("gptq", dir));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("hf_quantized: weights a layout cannot hold are named errors, nothing written", async () => {
  const dir = join(await Deno.makeTempDir({ prefix: "quantbench-hfq-" }), "out");
  try {
    const float = await loadModel({ id: "mini", path: MINI });
    await assert.rejects(
      () => writeHfQuantized(float, dir, "gptq"),
      (e: Error) => e instanceof HfLayoutError && /layers\.0\.wq is not quantized/.test(e.message),
    );
    const int8 = await rtnMini(32, true, 8);
    await assert.rejects(() => writeHfQuantized(int8, dir, "awq"), /AWQ GEMM packs 4-bit codes/);
    const int3 = await rtnMini(32, true, 3);
    await assert.rejects(
      () => writeHfQuantized(int3, dir, "compressed-tensors"),
      /2, 4 and 8 bits/,
    );
    const bf16 = await rtnMini(32, true, 4, "f32");
    await assert.rejects(
      () => writeHfQuantized(bf16, dir, "compressed-tensors"),
      /the scales are f32/,
    );
    await assert.rejects(() => Deno.stat(dir), Deno.errors.NotFound);
  } finally {
    await Deno.remove(join(dir, ".."), { recursive: true });
  }
});
