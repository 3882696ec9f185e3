/**
 * Shared pieces of the task tests: the stories260K model on the CPU backend, task contexts over an
 * in-process engine, and a fake runner whose logits are known in closed form.
 *
 * @module
 */
import type { ModelRunner } from "../../kernels/backend.ts";
import type { LlamaModel, Tokenizer } from "../../core/model.ts";
import type { DatasetSpec } from "../../core/suite_types.ts";
import type { Metric, ReferenceContext, TaskContext } from "./task.ts";
import type { Engine } from "../engines/engine.ts";
import { loadLlama2c } from "../models/llama2c.ts";
import { CpuRunner } from "../../kernels/cpu/backend.ts";
import { hasShared, sharedPath } from "../../core/shared.ts";
import { methods } from "../methods/registry.ts";
import { InProcessEngine } from "../engines/in_process.ts";

/** The stories260K checkpoint under shared/. */
export const STORIES = "models/stories260K/stories260K.bin";

/** Whether the tests that need stories260K (and, optionally, more shared files) must skip. */
export function missing(...more: string[]): boolean {
  return ![STORIES, ...more].every((p) => hasShared(p));
}

let cached: Promise<LlamaModel> | undefined;

/** stories260K, loaded once per test process. */
export function stories(): Promise<LlamaModel> {
  return cached ??= loadLlama2c(sharedPath(STORIES));
}

/** stories260K quantized by RTN (`int4`, group 32). */
export async function storiesInt4(): Promise<LlamaModel> {
  return await methods.get("rtn").quantize(
    await stories(),
    { id: "int4-g32", weights: "int4", group: 32, symmetric: true, options: {} },
    structuredClone(methods.get("rtn").options),
    { seed: 0 },
  );
}

/** A dataset spec for a file. */
export function datasetOf(
  path: string,
  kind: "text" | "jsonl" = "text",
  extra: Partial<DatasetSpec> = {},
): DatasetSpec {
  return { id: path.split("/").pop()!, kind, path, maxChars: 0, ...extra };
}

/** An in-process engine over a model on the CPU backend, or over `runner` when given. */
export function engineFor(model: LlamaModel, runner?: ModelRunner): InProcessEngine {
  return new InProcessEngine(model, runner ?? new CpuRunner(model), "cpu");
}

/** A task context for a model on the CPU backend (or on `extra.runner`). */
export function contextFor(
  model: LlamaModel,
  task: string,
  options: Record<string, unknown>,
  { runner, ...extra }: Partial<TaskContext> & { runner?: ModelRunner } = {},
): TaskContext {
  return {
    engine: engineFor(model, runner),
    task: { id: task, task, options },
    dataset: undefined,
    seed: 0,
    progress: () => {},
    ...extra,
  };
}

/** A reference context over a fixed model, counting how often it is opened. */
export function referenceOver(
  model: LlamaModel,
  options: { key?: string; cacheDir?: string; isSelf?: boolean } = {},
): ReferenceContext & { opened: number } {
  const ref = {
    id: "none/f32",
    key: options.key ?? "test-reference",
    isSelf: options.isSelf ?? false,
    cacheDir: options.cacheDir,
    opened: 0,
    open() {
      ref.opened++;
      return Promise.resolve(engineFor(model) as Engine);
    },
  };
  return ref;
}

/**
 * A runner whose logits row for input token `t` at position `p` is `logitsOf(t, p)`, recording
 * every call.
 */
export class FakeRunner implements ModelRunner {
  readonly calls: { tokens: number[]; pos: number }[] = [];
  constructor(
    readonly vocab: number,
    readonly logitsOf: (token: number, pos: number) => ArrayLike<number>,
  ) {}
  forward(tokens: ArrayLike<number>, pos: number): Promise<Float32Array> {
    const list = Array.from(tokens);
    this.calls.push({ tokens: list, pos });
    const out = new Float32Array(list.length * this.vocab);
    list.forEach((t, i) => out.set(this.logitsOf(t, pos + i), i * this.vocab));
    return Promise.resolve(out);
  }
  reset(): void {}
  dispose(): void {}
}

/** A tokenizer over single characters `a`..: id = 3 + code − 97 (BOS 1, EOS 2). */
export function letterTokenizer(vocab: number): Tokenizer {
  return {
    vocabSize: vocab,
    bosId: 1,
    eosId: 2,
    encode: (text) => [...text].map((c) => 3 + c.charCodeAt(0) - 97),
    decode: (ids) => ids.filter((i) => i >= 3).map((i) => String.fromCharCode(97 + i - 3)).join(""),
  };
}

/**
 * Checks what `compare` relies on: a row's value is the weighted mean q of its samples, exp(q) or
 * q / ln 2 (the `failures` row's samples are failure codes and are skipped).
 */
export function samplesReproduce(rows: readonly Metric[]): string[] {
  const bad: string[] = [];
  for (const r of rows) {
    const s = r.samples;
    if (!s || s.kind === "failure_code") continue;
    const w = s.weights ?? s.values.map(() => 1);
    const q = s.values.reduce((a, v, i) => a + v * w[i]!, 0) / w.reduce((a, b) => a + b, 0);
    const close = (x: number) => Math.abs(x - r.value) <= 1e-9 * Math.max(1, Math.abs(r.value));
    if (!close(q) && !close(Math.exp(q)) && !close(q / Math.LN2)) bad.push(r.metric);
  }
  return bad;
}
