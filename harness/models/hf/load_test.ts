import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../../../core/shared.ts";
import { loadHfModel } from "./load.ts";
import { ModelIoError } from "../errors.ts";
import { CpuRunner } from "../../../kernels/cpu/backend.ts";

const PARITY = join(REPO_ROOT, "fixtures", "parity");

interface Reference {
  input_ids: number[];
  vocab_size: number;
  logits: number[][];
}

for (const arch of ["llama", "mistral", "qwen2", "qwen3"]) {
  Deno.test(`hf: ${arch} logits match PyTorch/transformers within 1e-4`, async () => {
    const dir = join(PARITY, arch);
    const ref = JSON.parse(await Deno.readTextFile(join(dir, "reference.json"))) as Reference;
    const model = await loadHfModel(dir);
    assert.equal(model.config.vocabSize, ref.vocab_size);
    const logits = new CpuRunner(model).forwardSync(ref.input_ids, 0);
    let max = 0;
    for (let t = 0; t < ref.input_ids.length; t++) {
      for (let v = 0; v < ref.vocab_size; v++) {
        max = Math.max(max, Math.abs(logits[t * ref.vocab_size + v]! - ref.logits[t]![v]!));
      }
    }
    assert.ok(max <= 1e-4, `${arch}: max abs diff ${max}`);
    console.log(`${arch}: max abs diff ${max.toExponential(2)}`);
  });
}

for (const arch of ["llama", "qwen2", "qwen3"]) {
  Deno.test(`hf: a streamed ${arch} load reads each layer as the eager load does`, async () => {
    const dir = join(PARITY, arch);
    const eager = await loadHfModel(dir);
    const streamed = await loadHfModel(dir, { stream: true });
    const stream = streamed.stream!;
    try {
      assert.deepEqual(streamed.weights.layers, []);
      assert.equal(stream.count, eager.config.nLayers);
      assert.deepEqual({ ...streamed.weights, layers: eager.weights.layers }, eager.weights);
      for (let i = stream.count - 1; i >= 0; i--) {
        const layer = await stream.read(i);
        assert.deepEqual(layer, eager.weights.layers[i]);
        // Each read is afresh: nothing is kept that would hold the layer in memory.
        assert.notEqual((await stream.read(i)).wq, layer.wq);
      }
    } finally {
      stream.close();
    }
    await assert.rejects(stream.read(0), ModelIoError);
  });
}
