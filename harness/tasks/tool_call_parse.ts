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
 * @module
 */
import {
  isDict,
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
export function decodeToolCalls(output: string): DecodedCalls {
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
  const python = /^\[?\s*[A-Za-z_][\w.]*\s*\(/.test(text);
  const values = python ? [] : jsonValues(unfenced);
  const list = values.length === 1 && Array.isArray(values[0]) ? values[0] : values;
  const jsonCalls = values.length > 0 ? list.map(asCall) : [];
  const allCalls = jsonCalls.every((c) => c !== undefined);
  if (values.length > 0 && allCalls) {
    return { ok: true, calls: jsonCalls as PyCall[], format: "json" };
  }
  if (!text.startsWith("[")) text = "[" + text;
  if (!text.endsWith("]")) text = text + "]";
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
