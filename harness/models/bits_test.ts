import assert from "node:assert/strict";
import { linearBitsPerWeight, nativeFormatName } from "./bits.ts";
import { loadModelPath } from "./load.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { rtn } from "../methods/rtn.ts";
import { none } from "../methods/none.ts";

const GGUF = "models/stories260K/gguf";

Deno.test({
  name: "bits: a llama-quantize file's own format names the cell (ffn_down stays F32 there)",
  ignore: !hasShared(GGUF),
  async fn() {
    const q4 = await loadModelPath(sharedPath(GGUF, "stories260K-q4_0.gguf"));
    assert.equal(nativeFormatName(q4), "q4_0+f32");
    // Q4_0 is 4.5 bits per weight; the F32 ffn_down (a third of the linear weights) pulls it up.
    assert.ok(linearBitsPerWeight(q4) > 4.5 && linearBitsPerWeight(q4) < 32);
    const f32 = await loadModelPath(sharedPath(GGUF, "stories260K-f32.gguf"));
    assert.equal(nativeFormatName(f32), "f32");
  },
});

Deno.test("bits: `native` runs with method none only", () => {
  const native = { id: "native", weights: "native", group: 0, symmetric: true, options: {} };
  assert.equal(none.unsupported(native), undefined);
  assert.match(rtn.unsupported(native) ?? "", /native/);
});
