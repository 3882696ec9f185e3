import assert from "node:assert/strict";
import { type MutationMessage, type MutationRequest, writeTinyFiles } from "./testing.ts";

/** A trial that takes longer than this is taken as a hang. */
const HANG_MS = 10_000;
/** The worker's start (module loading, type checks) gets longer: a busy CI machine is slow there. */
const START_MS = 120_000;
const TRIALS = 1200;

Deno.test(`mutation: ${TRIALS} seeded mutations of GGUF and safetensors files raise only named errors`, async () => {
  const work = await Deno.makeTempDir({ prefix: "quantbench-mutation-" });
  const worker = new Worker(new URL("./mutation_worker.ts", import.meta.url).href, {
    type: "module",
  });
  try {
    const { gguf, hf } = await writeTinyFiles(work);
    const result = await new Promise<Extract<MutationMessage, { kind: "done" }>>(
      (resolve, reject) => {
        let last = "before the first trial";
        let timer: ReturnType<typeof setTimeout> | undefined;
        const arm = (ms = HANG_MS) => {
          clearTimeout(timer);
          timer = setTimeout(() => reject(new Error(`hang (over ${ms} ms): ${last}`)), ms);
        };
        worker.onmessage = (e: MessageEvent<MutationMessage>) => {
          if (e.data.kind === "trial") {
            last = `trial ${e.data.trial}, ${e.data.what}`;
            arm();
          } else {
            clearTimeout(timer);
            resolve(e.data);
          }
        };
        worker.onerror = (e) => {
          clearTimeout(timer);
          e.preventDefault();
          reject(new Error(`worker failed after ${last}: ${e.message}`));
        };
        arm(START_MS);
        worker.postMessage(
          { gguf, hf, work, seed: 20240601, trials: TRIALS } satisfies MutationRequest,
        );
      },
    );
    console.log(JSON.stringify(result.outcomes));
    assert.deepEqual(result.failures, []);
    const total = Object.values(result.outcomes).reduce((a, b) => a + b, 0);
    assert.equal(total, TRIALS);
    // The mutations must actually reach the error paths, not only the weights.
    assert.ok(total - (result.outcomes.loaded ?? 0) > TRIALS / 2, JSON.stringify(result.outcomes));
  } finally {
    worker.terminate();
    await Deno.remove(work, { recursive: true });
  }
});
