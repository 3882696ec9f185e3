/**
 * The reference cell of tasks that compare against one (`kld`, `long_context`): resolving the
 * `reference: { method, format }` option of a task to a method and a format, opening the reference
 * model once per cell, and caching what a task computes on it on disk, so that the reference
 * distributions are computed once per model (and dataset and options) and not once per cell.
 *
 * `method` names a method id of the suite, else a registered method with its default options;
 * `format` names a format id of the suite, else an element format preset (`f32`, `int8`, …).
 * `model` names another model of the suite (llama.cpp's `--kl-divergence-base` use: a Q4_K_M file
 * against the F16 file); with it, an unnamed method or format is the scored cell's own. The
 * reference runs on the backend of the cell being scored.
 *
 * @module
 */
import { join } from "node:path";
import type { Cell, FormatSpec, MethodSpec, ModelSpec, Suite } from "../../core/suite_types.ts";
import type { Engine } from "../engines/engine.ts";
import type { ReferenceContext } from "./task.ts";
import { methods } from "../methods/registry.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import { writeFileAtomic } from "../../core/atomic.ts";
import { openCell } from "../runner/open_cell.ts";

/** The default reference: the same model unquantized in float32. */
export const DEFAULT_REFERENCE = { method: "none", format: "f32" };

/** Thrown when a task's `reference` cannot be resolved. */
export class ReferenceCellError extends Error {
  override name = "ReferenceCellError";
}

/** A resolved reference: what the runner passes to the cell computation (plain data). */
export interface ReferenceJob extends ResolvedReference {
  /** See {@linkcode ReferenceContext.key}. */
  key: string;
}

/**
 * A resolved reference: its method and format, and another model of the suite when it names one
 * (then an absent method or format is the scored cell's own).
 */
export interface ResolvedReference {
  model?: ModelSpec;
  method?: MethodSpec;
  format?: FormatSpec;
}

/** Resolves a task's `reference` option against the suite. */
export function resolveReference(
  suite: Pick<Suite, "methods" | "formats"> & Partial<Pick<Suite, "models">>,
  spec: unknown,
): ResolvedReference {
  const written = (spec ?? {}) as Record<string, unknown>;
  let model: ModelSpec | undefined;
  if (written.model !== undefined) {
    model = suite.models?.find((x) => x.id === written.model);
    if (!model) {
      throw new ReferenceCellError(
        `Reference model ${JSON.stringify(written.model)} is not a model id of the suite ` +
          `(known: ${(suite.models ?? []).map((x) => x.id).join(", ")})`,
      );
    }
    if (written.method === undefined && written.format === undefined) return { model };
  }
  const { method: m, format: f } = { ...DEFAULT_REFERENCE, ...written } as Record<
    string,
    unknown
  >;
  if (typeof m !== "string" || typeof f !== "string") {
    throw new ReferenceCellError(
      `Reference ${JSON.stringify(spec)} must name a method and a format, e.g. ` +
        `{ method: none, format: f32 }`,
    );
  }
  const method: MethodSpec | undefined = suite.methods.find((x) => x.id === m) ??
    (methods.has(m)
      ? { id: m, method: m, options: structuredClone(methods.get(m).options) }
      : undefined);
  if (!method) {
    throw new ReferenceCellError(
      `Reference method "${m}" is neither a method id of the suite nor a known method ` +
        `(known: ${methods.names().join(", ")})`,
    );
  }
  const format: FormatSpec | undefined = suite.formats.find((x) => x.id === f) ??
    (elementFormats.has(f)
      ? { id: f, weights: f, group: 0, symmetric: true, options: {} }
      : undefined);
  if (!format) {
    throw new ReferenceCellError(
      `Reference format "${f}" is neither a format id of the suite nor a known weight format ` +
        `(known: ${elementFormats.names().join(", ")})`,
    );
  }
  const why = methods.get(method.method).unsupported(format);
  if (why) throw new ReferenceCellError(`Reference ${m}/${f}: ${why}`);
  return model ? { model, method, format } : { method, format };
}

/** The reference cell of `cell` for a resolved reference. */
export function referenceCell(cell: Cell, ref: ResolvedReference): Cell {
  const model = ref.model ?? cell.model;
  const method = ref.method ?? cell.method;
  const format = ref.format ?? cell.format;
  return {
    id: `${model.id}/${method.id}/${format.id}/${cell.backend}`,
    model,
    method,
    format,
    backend: cell.backend,
  };
}

/**
 * Reference models of one cell computation: each distinct reference cell is opened as the runner
 * opens cells (`openCell`, so a calibrated method finds the suite's datasets) at most once, on
 * first use; a reference equal to the cell reuses its engine.
 */
export class ReferenceModels {
  readonly #opened = new Map<string, Promise<Engine>>();

  constructor(
    readonly suite: Pick<Suite, "seed" | "datasets" | "engines">,
    readonly cell: Cell,
    readonly own: Engine,
    readonly cacheDir?: string,
  ) {}

  /** The task context's view of a reference, or undefined when the task has none. */
  context(job: ReferenceJob | undefined): ReferenceContext | undefined {
    if (!job) return undefined;
    const refCell = referenceCell(this.cell, job);
    const isSelf = refCell.model.id === this.cell.model.id && sameSetup(this.cell, refCell);
    // The model's id is part of the name only when the reference is another model.
    const id = refCell.model.id === this.cell.model.id
      ? `${refCell.method.id}/${refCell.format.id}`
      : `${refCell.model.id}/${refCell.method.id}/${refCell.format.id}`;
    return {
      id,
      key: job.key,
      isSelf,
      cacheDir: this.cacheDir,
      open: () => isSelf ? Promise.resolve(this.own) : this.#open(id, job),
    };
  }

  #open(id: string, job: ReferenceJob) {
    let opened = this.#opened.get(id);
    if (!opened) {
      opened = openCell(this.suite, referenceCell(this.cell, job), this.cacheDir).then((c) =>
        c.engine
      );
      this.#opened.set(id, opened);
    }
    return opened;
  }

  /** Frees the reference engines this object opened. */
  async dispose(): Promise<void> {
    for (const opened of this.#opened.values()) {
      try {
        (await opened).dispose();
      } catch {
        // A reference that failed to open has nothing to free; its task already reported why.
      }
    }
  }
}

function sameSetup(cell: Cell, ref: { method: MethodSpec; format: FormatSpec }): boolean {
  const strip = (f: FormatSpec) => ({ ...f, id: undefined });
  return cell.method.method === ref.method.method &&
    JSON.stringify(cell.method.options) === JSON.stringify(ref.method.options) &&
    JSON.stringify(strip(cell.format)) === JSON.stringify(strip(ref.format));
}

/**
 * Bytes computed on a reference, cached under `cacheDir/reference/` by the reference key and a
 * name; computed (and stored atomically) when absent, when `usable` rejects the stored bytes, or
 * when there is no cache folder.
 */
export async function cachedReferenceBytes(
  ref: Pick<ReferenceContext, "key" | "cacheDir">,
  name: string,
  compute: () => Promise<Uint8Array>,
  usable: (bytes: Uint8Array) => boolean = () => true,
): Promise<Uint8Array> {
  if (!ref.cacheDir) return await compute();
  const path = join(ref.cacheDir, "reference", ref.key.slice(0, 2), `${ref.key}.${name}`);
  try {
    const cached = await Deno.readFile(path);
    // A damaged entry (wrong size, not JSON) is recomputed and rewritten, never trusted.
    if (usable(cached)) return cached;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const bytes = await compute();
  await writeFileAtomic(path, bytes);
  return bytes;
}

/** {@linkcode cachedReferenceBytes} for a JSON value. */
export async function cachedReferenceJson<T>(
  ref: Pick<ReferenceContext, "key" | "cacheDir">,
  name: string,
  compute: () => Promise<T>,
): Promise<T> {
  const parse = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes)) as T;
  const bytes = await cachedReferenceBytes(
    ref,
    `${name}.json`,
    async () => new TextEncoder().encode(JSON.stringify(await compute())),
    (cached) => {
      try {
        parse(cached);
        return true;
      } catch {
        return false;
      }
    },
  );
  return parse(bytes);
}
