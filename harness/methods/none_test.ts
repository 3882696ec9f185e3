import assert from "node:assert/strict";
import { none } from "./none.ts";
import { weightBytes } from "./calibration.ts";
import { writeTinyFiles } from "../models/testing.ts";
import { loadHfModel } from "../models/hf/load.ts";
import type { FormatSpec } from "../../core/suite_types.ts";

const F32: FormatSpec = { id: "f32", weights: "f32", group: 0, symmetric: true, options: {} };

Deno.test("none: a streamed model comes back whole, as loaded eagerly, its size the peak", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { hf } = await writeTinyFiles(dir);
    const eager = await loadHfModel(hf);
    const streamed = await loadHfModel(hf, { stream: true });
    const stats: Record<string, number> = {};
    const record = (s: Record<string, number>) => Object.assign(stats, s);
    const whole = await none.quantize(streamed, F32, {}, { seed: 0, record })
      .finally(() => streamed.stream!.close());
    assert.equal(whole.stream, undefined);
    assert.deepEqual(whole, eager);
    assert.equal(stats.quantize_peak_bytes, weightBytes(eager.weights));
    assert.equal(await none.quantize(eager, F32, {}, { seed: 0 }), eager);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
