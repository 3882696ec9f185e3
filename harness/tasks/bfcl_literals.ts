/**
 * BFCL's Java and JavaScript type converters (gorilla `bfcl_eval/eval_checker/ast_eval/
 * type_convertor/java_type_converter.py` and `js_type_converter.py`), rule for rule. In BFCL's
 * `simple_java` and `simple_javascript` categories every argument is a string holding a Java or
 * JavaScript literal (`"true"`, `"50L"`, `"new int[]{1, 2}"`, `"{'key': 1}"`); the checker first
 * converts it by the parameter's declared type, then applies the usual AST rules to the result.
 * A literal that does not fit its type stays a string (and later fails the type check), exactly
 * as BFCL's converters "default to string".
 *
 * The converters' regular expressions are Python's; here `$` also matches before a final newline
 * and `\w` is Unicode, as in Python. Types BFCL cannot convert (`Set`, `Hashtable`, `Queue`,
 * `Stack`: its converter raises `NotImplementedError`) throw {@linkcode BfclTypeError}, which the
 * checker reports as the sample's failure rather than a crash.
 *
 * @module
 */
import type { PyDict, PyValue } from "./py_value.ts";

/** Thrown for a declared type that BFCL's converter does not support. */
export class BfclTypeError extends Error {
  override name = "BfclTypeError";
}

/** BFCL's `JAVA_TYPE_CONVERSION`: declared Java type → Python type name. */
export const JAVA_TYPES: Readonly<Record<string, string>> = {
  byte: "int",
  short: "int",
  integer: "int",
  float: "float",
  double: "float",
  long: "int",
  boolean: "bool",
  char: "str",
  Array: "list",
  ArrayList: "list",
  Set: "set",
  HashMap: "dict",
  Hashtable: "dict",
  Queue: "list",
  Stack: "list",
  String: "str",
  any: "str",
};

/** BFCL's `JS_TYPE_CONVERSION`: declared JavaScript type → Python type name. */
export const JS_TYPES: Readonly<Record<string, string>> = {
  String: "str",
  integer: "int",
  float: "float",
  Bigint: "int",
  Boolean: "bool",
  dict: "dict",
  array: "list",
  any: "str",
};

/** Declared types whose values are collections with an `items` type (`NESTED_CONVERSION_TYPE_LIST`). */
export const NESTED_CONVERSION_TYPES: readonly string[] = ["Array", "ArrayList", "array"];

// Python's `$` (no MULTILINE) also matches just before a final newline.
const END = "(?=\\n?$)";
const W = "[\\p{L}\\p{N}_]";

/** Python's `re.match`: a match anchored at the start (not the end). */
function pyMatch(pattern: string, text: string, flags = ""): RegExpExecArray | null {
  return new RegExp(`^(?:${pattern})`, `u${flags}`).exec(text);
}

/** Python's `re.search`. */
function pySearch(pattern: string, text: string, flags = ""): RegExpExecArray | null {
  return new RegExp(pattern, `u${flags}`).exec(text);
}

const PY_INT = /^[ \t\n\r\f\v]*[+-]?\d(?:_?\d)*[ \t\n\r\f\v]*$/;
const PY_FLOAT =
  /^[ \t\n\r\f\v]*[+-]?(?:(?:\d(?:_?\d)*)?\.?\d(?:_?\d)*(?:[eE][+-]?\d(?:_?\d)*)?|\d(?:_?\d)*\.(?:[eE][+-]?\d(?:_?\d)*)?|inf(?:inity)?|nan)[ \t\n\r\f\v]*$/i;

/** Python's `int(text)`, or undefined where it raises `ValueError`. */
export function pyInt(text: string): bigint | undefined {
  if (!PY_INT.test(text)) return undefined;
  return BigInt(text.trim().replaceAll("_", ""));
}

/** Python's `float(text)`, or undefined where it raises `ValueError`. */
export function pyFloat(text: string): number | undefined {
  if (!PY_FLOAT.test(text)) return undefined;
  const t = text.trim().replaceAll("_", "").toLowerCase();
  const sign = t.startsWith("-") ? -1 : 1;
  const body = t.replace(/^[+-]/, "");
  if (body.startsWith("inf")) return sign * Infinity;
  if (body === "nan") return NaN;
  return Number(t);
}

// ---------------------------------------------------------------------------------------------
// Java

/** BFCL's `java_type_converter(value, expected_type, nested_type)`. */
export function javaTypeConverter(value: string, type: string, nested?: string): PyValue {
  if (!(type in JAVA_TYPES)) throw new BfclTypeError(`Unsupported type: ${type}`);
  switch (type) {
    case "byte":
    case "short":
    case "integer":
      return pyMatch(`^-?\\d+${END}`, value) ? pyInt(value)! : value;
    case "float":
      if (!pyMatch(`^-?\\d+(\\.\\d+)?([eE][+-]?\\d+)?[fF]${END}`, value)) return value;
      return pyFloat(value.replace(/[fF](?=\n?$)/, ""))!;
    case "double":
      if (!pyMatch(`^-?\\d+(\\.\\d+)?([eE][+-]?\\d+)?${END}`, value)) return value;
      return pyFloat(value)!;
    case "long":
      if (!pyMatch(`^-?\\d+[lL]${END}`, value)) return value;
      return pyInt(value.replace(/[lL](?=\n?$)/, ""))!;
    case "boolean":
      return value === "true" || value === "false" ? value === "true" : value;
    case "char":
      // BFCL's pattern (`^\'.$\'`) can never match, so a char stays the string it was given.
      return value;
    case "Array":
      return javaArray(value, nested);
    case "ArrayList":
      return javaArrayList(value, nested);
    case "HashMap":
      return javaHashMap(value);
    case "String":
    case "any":
      return value;
    default:
      throw new BfclTypeError(`${type} conversion is not implemented`);
  }
}

function javaElement(text: string, nested: string | undefined): PyValue {
  if (nested === "char" || nested === "String") return text.slice(1, -1);
  return nested ? javaTypeConverter(text, nested) : javaValue(text);
}

function javaArrayList(text: string, nested: string | undefined): PyValue {
  const asList = pySearch(`new\\s+ArrayList<${W}*>\\(Arrays\\.asList\\((.+?)\\)\\)`, text);
  if (asList) return asList[1]!.split(",").map((e) => javaElement(e.trim(), nested));
  const adds = pySearch(`new\\s+ArrayList<${W}*>\\(\\)\\s*\\{\\{\\s*(.+?)\\s*\\}\\}`, text, "s");
  if (adds) {
    return [...adds[1]!.matchAll(/add\((.+?)\)/gu)].map((m) => javaElement(m[1]!.trim(), nested));
  }
  if (pySearch(`new\\s+ArrayList<${W}*>\\(\\)`, text)) return [];
  return text;
}

function javaArray(text: string, nested: string | undefined): PyValue {
  const m = pySearch(`new\\s+${W}+\\[\\]\\s*\\{(.*?)\\}`, text);
  if (!m) return text;
  return m[1]!.split(",").filter((x) => x.trim()).map((x) =>
    nested ? javaTypeConverter(x.trim(), nested) : javaValue(x.trim())
  );
}

function javaHashMap(text: string): PyValue {
  const m = pySearch(
    "new\\s+HashMap<.*?>\\s*\\(\\)\\s*\\{\\s*\\{?\\s*(.*?)\\s*\\}?\\s*\\}",
    text,
    "s",
  );
  if (m) {
    const out: PyDict = {};
    if (m[1]!.trim()) {
      for (const put of m[1]!.matchAll(/put\("(.*?)",\s*(.*?)\)/gu)) {
        out[put[1]!] = javaValue(put[2]!.trim());
      }
    }
    return out;
  }
  if (pySearch("new\\s+HashMap<.*?>\\s*\\(\\)", text)) return {};
  return text;
}

/** BFCL's `parse_java_value`: a Java literal without a declared type. */
export function javaValue(text: string): PyValue {
  if (text === "true") return true;
  if (text === "false") return false;
  if (text.startsWith('"') && text.endsWith('"')) return text.slice(1, -1);
  if (pyMatch(`^-?\\d+[lL]${END}`, text)) return pyInt(text.slice(0, -1)) ?? text;
  if (pyMatch(`^-?\\d+(\\.\\d+)?([eE][+-]?\\d+)?[fF]${END}`, text)) {
    return pyFloat(text.replace(/[fF](?=\n?$)/, ""))!;
  }
  return pyInt(text) ?? pyFloat(text) ?? text;
}

// ---------------------------------------------------------------------------------------------
// JavaScript

/** BFCL's `js_type_converter(value, expected_type, nested_type)`. */
export function jsTypeConverter(value: string, type: string, nested?: string): PyValue {
  if (!(type in JS_TYPES)) throw new BfclTypeError(`Unsupported type: ${type}`);
  switch (type) {
    case "String": {
      const quoted = (value.startsWith('"') && value.endsWith('"')) ||
        (value.startsWith("'") && value.endsWith("'"));
      return quoted ? value.slice(1, -1) : value;
    }
    case "integer":
      return pyMatch(`^-?\\d+${END}`, value) ? pyInt(value)! : value;
    case "float":
      return pyMatch(`^-?\\d+(\\.\\d+)?${END}`, value) ? pyFloat(value)! : value;
    case "Bigint":
      return pyMatch(`^-?\\d+n${END}`, value) ? pyInt(value.slice(0, -1)) ?? value : value;
    case "Boolean":
      return value === "true" || value === "false" ? value === "true" : value;
    case "dict":
      return jsCollection(value, "dict", nested);
    case "array":
      return jsCollection(value, "array", nested);
    default:
      return value;
  }
}

// Python's str.strip() removes Unicode whitespace, including the separators \x1c–\x1f.
const PY_SPACE =
  "[ \\t\\n\\r\\f\\v\\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, "g");

/** Python's `str.strip()` (Unicode whitespace). */
function strip(s: string): string {
  return s.replace(PY_STRIP, "");
}

/** Python's `str.strip(chars)`. */
function stripChars(s: string, chars: string): string {
  let a = 0, b = s.length;
  while (a < b && chars.includes(s[a]!)) a++;
  while (b > a && chars.includes(s[b - 1]!)) b--;
  return s.slice(a, b);
}

function jsCollection(input: string, kind: "array" | "dict", nested?: string): PyValue {
  const code = strip(input);
  if (kind === "array") {
    try {
      const twoD = pyMatch(
        "\\[\\s*\\[.*?\\]\\s*(,\\s*\\[.*?\\]\\s*)*\\]|\\bnew\\s+Array\\(\\s*\\[.*?\\]\\s*(,\\s*\\[.*?\\]\\s*)*\\)",
        code,
      );
      if (twoD) {
        return [...twoD[0].matchAll(/\[(.*?)\]/gu)].map((m, idx) => {
          let inner = strip(m[1]!);
          if (idx === 0 && inner.startsWith("[")) inner = inner.slice(1);
          return inner.split(",").map((e) => jsValue(strip(e)));
        });
      }
      const one = pyMatch("\\[(.*?)\\]|\\bnew\\s+Array\\((.*?)\\)", code);
      if (!one) return code;
      const body = one[1] ?? one[2];
      const elements = body === undefined || !strip(body) ? [] : strip(body).split(",");
      return elements.map((e) => nested ? jsTypeConverter(strip(e), nested) : jsValue(strip(e)));
    } catch (e) {
      if (e instanceof BfclTypeError) return code;
      throw e;
    }
  }
  if (code === "{}") return {};
  const m = pyMatch("\\{(.*?)\\}", code);
  if (!m) return code;
  const out: PyDict = {};
  for (const pair of m[1]!.matchAll(/([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)/gu)) {
    const key = stripChars(strip(pair[1]!), "'\"");
    const value = strip(pair[2]!);
    if (value.startsWith("[") && value.endsWith("]")) out[key] = jsCollection(value, "array");
    else if (value.startsWith("{") && value.endsWith("}")) out[key] = jsCollection(value, "dict");
    else out[key] = jsValue(stripChars(value, "'\""));
  }
  return out;
}

/** BFCL's `parse_js_value`: a JavaScript literal without a declared type. */
export function jsValue(input: string): PyValue {
  const text = strip(input);
  if (text === "true") return true;
  if (text === "false") return false;
  const quoted = (text.startsWith('"') && text.endsWith('"')) ||
    (text.startsWith("'") && text.endsWith("'"));
  if (quoted) return text.slice(1, -1);
  return pyInt(text) ?? pyFloat(text) ?? text;
}
