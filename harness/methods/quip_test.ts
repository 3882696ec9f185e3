import assert from "node:assert/strict";
import { quip, QuipError, quipQuantize, quipSeeds, type QuipSettings } from "./quip.ts";
import { CALIBRATION_SETS, heldOutNll, lcg, proxyLoss } from "./testing.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { linearBitsPerWeight } from "../models/bits.ts";
import { sideTensor, storageName } from "../../kernels/formats/matrix.ts";
import { quipMatrix } from "../../kernels/formats/quip_format.ts";
import { quipRotation } from "../../kernels/formats/quip_rotation.ts";
import { decodeMatrix } from "./gptq.ts";
import { backends } from "../../kernels/registry.ts";
import { loadModelPath } from "../models/load.ts";
import { REPO_ROOT } from "../../core/shared.ts";

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {}, ...extra };
}

/** A weight matrix with a few large columns and correlated inputs' Hessian `XᵀX`. */
function problem(m: number, n: number) {
  const rand = lcg(m * 7 + n);
  const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const w = Float64Array.from({ length: m * n }, (_, i) => 0.05 * gauss() * (i % n < 3 ? 8 : 1));
  const tokens = 4 * n;
  const x = new Float64Array(tokens * n);
  for (let t = 0; t < tokens; t++) {
    const shared = gauss();
    for (let c = 0; c < n; c++) x[t * n + c] = 0.3 * shared * (1 + (c % 5)) + gauss();
  }
  const h = new Float64Array(n * n);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) h[i * n + j]! += x[t * n + i]! * x[t * n + j]!;
    }
  }
  return { w, h };
}

const SETTINGS: QuipSettings = {
  bits: 2,
  quant: "ldlq",
  npasses: 0,
  percdamp: 0.01,
  rescale: true,
  lazyBatch: false,
};

/** The decoded weights of one linear's QuIP result. */
function run(w: Float64Array, h: Float64Array, m: number, n: number, settings: QuipSettings) {
  const u = quipRotation(1, m, 1);
  const v = quipRotation(2, n, 1);
  const r = quipQuantize(w, h, m, n, u, v, settings);
  const matrix = quipMatrix(m, n, settings.bits, r.codes, {
    scale: r.scale,
    colScale: r.colScale,
    seedU: 1,
    seedV: 2,
    mode: 1,
  });
  return { codes: r.codes, matrix, q: decodeMatrix(matrix) };
}

for (const [m, n] of [[32, 64], [16, 172]] as const) {
  Deno.test(`quip ${m}×${n}: LDLQ lowers the proxy loss of nearest rounding; lazy batches agree`, () => {
    const { w, h } = problem(m, n);
    // A diagonal Hessian stays diagonal through the rescaling: LDLQ is nearest rounding then.
    const eye = new Float64Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    const nearest = run(w, eye, m, n, SETTINGS);
    const ldlq = run(w, h, m, n, SETTINGS);
    const greedy = run(w, h, m, n, { ...SETTINGS, npasses: 3 });
    const sorted = run(w, h, m, n, { ...SETTINGS, quant: "ldlqRG" });
    const [a, b, c, d] = [nearest, ldlq, greedy, sorted].map((r) => proxyLoss(w, r.q, h, m, n));
    assert.ok(b! < 0.8 * a!, `LDLQ ${b} vs nearest ${a}`);
    assert.ok(c! < a! && d! < a!, `greedy ${c}, ldlqRG ${d} vs nearest ${a}`);
    assert.equal(storageName(ldlq.matrix), "quip-int2");
    const lazy = run(w, h, m, n, { ...SETTINGS, lazyBatch: true });
    const same = lazy.codes.filter((q, i) => q === ldlq.codes[i]).length;
    assert.ok(same >= 0.999 * ldlq.codes.length, `${same} of ${ldlq.codes.length} codes agree`);
  });
}

Deno.test("quip: 3 and 4 bits cut the error of 2 bits", () => {
  const [m, n] = [16, 172];
  const { w, h } = problem(m, n);
  const errors = ([2, 3, 4] as const).map((bits) =>
    proxyLoss(w, run(w, h, m, n, { ...SETTINGS, bits }).q, h, m, n)
  );
  assert.ok(errors[1]! < 0.5 * errors[0]! && errors[2]! < 0.5 * errors[1]!, `${errors}`);
});

Deno.test("quip refuses formats other than int2–int4 and options out of range", () => {
  assert.match(quip.unsupported(spec("int8"))!, /not int2, int3 or int4/);
  assert.match(quip.unsupported(spec("int2", { group: 32 }))!, /no groups/);
  assert.equal(quip.unsupported(spec("int3")), undefined);
  const check = (extra: Record<string, unknown>) =>
    quip.checkOptions!({ ...structuredClone(quip.options), ...extra });
  check({});
  assert.throws(() => check({ quant: "gptq" }), QuipError);
  assert.throws(() => check({ npasses: -1 }), QuipError);
  assert.throws(() => check({ npasses: 1.5 }), QuipError);
  assert.throws(() => check({ percdamp: 0 }), QuipError);
  assert.throws(() => check({ pre_proj_extra: 3 }), /pre_proj_extra is 0, 1 or 2, got 3/);
});

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

Deno.test({
  name: "quip: stories260K at 3 bits, its Hessian-aware steps beat plain rotated rounding",
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const ids = model.tokenizer.encode(
      await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt")),
    ).slice(0, 512);
    const calibration = { dataset: "shakespeare", samples: 4, seq_len: 256 };
    const ctx = { seed: 0, datasets: CALIBRATION_SETS };
    const q = await quip.quantize(
      model,
      spec("int3"),
      { ...structuredClone(quip.options), calibration },
      ctx,
    );
    const wq = q.weights.layers[1]!.wq;
    assert.equal(storageName(wq), "quip-int3");
    const { seedU, seedV } = quipSeeds(0, 1, "wq");
    assert.deepEqual([...sideTensor(wq, "seeds")], [seedU, seedV]);
    assert.equal(sideTensor(wq, "col_scale").length, wq.cols);
    // Without the rescaling and with a damping that drowns H, LDLQ is nearest rounding of U W Vᵀ.
    const plain = await quip.quantize(
      model,
      spec("int3"),
      { ...structuredClone(quip.options), calibration, pre_rescale: false, percdamp: 1e3 },
      ctx,
    );
    const bits = linearBitsPerWeight(q);
    assert.ok(bits > 3 && bits < 3.5, `${bits} bits per weight`);
    const [nq, np] = [await heldOutNll(q, ids), await heldOutNll(plain, ids)];
    assert.ok(Number.isFinite(nq) && nq < np - 0.1, `QuIP ${nq} (${bits} bpw), plain ${np}`);
  },
});

const webgpuMissing = await backends.get("webgpu").unavailable();

Deno.test({
  name:
    "quip on WebGPU: weights kept as codes and rotations (no f32 fallback), logits as the CPU's",
  ignore: webgpuMissing !== undefined && Deno.env.get("QUANTBENCH_REQUIRE_WEBGPU") !== "1",
  async fn() {
    const model = await loadModelPath(`${REPO_ROOT}/fixtures/models/micro`);
    const text = { id: "text", kind: "text", path: `${REPO_ROOT}/fixtures/datasets/heldout.txt` };
    const q = await quip.quantize(
      model,
      spec("int2"),
      {
        ...structuredClone(quip.options),
        calibration: { dataset: "text", samples: 2, seq_len: 32 },
      },
      { seed: 0, datasets: { text: text as never } },
    );
    const gpu = await backends.get("webgpu").load(q);
    const cpu = await backends.get("cpu").load(q);
    try {
      assert.deepEqual([...gpu.fallbackFormats!], []);
      const tokens = [1, 5, 9, 2];
      const [a, b] = [await gpu.forward(tokens, 0), await cpu.forward(tokens, 0)];
      let max = 0;
      for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
      assert.ok(max < 1e-4, `largest logit difference ${max}`);
    } finally {
      gpu.dispose();
      cpu.dispose();
    }
  },
});
