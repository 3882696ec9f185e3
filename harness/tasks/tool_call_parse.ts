/**
 * Decoding a model's answer into tool calls (BFCL's `[{name: {param: value}}]`), trying in turn:
 *
 * 1. `<tool_call>…</tool_call>` blocks (Hermes/Qwen chat templates, the fixture models), each
 *    holding one JSON call;
 * 2. JSON anywhere in the text (after code fence markers, with their language tags, are removed):
 *    a call object or a list of them,
 *    or several call objects one after another (what remains of tagged calls when a tokenizer drops
 *    the tags as special tokens). A call object is `{"name": …, "arguments": {…}}` (also
 *    `parameters`/`args`, arguments as a JSON string, or wrapped as
 *    `{"type": "function", "function": {…}}`), `{"function": …, "parameters": {…}}`, or BFCL's
 *    own `{"<name>": {…}}`;
 * 3. Python call syntax as BFCL's prompting decoder reads it: the text (fence markers removed, which
 *    BFCL does not do for "```python") stripped of backticks, newlines and spaces, wrapped in `[…]`
 *    when not already, parsed as a list of calls. Text that
 *    starts like a call (`f(…`, `[mod.f(…`) skips step 2, so JSON inside arguments is not taken
 *    for calls.
 *
 * JSON numbers keep Python's int/float distinction (`7` vs `7.0`), which BFCL's type rules need.
 *
 * In Java and JavaScript categories step 3 reads call syntax as BFCL's tree-sitter decoder does:
 * the first call `name(param=literal, …)` only, each argument the literal's source text (a string
 * or char literal without its quotes), for BFCL's type converters to read (`bfcl_literals.ts`). A
 * Java `new HashMap<…>() {{ put(…); }}` keeps only `new HashMap<…>()`, as BFCL's traversal drops an
 * anonymous class body. Java text with more than one call does not decode (BFCL's Java parser
 * fails on it); JavaScript takes the first.
 *
 * @module
 */
import type { BfclLanguage } from "./bfcl_checker.ts";
import {
  isDict,
  MAX_NESTING,
  parsePyCalls,
  parsePyJson,
  parsePyJsonPrefix,
  type PyCall,
  type PyDict,
  PyParseError,
  type PyValue,
} from "./py_value.ts";

/** The outcome of decoding. */
export type DecodedCalls =
  | { ok: true; calls: PyCall[]; format: "tool_call_tags" | "json" | "python" }
  | {
    ok: false;
    /** BFCL's error types: nothing decodable, or decodable but not calls. */
    code: "ast_decoder:decoder_failed" | "ast_decoder:decoder_wrong_output_format";
    message: string;
  };

/** Decodes tool calls from model output (see the module documentation). */
export function decodeToolCalls(output: string, language: BfclLanguage = "python"): DecodedCalls {
  const tagged = [...output.matchAll(/<tool_call>([\s\S]*?)(?:<\/tool_call>|$)/g)];
  if (tagged.length > 0) {
    const calls: PyCall[] = [];
    for (const [, body] of tagged) {
      let value: PyValue;
      try {
        value = parsePyJson(body!.trim());
      } catch (e) {
        return failed("ast_decoder:decoder_failed", e);
      }
      const call = asCall(value);
      if (!call) return wrongFormat();
      calls.push(call);
    }
    return { ok: true, calls, format: "tool_call_tags" };
  }
  const unfenced = output.replace(/```[a-zA-Z]*\n?/g, "");
  let text = unfenced.replace(/^[`\n ]+|[`\n ]+$/g, "");
  // Text that starts like a call (`f(`, `[a.b(`) is Python; JSON inside its arguments is not a call.
  const python = /^\[?\s*[\p{L}\p{Nl}_][\p{L}\p{Nl}\p{Mn}\p{Mc}\p{Nd}\p{Pc}.]*\s*\(/u.test(text);
  const values = python ? [] : jsonValues(unfenced);
  const list = values.length === 1 && Array.isArray(values[0]) ? values[0] : values;
  const jsonCalls = values.length > 0 ? list.map(asCall) : [];
  const allCalls = jsonCalls.every((c) => c !== undefined);
  if (values.length > 0 && allCalls) {
    return { ok: true, calls: jsonCalls as PyCall[], format: "json" };
  }
  if (!text.startsWith("[")) text = "[" + text;
  if (!text.endsWith("]")) text = text + "]";
  if (language !== "python") {
    try {
      return { ok: true, calls: parseSourceCall(text.slice(1, -1), language), format: "python" };
    } catch (e) {
      if (!(e instanceof PyParseError)) throw e;
      return values.length > 0 ? wrongFormat() : failed("ast_decoder:decoder_failed", e);
    }
  }
  try {
    return { ok: true, calls: parsePyCalls(text.trim().replace(/^'+|'+$/g, "")), format: "python" };
  } catch (e) {
    if (!(e instanceof PyParseError)) throw e;
    return values.length > 0 ? wrongFormat() : failed("ast_decoder:decoder_failed", e);
  }
}

function failed(code: "ast_decoder:decoder_failed", e: unknown): DecodedCalls {
  return { ok: false, code, message: e instanceof Error ? e.message : String(e) };
}

function wrongFormat(): DecodedCalls {
  return {
    ok: false,
    code: "ast_decoder:decoder_wrong_output_format",
    message: "The output decodes, but not to a list of calls {name: {parameter: value}}",
  };
}

/**
 * The top-level JSON objects and arrays of a text, in order: scanning from each `{` or `[`, a
 * value that parses is taken and scanning resumes after it.
 */
function jsonValues(text: string): PyValue[] {
  const out: PyValue[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "{" || c === "[") {
      const parsed = parsePyJsonPrefix(text, i);
      if (parsed) {
        out.push(parsed.value);
        i = parsed.end;
        continue;
      }
      // In a run of more than MAX_NESTING open brackets, every start but the last MAX_NESTING
      // fails on depth alone: skip them rather than parse each.
      let run = i;
      while (text[run] === "{" || text[run] === "[") run++;
      if (run - i > MAX_NESTING) {
        i = run - MAX_NESTING;
        continue;
      }
    }
    i++;
  }
  return out;
}

/** A call in one of the accepted JSON shapes, or undefined. */
function asCall(value: PyValue): PyCall | undefined {
  if (!isDict(value)) return undefined;
  if (isDict(value.function) && value.type === "function") return asCall(value.function);
  const name = typeof value.name === "string"
    ? value.name
    : typeof value.function === "string"
    ? value.function
    : undefined;
  if (name !== undefined) {
    const raw = value.arguments ?? value.parameters ?? value.args ?? {};
    const args = typeof raw === "string" ? parseArgumentString(raw) : raw;
    return isDict(args) ? { [name]: args } : undefined;
  }
  const keys = Object.keys(value);
  if (keys.length === 1 && isDict(value[keys[0]!])) {
    return { [keys[0]!]: value[keys[0]!] as PyDict };
  }
  return undefined;
}

function parseArgumentString(raw: string): PyValue | undefined {
  try {
    return parsePyJson(raw);
  } catch {
    return undefined;
  }
}

const SOURCE_NAME = /[\p{L}\p{Nl}_$][\p{L}\p{Nl}\p{Mn}\p{Mc}\p{Nd}\p{Pc}$]*/uy;

/**
 * The first call of Java or JavaScript source, `a.b(x=literal, …)`, with each argument's source
 * text (see the module documentation).
 */
export function parseSourceCall(text: string, language: "java" | "javascript"): PyCall[] {
  let i = 0;
  const fail = (what: string): never => {
    throw new PyParseError(`Invalid ${language} call at character ${i}: ${what}`);
  };
  const ws = () => {
    while (/\s/u.test(text[i] ?? "")) i++;
  };
  const name = (): string => {
    SOURCE_NAME.lastIndex = i;
    const m = SOURCE_NAME.exec(text);
    if (!m) return fail("expected a name");
    i += m[0].length;
    return m[0];
  };
  ws();
  let fn = name();
  for (ws(); text[i] === "."; ws()) {
    i++;
    ws();
    fn += "." + name();
  }
  if (text[i] !== "(") fail("expected (");
  i++;
  const args: PyDict = {};
  for (;;) {
    ws();
    if (text[i] === ")") {
      i++;
      break;
    }
    const start = i;
    SOURCE_NAME.lastIndex = i;
    const m = SOURCE_NAME.exec(text);
    const eq = m ? /^\s*=(?!=)/.exec(text.slice(i + m[0].length)) : null;
    if (m && eq) i += m[0].length + eq[0].length;
    const value = literalText(text.slice(i, i = scanValue(text, i, fail)).trim(), language);
    if (m && eq) {
      if (m[0] in args) fail(`argument "${m[0]}" given twice`);
      args[m[0]] = value;
    } else if (i === start) fail("expected an argument");
    ws();
    if (text[i] === ",") i++;
    else if (text[i] !== ")") fail("expected , or )");
  }
  ws();
  if (text[i] === ";") i++;
  ws();
  if (i < text.length && language === "java") fail("more than one call");
  return [{ [fn]: args }];
}

/**
 * The end of a value: the first `,` or `)` outside brackets, quotes and (Java) type arguments
 * (`HashMap<String, Object>`: a `<` right after a name).
 */
function scanValue(text: string, start: number, fail: (what: string) => never): number {
  let depth = 0;
  let angles = 0;
  for (let i = start; i < text.length; i++) {
    const c = text[i]!;
    if (c === "<" && /[\p{L}\p{N}_$]/u.test(text[i - 1] ?? "")) {
      angles++;
    } else if (c === ">" && angles > 0) {
      angles--;
    } else if (c === '"' || c === "'" || c === "`") {
      for (i++; i < text.length && text[i] !== c; i++) if (text[i] === "\\") i++;
      if (i >= text.length) fail("unterminated string");
    } else if (c === "(" || c === "[" || c === "{") {
      if (++depth > MAX_NESTING) fail(`brackets nested deeper than ${MAX_NESTING}`);
    } else if (c === ")" || c === "]" || c === "}") {
      if (depth === 0) {
        if (c === ")") return i;
        fail(`unbalanced ${c}`);
      }
      depth--;
    } else if (c === "," && depth === 0 && angles === 0) return i;
  }
  return fail("unterminated argument list");
}

/** An argument's source text as BFCL's tree-sitter traversal hands it to the converters. */
function literalText(value: string, language: "java" | "javascript"): string {
  const quoted = /^"[^]*"$/.test(value) || /^'[^]*'$/.test(value);
  if (quoted && value.length >= 2) return value.slice(1, -1);
  if (language === "java") {
    // `new T(args) { body }`: an object creation keeps its type and arguments only.
    const creation = /^new\s[^{]*?\)(?=\s*\{)/u.exec(value);
    if (creation) return creation[0];
  }
  return value;
}
