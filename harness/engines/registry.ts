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
import { Registry } from "../../core/registry.ts";
import { backends } from "../../kernels/registry.ts";
import type { Engine } from "./engine.ts";
import { InProcessEngine, inProcessEngineId } from "./in_process.ts";

/** How a kind of engine is opened for a cell. */
export interface EngineFactory {
  /** The engine's id for a cell on `backend` (a part of result cache keys). */
  id(backend: string): string;
  /** Opens the (quantized) model of a cell on `backend`. */
  open(model: LlamaModel, backend: string): Promise<Engine>;
}

/** The in-process engine over a backend of this program. */
export const inProcessFactory: EngineFactory = {
  id: inProcessEngineId,
  open: (model, backend) => InProcessEngine.load(model, backend),
};

/** Engines other than the in-process one, by the backend name a suite gives them. */
export const engines = new Registry<EngineFactory>("engine", []);

/**
 * The engine factory for a backend name: a registered engine, else the in-process engine over
 * the kernel backend of that name (an unknown name fails with the backends' known names).
 */
export function engineFor(backend: string): EngineFactory {
  if (engines.has(backend)) return engines.get(backend);
  backends.get(backend);
  return inProcessFactory;
}
