/**
 * Compiling JSON Schemas with Ajv in the dialect they declare, the way general-purpose validators
 * (Python `jsonschema`'s `validator_for`) pick it from `$schema`:
 *
 * - draft 2020-12, no `$schema`, or an unknown one: Ajv's 2020-12 validator;
 * - draft 2019-09: Ajv's 2019-09 validator;
 * - drafts 6 and 7: Ajv's draft-07 validator (draft 6 is a subset);
 * - draft 4: the draft-07 validator after rewriting draft 4's boolean `exclusiveMaximum` /
 *   `exclusiveMinimum` into draft 6's numeric form (Ajv 8 has no draft-4 mode).
 *
 * `id` (draft 4's `$id`) is an annotation in every dialect: resolving `$ref` against `id` base URIs
 * is not supported.
 *
 * Every dialect gets `ajv-formats` (unknown formats are ignored, as the specifications allow),
 * `strict: false` (unknown keywords are annotations) and no logging. Compiled schemas are cached
 * by their text (at most 512).
 *
 * @module
 */
import Ajv2020 from "ajv/dist/2020.js";
import Ajv2019 from "ajv/dist/2019.js";
import Ajv07 from "ajv";
import addFormats from "ajv-formats";

/** A compiled schema. */
export interface CompiledSchema {
  (data: unknown): boolean;
  /** The first validation error of the last call, as text. */
  errorText(): string;
}

/** The dialects this module distinguishes. */
export type Dialect = "2020-12" | "2019-09" | "draft-07" | "draft-04";

type AjvInstance = InstanceType<typeof Ajv2020.default>;

const OPTIONS = { strict: false, logger: false, allErrors: false, validateFormats: true } as const;
const instances = new Map<Dialect, AjvInstance>();
const cache = new Map<string, CompiledSchema | string>();
const CACHE_SIZE = 512;

/** The dialect a schema declares with `$schema`. */
export function schemaDialect(schema: unknown): Dialect {
  const uri = typeof schema === "object" && schema !== null
    ? (schema as { $schema?: unknown }).$schema
    : undefined;
  if (typeof uri !== "string") return "2020-12";
  if (/draft-0?4\b/.test(uri)) return "draft-04";
  if (/draft-0?[67]\b/.test(uri)) return "draft-07";
  if (uri.includes("2019-09")) return "2019-09";
  return "2020-12";
}

function fresh(dialect: Dialect): AjvInstance {
  const ajv = dialect === "2020-12"
    ? new Ajv2020.default(OPTIONS)
    : dialect === "2019-09"
    ? new Ajv2019.default(OPTIONS) as unknown as AjvInstance
    : new Ajv07.default(OPTIONS) as unknown as AjvInstance;
  // ajv-formats' types expect the core Ajv class; every dialect class extends it.
  (addFormats.default as unknown as (a: AjvInstance) => void)(ajv);
  // Ajv rejects `id` outright; it is draft 4's `$id` and an unknown keyword in later drafts.
  ajv.removeKeyword("id");
  return ajv;
}

function instance(dialect: Dialect): AjvInstance {
  let ajv = instances.get(dialect);
  if (!ajv) instances.set(dialect, ajv = fresh(dialect));
  return ajv;
}

/** Draft 4's boolean exclusive bounds in draft 6 form, everywhere but inside literal values. */
function draft4ToDraft6(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(draft4ToDraft6);
  if (typeof node !== "object" || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    out[k] = ["enum", "const", "default", "examples"].includes(k) ? v : draft4ToDraft6(v);
  }
  const pairs = [["exclusiveMaximum", "maximum"], ["exclusiveMinimum", "minimum"]] as const;
  for (const [flag, bound] of pairs) {
    if (typeof out[flag] !== "boolean") continue;
    if (out[flag] === true && typeof out[bound] === "number") {
      out[flag] = out[bound];
      delete out[bound];
    } else {
      delete out[flag];
    }
  }
  return out;
}

/**
 * Compiles a schema given as JSON text; returns the validator, or the reason it does not compile.
 */
export function compileSchema(text: string): CompiledSchema | string {
  const hit = cache.get(text);
  if (hit !== undefined) return hit;
  let result: CompiledSchema | string;
  try {
    result = compile(JSON.parse(text));
  } catch (e) {
    result = (e as Error).message;
  }
  if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
  cache.set(text, result);
  return result;
}

function compile(parsed: unknown): CompiledSchema {
  if (typeof parsed === "boolean") {
    return Object.assign((_: unknown) => parsed, { errorText: () => "the schema is false" });
  }
  const dialect = schemaDialect(parsed);
  let schema = parsed as Record<string, unknown>;
  const known = /^https:\/\/json-schema\.org\/draft\/(2020-12|2019-09)\/schema#?$/;
  if (schema.$schema !== undefined && !known.test(String(schema.$schema))) {
    // Drafts 4–7 (and unknown URIs) are checked against the chosen validator's own meta-schema.
    const { $schema: _, ...rest } = schema;
    schema = rest;
  }
  if (dialect === "draft-04") schema = draft4ToDraft6(schema) as Record<string, unknown>;
  const ajv = instance(dialect);
  let validate;
  try {
    validate = ajv.compile(schema);
    // Forget its `$id` so that another schema may use the same one.
    ajv.removeSchema(schema);
  } catch (e) {
    // A schema whose `$id` is taken (a meta-schema's, say) compiles without its base URI.
    if (!/already exists/.test((e as Error).message)) throw e;
    const { $id: _, ...rest } = schema;
    validate = ajv.compile(rest);
    ajv.removeSchema(rest);
  }
  const v = validate;
  return Object.assign((data: unknown) => v(data) as boolean, {
    errorText: () => {
      const e = v.errors?.[0];
      return e ? `${e.instancePath || "/"} ${e.message ?? e.keyword}` : "";
    },
  });
}
