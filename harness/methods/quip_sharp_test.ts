import assert from "node:assert/strict";
import {
  quipSharp,
  QuipSharpError,
  quipSharpQuantize,
  type QuipSharpSettings,
  quipSharpSigns,
} from "./quip_sharp.ts";
import { gptq } from "./gptq.ts";
import { rtn } from "./rtn.ts";
import { CALIBRATION_SETS, heldOutNll, lcg, proxyLoss } from "./testing.ts";
import type { FormatSpec } from "../../core/suite_types.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { linearBitsPerWeight } from "../models/bits.ts";
import { sideTensor, storageName } from "../../kernels/formats/matrix.ts";

function spec(weights: string, extra: Partial<FormatSpec> = {}): FormatSpec {
  return { id: weights, weights, group: 0, symmetric: true, options: {}, ...extra };
}

/** A weight matrix, correlated inputs' Hessian `XᵀX` and random signs. */
function problem(m: number, n: number) {
  const rand = lcg(m * 7 + n);
  const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const w = Float64Array.from({ length: m * n }, () => 0.05 * gauss());
  const tokens = 4 * n;
  const x = new Float64Array(tokens * n);
  for (let t = 0; t < tokens; t++) {
    const shared = gauss();
    for (let c = 0; c < n; c++) x[t * n + c] = shared * (1 + (c % 5)) + 0.3 * gauss();
  }
  const h = new Float64Array(n * n);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) h[i * n + j]! += x[t * n + i]! * x[t * n + j]!;
    }
  }
  const sign = () => (rand() < 0.5 ? -1 : 1);
  return { w, h, su: Int8Array.from({ length: n }, sign), sv: Int8Array.from({ length: m }, sign) };
}

const SETTINGS: QuipSharpSettings = { bits: 2, sigmaReg: 0.01, scaleOverride: -1, tuneIters: 0 };

for (const [m, n] of [[32, 64], [16, 172]] as const) {
  Deno.test(`quip_sharp ${m}×${n}: LDLQ and its refinement lower the proxy loss of nearest rounding`, () => {
    const { w, h, su, sv } = problem(m, n);
    // A Hessian of the identity makes LDLQ plain nearest rounding of the transformed matrix.
    const eye = new Float64Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    const nearest = quipSharpQuantize(w, eye, m, n, su, sv, SETTINGS);
    const ldlq = quipSharpQuantize(w, h, m, n, su, sv, SETTINGS);
    const tuned = quipSharpQuantize(w, h, m, n, su, sv, { ...SETTINGS, tuneIters: 3 });
    const [a, b, c] = [nearest, ldlq, tuned].map((r) => proxyLoss(w, r.q, h, m, n));
    assert.ok(b! < 0.8 * a!, `LDLQ ${b} vs nearest ${a}`);
    assert.ok(c! <= b! * 1.001, `tuned ${c} vs LDLQ ${b}`);
    assert.equal(storageName(ldlq.matrix), "e8p12");
    // Nearest rounding at 2 bits keeps most of the matrix (relative error well below 1).
    let err = 0;
    let norm = 0;
    for (let i = 0; i < w.length; i++) {
      [err, norm] = [err + (w[i]! - nearest.q[i]!) ** 2, norm + w[i]! ** 2];
    }
    assert.ok(Math.sqrt(err / norm) < 0.45, `relative error ${Math.sqrt(err / norm)}`);
  });
}

Deno.test("quip_sharp: residual variants cut the error of 2 bits; 3 and 4 bits store more", () => {
  const [m, n] = [16, 172];
  const { w, h, su, sv } = problem(m, n);
  const errors = ([2, 3, 4] as const).map((bits) => {
    const r = quipSharpQuantize(w, h, m, n, su, sv, { ...SETTINGS, bits });
    assert.equal(storageName(r.matrix), bits === 2 ? "e8p12" : `e8p12-rvq${bits}`);
    return proxyLoss(w, r.q, h, m, n);
  });
  assert.ok(errors[1]! < 0.5 * errors[0]! && errors[2]! < 0.5 * errors[1]!, `${errors}`);
});

Deno.test("quip_sharp refuses formats other than int2–int4 and unknown codebooks", async () => {
  assert.match(quipSharp.unsupported(spec("int8"))!, /not int2, int3 or int4/);
  assert.match(quipSharp.unsupported(spec("int2", { group: 32 }))!, /no groups/);
  assert.equal(quipSharp.unsupported(spec("int2")), undefined);
  await assert.rejects(
    () =>
      quipSharp.quantize(
        {} as never,
        spec("int2"),
        { ...structuredClone(quipSharp.options), codebook: "D4" },
        { seed: 0 },
      ),
    QuipSharpError,
  );
});

const STORIES = "models/stories260K";
const haveStories = hasShared(STORIES, "stories260K.bin") &&
  hasShared("data/text/tinyshakespeare.txt") && hasShared("data/text/tinystories_sample.txt");

Deno.test({
  name: "quip_sharp: stories260K at 2 bits beats GPTQ and RTN int2 g32 on TinyStories",
  ignore: !haveStories,
  async fn() {
    const model = await loadLlama2c(sharedPath(STORIES, "stories260K.bin"));
    const ids = model.tokenizer.encode(
      await Deno.readTextFile(sharedPath("data/text/tinystories_sample.txt")),
    ).slice(0, 256 * 4);
    const calibration = { dataset: "shakespeare", samples: 8, seq_len: 256 };
    const ctx = { seed: 0, datasets: CALIBRATION_SETS };
    const q = await quipSharp.quantize(
      model,
      spec("int2"),
      { ...structuredClone(quipSharp.options), calibration, tune_iters: 2 },
      ctx,
    );
    // The stored input signs are the ones quipSharpSigns gives (what the references run with).
    const wq = q.weights.layers[1]!.wq;
    const { su } = quipSharpSigns(0, 1, "wq", wq.rows, wq.cols);
    const stored = sideTensor(wq, "su");
    su.forEach((s, c) => assert.equal((stored[c >> 3]! >> (c & 7)) & 1, s < 0 ? 1 : 0));
    const g32 = spec("int2", { group: 32 });
    const g = await gptq.quantize(
      model,
      g32,
      { ...structuredClone(gptq.options), calibration },
      ctx,
    );
    const r = await rtn.quantize(model, g32, structuredClone(rtn.options), { seed: 0 });
    const bits = linearBitsPerWeight(q);
    assert.ok(bits < linearBitsPerWeight(g), `${bits} vs ${linearBitsPerWeight(g)}`);
    const [nq, ng, nr] = [
      await heldOutNll(q, ids),
      await heldOutNll(g, ids),
      await heldOutNll(r, ids),
    ];
    assert.ok(Number.isFinite(nq));
    assert.ok(nq < ng && nq < nr, `QuIP# ${nq} (${bits} bpw), GPTQ ${ng}, RTN ${nr}`);
  },
});
