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
 * Each dialect asserts the formats its own draft defines, with `ajv-formats` (draft 4: `date-time`,
 * `email`, `hostname`, `ipv4`, `ipv6`, `uri`; drafts 6/7 add `uri-reference`, `uri-template`,
 * `json-pointer`, `relative-json-pointer`, `date`, `time`, `regex`; 2019-09 and 2020-12 add
 * `duration` and `uuid`). Formats no draft defines (OpenAPI's `byte`, `int32`, `binary`, …) are
 * annotations, as the specifications say of unknown formats. `strict: false` (unknown keywords are
 * annotations) and no logging.
 *
 * Drafts 4–7 ignore keywords beside `$ref` ("All other properties in a "$ref" object MUST be
 * ignored"): they are dropped before compiling, except `definitions`/`$defs`, which `$ref`s may
 * point into. `$async` (an Ajv extension, not JSON Schema) is dropped everywhere.
 *
 * Patterns (`pattern`, `patternProperties`) are ECMA-262 regular expressions with the `u` flag. A
 * pattern that JavaScript rejects but Python's `re` accepts (schemas written for Python
 * validators: identity escapes such as `\,` `\:` `\-`, a lone `{` `}` `]`, `(?P<name>…)`,
 * `\A`/`\Z`) is translated from Python's dialect; the compiled schema lists such patterns in
 * `notes`. One that neither reads is the schema's fault: `schema_error`.
 *
 * Compiled schemas are cached by their text (at most 512).
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
  /** How the schema was read where it departs from its dialect (Python-dialect patterns). */
  notes: string[];
}

/** The dialects this module distinguishes. */
export type Dialect = "2020-12" | "2019-09" | "draft-07" | "draft-04";

type AjvInstance = InstanceType<typeof Ajv2020.default>;

/** Formats each dialect defines (ajv-formats names); others are annotations. */
const DRAFT4_FORMATS = ["date-time", "email", "hostname", "ipv4", "ipv6", "uri"];
const DRAFT7_FORMATS = [
  ...DRAFT4_FORMATS,
  "uri-reference",
  "uri-template",
  "json-pointer",
  "relative-json-pointer",
  "date",
  "time",
  "regex",
];
const FORMATS: Record<Dialect, string[]> = {
  "draft-04": DRAFT4_FORMATS,
  "draft-07": DRAFT7_FORMATS,
  "2019-09": [...DRAFT7_FORMATS, "duration", "uuid"],
  "2020-12": [...DRAFT7_FORMATS, "duration", "uuid"],
};

/** Patterns of the schema being compiled that were read in Python's dialect. */
let translated: string[] = [];

/** Ajv's RegExp engine: ECMA-262 with `u`, else the pattern read as Python's `re` would. */
function patternRegExp(pattern: string, flags: string): { test(s: string): boolean } {
  try {
    return new RegExp(pattern, flags);
  } catch (e) {
    const python = pythonPatternToEcma(pattern);
    if (python === pattern) throw e;
    let re: RegExp;
    try {
      re = new RegExp(python, flags);
    } catch {
      throw e;
    }
    translated.push(pattern);
    return re;
  }
}
patternRegExp.code = "new RegExp";

const OPTIONS = {
  strict: false,
  logger: false,
  allErrors: false,
  validateFormats: true,
  code: { regExp: patternRegExp },
} as const;
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
  (addFormats.default as unknown as (a: AjvInstance, formats: string[]) => void)(
    ajv,
    FORMATS[dialect],
  );
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
    return Object.assign((_: unknown) => parsed, {
      errorText: () => "the schema is false",
      notes: [],
    });
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
  schema = readable(schema, dialect === "draft-04" || dialect === "draft-07") as Record<
    string,
    unknown
  >;
  const ajv = instance(dialect);
  let validate;
  translated = [];
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
  const notes = [...new Set(translated)].map((p) =>
    `pattern ${JSON.stringify(p)} read in Python re's dialect (ECMA-262 rejects it)`
  );
  return Object.assign((data: unknown) => v(data) === true, {
    errorText: () => {
      const e = v.errors?.[0];
      return e ? `${e.instancePath || "/"} ${e.message ?? e.keyword}` : "";
    },
    notes,
  });
}

const SCHEMA_MAPS = ["properties", "patternProperties", "definitions", "$defs", "dependencies"];
const SCHEMA_LISTS = ["allOf", "anyOf", "oneOf", "items", "prefixItems"];
const SCHEMA_ONE = [
  "items",
  "additionalItems",
  "additionalProperties",
  "unevaluatedItems",
  "unevaluatedProperties",
  "contains",
  "propertyNames",
  "not",
  "if",
  "then",
  "else",
];
/** What stays beside `$ref` in drafts 4–7: places other references may point into. */
const KEPT_BESIDE_REF = ["$ref", "definitions", "$defs", "$id", "id", "$schema"];

/**
 * The schema as Ajv should compile it: `$async` dropped everywhere and, with `refAlone` (drafts
 * 4–7), keywords beside `$ref` dropped. Walks subschemas only, never literal values.
 */
function readable(node: unknown, refAlone: boolean): unknown {
  if (typeof node !== "object" || node === null || Array.isArray(node)) return node;
  const out: Record<string, unknown> = {};
  const ref = typeof (node as { $ref?: unknown }).$ref === "string";
  for (const [k, v] of Object.entries(node)) {
    if (k === "$async") continue;
    if (refAlone && ref && !KEPT_BESIDE_REF.includes(k)) continue;
    if (SCHEMA_MAPS.includes(k) && typeof v === "object" && v !== null && !Array.isArray(v)) {
      out[k] = Object.fromEntries(
        Object.entries(v).map(([name, sub]) => [name, readable(sub, refAlone)]),
      );
    } else if (SCHEMA_LISTS.includes(k) && Array.isArray(v)) {
      out[k] = v.map((sub) => readable(sub, refAlone));
    } else if (SCHEMA_ONE.includes(k)) {
      out[k] = readable(v, refAlone);
    } else {
      out[k] = v;
    }
  }
  return out;
}

/**
 * A Python `re` pattern in ECMA-262 (`u` flag) syntax: identity escapes of characters that are not
 * syntax characters lose their backslash, lone `{` `}` `]` are escaped, `(?P<n>…)` / `(?P=n)`
 * become `(?<n>…)` / `\k<n>`, `\A` / `\Z` become `^` / `$`. Returns the input when nothing
 * applies.
 */
export function pythonPatternToEcma(pattern: string): string {
  const SYNTAX = "^$\\.*+?()[]{}|/-";
  let out = "";
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\") {
      const n = pattern[i + 1];
      i++;
      if (n === undefined) {
        out += "\\\\";
      } else if (!inClass && n === "A") {
        out += "^";
      } else if (!inClass && n === "Z") {
        out += "$";
      } else if (/[\p{L}\p{N}]/u.test(n) || SYNTAX.includes(n)) {
        // `\-` is an identity escape only inside a class under `u`.
        out += n === "-" && !inClass ? "-" : "\\" + n;
      } else {
        out += n;
      }
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      out += c;
      continue;
    }
    if (c === "[") {
      inClass = true;
      out += c;
      if (pattern[i + 1] === "^") out += pattern[++i];
      // A `]` first in a Python class is a literal.
      if (pattern[i + 1] === "]") {
        out += "\\]";
        i++;
      }
      continue;
    }
    if (pattern.startsWith("(?P<", i)) {
      out += "(?<";
      i += 3;
      continue;
    }
    const backref = /^\(\?P=(\w+)\)/.exec(pattern.slice(i));
    if (backref) {
      out += `\\k<${backref[1]}>`;
      i += backref[0].length - 1;
      continue;
    }
    if (c === "]" || c === "}") {
      out += "\\" + c;
      continue;
    }
    if (c === "{") {
      const quantifier = /^\{\d*(,\d*)?\}/.exec(pattern.slice(i));
      if (quantifier && quantifier[0] !== "{}" && quantifier[0] !== "{,}") {
        // Python's `{,n}` is `{0,n}`.
        out += quantifier[0].replace(/^\{,/, "{0,");
        i += quantifier[0].length - 1;
      } else {
        out += "\\{";
      }
      continue;
    }
    out += c;
  }
  return out;
}
