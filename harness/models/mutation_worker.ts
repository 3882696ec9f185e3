/**
 * Test support: runs seeded mutation trials over a tiny GGUF model and a tiny Hugging Face
 * folder (see `testing.ts`) inside a worker, so `mutation_test.ts` can stop and report a trial that
 * hangs. Each trial mutates one file, loads the model, tokenizes and runs one forward pass; the
 * worker posts the trial's description before running it and a summary at the end. Errors other
 * than {@linkcode ModelFileError} and {@linkcode GgufError} are reported as failures.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { join } from "node:path";
import { mutate, type MutationMessage, type MutationRequest, seededRandom } from "./testing.ts";
import { loadGgufModel } from "./gguf_model.ts";
import { loadHfModel } from "./hf/load.ts";
import { GgufError, openGguf } from "./gguf/reader.ts";
import { ModelFileError } from "./errors.ts";
import type { LlamaModel } from "../../core/model.ts";
import { CpuRunner } from "../../kernels/cpu/backend.ts";

function exercise(model: LlamaModel): void {
  const ids = model.tokenizer.encode("hello abc");
  new CpuRunner(model, 4).forwardSync([model.tokenizer.bosId, ...ids.slice(0, 2)], 0);
}

self.onmessage = async (event: MessageEvent<MutationRequest>) => {
  const { gguf, hf, work, seed, trials } = event.data;
  const random = seededRandom(seed);
  const ggufBytes = await Deno.readFile(gguf);
  using base = await openGguf(gguf);
  const ggufHeader = base.dataOffset;
  const dir = join(work, "hf");
  await Deno.mkdir(dir, { recursive: true });
  const originals = new Map<string, Uint8Array>();
  for (
    const name of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
  ) {
    originals.set(name, await Deno.readFile(join(hf, name)));
    await Deno.writeFile(join(dir, name), originals.get(name)!);
  }
  const st = originals.get("model.safetensors")!;
  const stHeader = 8 + Number(new DataView(st.buffer, st.byteOffset).getBigUint64(0, true));
  const outcomes: Record<string, number> = {};
  const failures: { trial: number; what: string; error: string }[] = [];
  const target = join(work, "mutated.gguf");
  for (let trial = 0; trial < trials; trial++) {
    let what: string;
    let load: () => Promise<LlamaModel>;
    let restore: string | undefined;
    if (trial % 2 === 0) {
      const m = mutate(ggufBytes, ggufHeader, random);
      what = `tiny.gguf: ${m.what}`;
      await Deno.writeFile(target, m.bytes);
      load = () => loadGgufModel(target);
    } else {
      const name = random() < 0.85 ? "model.safetensors" : "config.json";
      const bytes = originals.get(name)!;
      const m = mutate(bytes, name === "config.json" ? bytes.length : stHeader, random);
      what = `hf/${name}: ${m.what}`;
      await Deno.writeFile(join(dir, name), m.bytes);
      restore = name;
      load = () => loadHfModel(dir);
    }
    self.postMessage({ kind: "trial", trial, what } satisfies MutationMessage);
    let outcome = "loaded";
    try {
      exercise(await load());
    } catch (e) {
      if (e instanceof ModelFileError || e instanceof GgufError) {
        outcome = e.name;
      } else {
        outcome = "unexpected";
        failures.push({ trial, what, error: (e as Error)?.stack ?? String(e) });
      }
    }
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    if (restore !== undefined) await Deno.writeFile(join(dir, restore), originals.get(restore)!);
  }
  self.postMessage({ kind: "done", outcomes, failures } satisfies MutationMessage);
};
