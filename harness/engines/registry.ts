/**
 * Registry of engines: what stands behind a cell's `backend` name. The in-process engine serves
 * every backend of `kernels/registry.ts` (cpu, webgpu); an engine that runs the model elsewhere
 * (a llama.cpp build, an OpenAI-compatible server) registers under its own name here, and cells
 * naming it are opened by it. Adding an engine is one file plus one line here.
 *
 * @example
 * ```ts
 * import { engineFor } from "./registry.ts";
 * engineFor("cpu").id("cpu"); // "in_process/cpu"
 * ```
 *
 * @module
 */
import type { LlamaModel } from "../../core/model.ts";
import type { Cell, EngineSpec, FormatSpec } from "../../core/suite_types.ts";
import { runtimeUnsupportedOn } from "../../kernels/formats/runtime_quant.ts";
import { Registry } from "../../core/registry.ts";
import { backends } from "../../kernels/registry.ts";
import type { Engine } from "./engine.ts";
import { InProcessEngine, inProcessEngineId } from "./in_process.ts";
import { openAIEngineId, openOpenAIEngine } from "./openai.ts";

/** What a cell gives its engine beside the model: the suite's settings and the cache folder. */
export interface EngineContext {
  /** The suite's `engines:` entry for the cell's backend, if it has one. */
  spec?: EngineSpec;
  /** The result cache folder (an engine may cache what it was told beneath it). */
  cacheDir?: string;
  /** The cell being opened (engines that read the model file themselves need its path). */
  cell?: Cell;
}
import {
  LLAMACPP_BACKEND,
  llamaCppEngineId,
  llamaCppUnavailable,
  llamaCppUnsupported,
  openLlamaCppCell,
} from "./llamacpp.ts";

/** How a kind of engine is opened for a cell. */
export interface EngineFactory {
  /** The engine's id for a cell on `backend` (a part of result cache keys). */
  id(backend: string, spec?: EngineSpec): string;
  /** Opens the (quantized) model of a cell on `backend`. */
  open(model: LlamaModel, backend: string, context?: EngineContext): Promise<Engine>;
  /**
   * `served`: the engine asks a model that runs elsewhere, so a cell gives it only the model
   * entry's configuration and tokenizer (`served_model.ts`), unquantized and without weights.
   */
  model?: "local" | "served";
  /** Why a cell cannot run on this engine (it is then `skipped`), or undefined. */
  unsupported?(cell: Cell): string | undefined;
  /** Why the engine cannot run on this machine (its cells are then `skipped`), or undefined. */
  unavailable?(): Promise<string | undefined>;
}

/** An OpenAI-compatible server (`harness/engines/openai.ts`); the model supplies the tokenizer. */
export const openAIFactory: EngineFactory = {
  id: (backend, spec) =>
    spec
      ? openAIEngineId(String(spec.options.base_url), String(spec.options.model)) +
        // Prompts all sent as token ids to /completions may be answered otherwise.
        (spec.options.chat === false ? " chat=false" : "")
      : backend,
  open: (model, _backend, context) =>
    Promise.resolve(openOpenAIEngine(model, context?.spec, context?.cacheDir)),
  model: "served",
};

/** The in-process engine over a backend of this program. */
export const inProcessFactory: EngineFactory = {
  id: inProcessEngineId,
  open: (model, backend) => InProcessEngine.load(model, backend),
};

/** Engines other than the in-process one, by the backend name a suite gives them. */
export const engines = new Registry<EngineFactory>("engine", [
  ["openai", openAIFactory],
  [LLAMACPP_BACKEND, {
    id: () => llamaCppEngineId(),
    open: (model, _backend, context) => {
      if (!context?.cell) throw new TypeError("The llamacpp engine opens cells, not models");
      return openLlamaCppCell(model, context.cell);
    },
    unsupported: llamaCppUnsupported,
    unavailable: llamaCppUnavailable,
  }],
]);

/** Every backend name a suite may give: the kernel backends and the registered engines. */
export function backendNames(): string[] {
  return [...backends.names(), ...engines.names()];
}

/** Whether `name` is a kernel backend or a registered engine. */
export function hasBackend(name: string): boolean {
  return backends.has(name) || engines.has(name);
}

/**
 * Why a cell's backend cannot serve it (its format's run-time quantization, or what a registered
 * engine cannot run), or undefined.
 */
export function backendUnsupported(
  cell: Cell,
  format: FormatSpec = cell.format,
): string | undefined {
  if (engines.has(cell.backend)) return engines.get(cell.backend).unsupported?.(cell);
  return runtimeUnsupportedOn(format, cell.backend, backends.get(cell.backend).runtimeQuantization);
}

/** Why the backend (or engine) of that name cannot run on this machine, or undefined. */
export function backendUnavailable(name: string): Promise<string | undefined> {
  if (engines.has(name)) return engines.get(name).unavailable?.() ?? Promise.resolve(undefined);
  // A name the suite's `engines:` block defines is reachable or not only when asked.
  return backends.has(name) ? backends.get(name).unavailable() : Promise.resolve(undefined);
}

/**
 * The engine factory for a backend name: the kind of the suite's engine entry `spec` when given,
 * a registered engine, else the in-process engine over the kernel backend of that name (an
 * unknown name fails with the backends' known names).
 */
export function engineFor(backend: string, spec?: EngineSpec): EngineFactory {
  if (spec) return engines.get(spec.kind);
  if (engines.has(backend)) return engines.get(backend);
  backends.get(backend);
  return inProcessFactory;
}
