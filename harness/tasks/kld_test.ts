import assert from "node:assert/strict";
import { sharedPath } from "../../core/shared.ts";
import {
  covarianceOfMeans,
  encodeLogProbs,
  kld,
  KlStats,
  meanAndUncertainty,
  MissingReferenceError,
  percentile,
  rowSlots,
  storedRow,
} from "./kld.ts";
import { perplexity } from "./perplexity.ts";
import {
  contextFor,
  datasetOf,
  missing,
  referenceOver,
  samplesReproduce,
  stories,
  storiesInt4,
} from "./test_context.ts";

const TINY = "data/text/tinystories_sample.txt";
const ignore = missing(TINY);

/** Exact log-softmax in float64. */
function logSoftmax(logits: number[]): number[] {
  const max = Math.max(...logits);
  const lse = Math.log(logits.reduce((a, v) => a + Math.exp(v - max), 0)) + max;
  return logits.map((v) => v - lse);
}

Deno.test("kld: stored rows follow llama.cpp's uint16 layout within half a step", () => {
  const logits = [3, -1.5, 0.25, -30, 2.75];
  const store = new Uint16Array(rowSlots(5));
  assert.equal(rowSlots(5), 10); // 2·⌈5/2⌉ + 4
  encodeLogProbs(new Float32Array(logits), 5, 0, store, 0);
  const { scale, min } = storedRow(store, 0);
  // Range [max − 16, max] of the logits in 65535 steps; below it, the floor.
  assert.ok(Math.abs(scale - 16 / 65535) < 1e-9);
  const exact = logSoftmax(logits);
  for (let i = 0; i < 5; i++) {
    const got = scale * store[4 + i]! + min;
    if (logits[i]! > 3 - 16) assert.ok(Math.abs(got - exact[i]!) <= scale / 2 + 1e-6, `entry ${i}`);
    else {assert.ok(
        Math.abs(got - (exact[0]! - 16)) < 1e-5,
        "entries below max − 16 sit at the floor",
      );}
  }
});

Deno.test("kld: statistics of a two-token example match the closed form", () => {
  // Reference uniform over 2; scored model q = (3/4, 1/4): KL(P‖Q) = ½ln(½/¾) + ½ln(½/¼) = ½ln(4/3).
  const store = new Uint16Array(rowSlots(2));
  encodeLogProbs(new Float32Array([0, 0]), 2, 0, store, 0);
  const stats = new KlStats();
  const q = new Float32Array([Math.log(3), 0]);
  const r = stats.add(q, 2, 0, store, 0, 1, Math.log(2));
  assert.ok(Math.abs(r.kld - 0.5 * Math.log(4 / 3)) < 1e-7);
  assert.ok(Math.abs(r.nll - Math.log(4)) < 1e-6); // q(1) = 1/4
  assert.ok(Math.abs(r.nllBase - Math.log(2)) < 1e-6);
  assert.ok(Math.abs(r.pDiff - (0.25 - 0.5)) < 1e-6);
  assert.equal(r.sameTop, true, "ties go to the first token on both sides");
});

Deno.test("kld: percentiles interpolate as numpy (linear) and llama.cpp do", () => {
  const v = Array.from({ length: 10 }, (_, i) => i + 1);
  // numpy.percentile([1..10], [99, 95, 50]) = 9.91, 9.55, 5.5
  assert.ok(Math.abs(percentile(v, 0.99) - 9.91) < 1e-12);
  assert.ok(Math.abs(percentile(v, 0.95) - 9.55) < 1e-12);
  assert.equal(percentile(v, 0.5), 5.5);
  assert.equal(percentile(v, 1), 10);
  assert.equal(meanAndUncertainty(10, 20, 10).stderr, null, "llama.cpp: no uncertainty for N ≤ 10");
  assert.equal(covarianceOfMeans(1, 2, 3, 9), 0);
  // 11 values 0,…,10: mean 5, population variance 10 → sqrt(10/10) = 1.
  const xs = Array.from({ length: 11 }, (_, i) => i);
  const m = meanAndUncertainty(55, xs.reduce((a, b) => a + b * b, 0), 11);
  assert.equal(m.mean, 5);
  assert.ok(Math.abs(m.stderr! - 1) < 1e-12);
});

Deno.test({
  name: "kld: a model against itself: KLD ≈ 0, same top 100 %, ln PPL ratio ≈ 0 ± ≈ 0",
  ignore,
  async fn() {
    const model = await stories();
    const ctx = contextFor(model, "kld", { context: 128 }, {
      dataset: datasetOf(sharedPath(TINY)),
      reference: referenceOver(model),
    });
    const rows = await kld.run(ctx);
    const get = (m: string) => rows.find((r) => r.metric === m)!;
    assert.deepEqual(rows.map((r) => r.metric), [
      "kld",
      "kld_p99",
      "kld_p95",
      "kld_median",
      "kld_max",
      "same_top_p",
      "rms_dp",
      "ln_ppl_ratio",
      "ppl_ratio",
      "ppl",
      "ppl_ref",
    ]);
    // Only the uint16 storage of the reference separates the two.
    assert.ok(Math.abs(get("kld").value) < 1e-6, `kld ${get("kld").value}`);
    assert.ok(get("kld_max").value < 1e-4);
    assert.equal(get("same_top_p").value, 1);
    assert.ok(Math.abs(get("ln_ppl_ratio").value) < 1e-4);
    // Without the covariance term the uncertainty would be √2 × that of ln PPL; with it, ~0.
    assert.ok(get("ln_ppl_ratio").stderr! < 1e-4);
    assert.ok(get("ppl").stderr! / get("ppl").value > 0.01);
  },
});

Deno.test({
  name:
    "kld: int4 against f32: positive divergence, PPLs agree with the perplexity task, cached once",
  ignore,
  async fn() {
    const f32 = await stories();
    const int4 = await storiesInt4();
    const dataset = datasetOf(sharedPath(TINY));
    const cacheDir = await Deno.makeTempDir();
    const ref = referenceOver(f32, { cacheDir, key: "kld-int4-test" });
    const opts = { context: 128, protocol: "llama.cpp" };
    const rows = await kld.run(contextFor(int4, "kld", opts, { dataset, reference: ref }));
    const get = (m: string) => rows.find((r) => r.metric === m)!.value;
    assert.ok(get("kld") > 1e-4 && get("kld") < 1, `kld ${get("kld")}`);
    assert.ok(get("kld_median") <= get("kld_p95") && get("kld_p95") <= get("kld_p99"));
    assert.ok(get("kld_p99") <= get("kld_max"));
    assert.ok(get("same_top_p") > 0.5 && get("same_top_p") < 1);
    assert.ok(get("rms_dp") > 0);
    const pplOf = async (model: typeof f32) =>
      (await perplexity.run({ ...contextFor(model, "perplexity", opts), dataset }))[0]!.value;
    const pplInt4 = await pplOf(int4), pplF32 = await pplOf(f32);
    assert.ok(Math.abs(get("ppl") / pplInt4 - 1) < 1e-9, "the same tokens are scored");
    assert.ok(Math.abs(get("ppl_ref") / pplF32 - 1) < 1e-6, "the reference NLL is kept exactly");
    assert.ok(Math.abs(get("ln_ppl_ratio") - Math.log(pplInt4 / pplF32)) < 1e-6);
    assert.deepEqual(samplesReproduce(rows), []);
    assert.equal(ref.opened, 1);
    // The reference is on disk now: a second run does not open the reference model again.
    const again = await kld.run(contextFor(int4, "kld", opts, { dataset, reference: ref }));
    assert.equal(ref.opened, 1);
    assert.deepEqual(again.map((r) => r.value), rows.map((r) => r.value));
    await assert.rejects(
      kld.run(contextFor(int4, "kld", opts, { dataset })),
      MissingReferenceError,
    );
  },
});
