/**
 * Python values in TypeScript, for checking tool calls by BFCL's rules (which lean on Python's
 * types and `==`): `int` is a `bigint`, `float` a `number`, `bool` a `boolean`, `str` a `string`,
 * `None` `null`, `list` an array, `tuple` a {@linkcode PyTuple}, `dict` a plain object.
 *
 * Two parsers produce them: {@linkcode parsePyJson} (JSON as Python's `json.loads` reads it, so
 * `7` is an int and `7.0` a float) and {@linkcode parsePyCalls} (a list of Python calls as BFCL's
 * AST decoder reads it: keyword arguments only, literal values, names as strings, arithmetic on
 * literals evaluated).
 *
 * @module
 */

/** A Python tuple. */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

/** A Python value. */
export type PyValue =
  | string
  | bigint
  | number
  | boolean
  | null
  | PyValue[]
  | PyTuple
  | { [key: string]: PyValue };

/** A Python dict (string keys). */
export type PyDict = { [key: string]: PyValue };

/** Thrown for text that is not valid JSON or not a supported Python expression. */
export class PyParseError extends Error {
  override name = "PyParseError";
}

/**
 * How deeply brackets may nest. Python's own parser stops at 200 open brackets ("too many nested
 * parentheses"), which is what BFCL's decoder meets; JSON gets the same bound. Deeper text is a
 * {@linkcode PyParseError}, never a stack overflow.
 */
export const MAX_NESTING = 200;

/** Whether a value is a dict. */
export function isDict(v: PyValue | undefined): v is PyDict {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof PyTuple);
}

/** Python's `type(v).__name__`. */
export function pyTypeName(v: PyValue): string {
  if (v === null) return "NoneType";
  if (typeof v === "bigint") return "int";
  if (typeof v === "number") return "float";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "string") return "str";
  if (Array.isArray(v)) return "list";
  if (v instanceof PyTuple) return "tuple";
  return "dict";
}

function numeric(v: PyValue): number | bigint | undefined {
  if (typeof v === "bigint" || typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1n : 0n;
  return undefined;
}

/** Python's `a == b` (so `1 == 1.0 == True`, `[1] != (1,)`, dicts equal regardless of order). */
export function pyEquals(a: PyValue, b: PyValue): boolean {
  const na = numeric(a), nb = numeric(b);
  if (na !== undefined || nb !== undefined) {
    if (na === undefined || nb === undefined) return false;
    if (typeof na === "bigint" && typeof nb === "bigint") return na === nb;
    return Number(na) === Number(nb);
  }
  if (a === null || b === null || typeof a === "string" || typeof b === "string") return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length &&
      a.every((x, i) => pyEquals(x, b[i]!));
  }
  if (a instanceof PyTuple || b instanceof PyTuple) {
    return a instanceof PyTuple && b instanceof PyTuple && a.items.length === b.items.length &&
      a.items.every((x, i) => pyEquals(x, b.items[i]!));
  }
  const da = a as PyDict, db = b as PyDict;
  const ka = Object.keys(da), kb = Object.keys(db);
  return ka.length === kb.length && ka.every((k) => k in db && pyEquals(da[k]!, db[k]!));
}

/** Python's `v in options`. */
export function pyIn(v: PyValue, options: readonly PyValue[]): boolean {
  return options.some((o) => pyEquals(v, o));
}

/** Python's `repr` (for messages and for writing calls in Python syntax). */
export function pyRepr(v: PyValue): string {
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") return floatRepr(v);
  if (typeof v === "string") return stringRepr(v);
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(", ")}]`;
  if (v instanceof PyTuple) {
    return v.items.length === 1
      ? `(${pyRepr(v.items[0]!)},)`
      : `(${v.items.map(pyRepr).join(", ")})`;
  }
  return `{${Object.entries(v).map(([k, x]) => `${stringRepr(k)}: ${pyRepr(x)}`).join(", ")}}`;
}

function floatRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  const s = String(x);
  if (/[.e]/.test(s)) return s.replace(/e([+-])(\d)$/, "e$10$2");
  return `${s}.0`;
}

function stringRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch < " " || ch === "\x7f") {
      out += "\\x" + ch.charCodeAt(0).toString(16).padStart(2, "0");
    } else out += ch;
  }
  return out + quote;
}

/** JSON text of a value that keeps floats floats (`7.0`) and writes tuples as arrays. */
export function pyToJson(v: PyValue): string {
  if (v === null) return "null";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") {
    // Integral floats keep a fraction (`7.0`); `1e+300` already reads as a float.
    return Number.isInteger(v) && !/e/i.test(String(v)) ? `${v}.0` : JSON.stringify(v);
  }
  if (typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(pyToJson).join(", ")}]`;
  if (v instanceof PyTuple) return pyToJson(v.items);
  return `{${
    Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyToJson(x)}`).join(", ")
  }}`;
}

// ---------------------------------------------------------------------------------------------
// JSON

/** Parses JSON as Python's `json.loads` does: integers become ints, other numbers floats. */
export function parsePyJson(text: string): PyValue {
  const p = new JsonParser(text);
  p.ws();
  const v = p.value();
  p.ws();
  if (p.i !== text.length) p.fail("extra data");
  return v;
}

/**
 * The JSON value that starts at `start` of `text` and where it ends, or undefined when no valid
 * value starts there.
 */
export function parsePyJsonPrefix(
  text: string,
  start: number,
): { value: PyValue; end: number } | undefined {
  const p = new JsonParser(text, start);
  try {
    return { value: p.value(), end: p.i };
  } catch (e) {
    if (e instanceof PyParseError) return undefined;
    throw e;
  }
}

const JSON_NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
// JSON strings may not hold raw control characters, so the pattern must name them.
// deno-lint-ignore no-control-regex
const JSON_STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

class JsonParser {
  #depth = 0;
  constructor(readonly text: string, public i = 0) {}

  enter(): void {
    if (++this.#depth > MAX_NESTING) this.fail(`brackets nested deeper than ${MAX_NESTING}`);
  }

  fail(what: string): never {
    throw new PyParseError(`Invalid JSON at character ${this.i}: ${what}`);
  }

  ws(): void {
    while (/[ \t\n\r]/.test(this.text[this.i] ?? "")) this.i++;
  }

  value(): PyValue {
    const c = this.text[this.i];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return this.string();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (this.text.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    for (const [word, v] of [["NaN", NaN], ["Infinity", Infinity], ["-Infinity", -Infinity]]) {
      if (this.text.startsWith(word as string, this.i)) {
        this.i += (word as string).length;
        return v as number;
      }
    }
    JSON_NUMBER.lastIndex = this.i;
    const m = JSON_NUMBER.exec(this.text);
    if (!m) this.fail(`unexpected ${c === undefined ? "end of text" : JSON.stringify(c)}`);
    this.i += m[0].length;
    return m[1] === undefined && m[2] === undefined ? BigInt(m[0]) : Number(m[0]);
  }

  string(): string {
    JSON_STRING.lastIndex = this.i;
    const m = JSON_STRING.exec(this.text);
    if (!m) this.fail("bad string");
    this.i += m[0].length;
    return JSON.parse(m[0]) as string;
  }

  array(): PyValue[] {
    this.enter();
    this.i++;
    const out: PyValue[] = [];
    this.ws();
    if (this.text[this.i] === "]") {
      this.i++;
      this.#depth--;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value());
      this.ws();
      const c = this.text[this.i++];
      if (c === "]") {
        this.#depth--;
        return out;
      }
      if (c !== ",") this.fail("expected , or ]");
    }
  }

  object(): PyDict {
    this.enter();
    this.i++;
    const out: PyDict = {};
    this.ws();
    if (this.text[this.i] === "}") {
      this.i++;
      this.#depth--;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.text[this.i] !== '"') this.fail("expected a string key");
      const key = this.string();
      this.ws();
      if (this.text[this.i++] !== ":") this.fail("expected :");
      this.ws();
      out[key] = this.value();
      this.ws();
      const c = this.text[this.i++];
      if (c === "}") {
        this.#depth--;
        return out;
      }
      if (c !== ",") this.fail("expected , or }");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Python calls

/** One decoded call: BFCL's `{name: {param: value}}`. */
export type PyCall = { [name: string]: PyDict };

/**
 * Parses `[f(a=1), g.h(b="x")]` (or a single call) as BFCL's `ast_parse` does: only keyword
 * arguments are kept; a nested call with keywords becomes a `{name: {…}}` dict and one without
 * becomes its source text; a bare name becomes its text; `a op b` on literals is evaluated.
 */
export function parsePyCalls(text: string): PyCall[] {
  const p: PyParser = new PyParser(text);
  p.ws();
  const start = p.i;
  const expr = p.expression();
  p.ws();
  if (p.i !== text.length) p.fail("unexpected text after the expression");
  const items = expr.kind === "list" ? expr.items : expr.kind === "call" ? [expr] : undefined;
  if (!items) p.fail(`expected a list of calls, got ${text.slice(start, p.i)}`);
  return items.map((e) => {
    if (e.kind !== "call") p.fail("every list element must be a call");
    return { [e.name]: e.kwargs };
  });
}

type Expr =
  | { kind: "value"; value: PyValue }
  | { kind: "list"; items: Expr[]; value: PyValue }
  | { kind: "call"; name: string; kwargs: PyDict; value: PyValue };

const PY_NUMBER =
  /(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?)[jJ]?/y;
/** A Python identifier (PEP 3131: Unicode letters, `_`, then also digits and combining marks). */
const PY_NAME = /[\p{L}\p{Nl}_][\p{L}\p{Nl}\p{Mn}\p{Mc}\p{Nd}\p{Pc}]*/uy;

class PyParser {
  i = 0;
  #depth = 0;
  constructor(readonly text: string) {}

  /** Runs `parse` one bracket level deeper, failing past {@linkcode MAX_NESTING}. */
  nested<T>(parse: () => T): T {
    if (++this.#depth > MAX_NESTING) this.fail(`brackets nested deeper than ${MAX_NESTING}`);
    try {
      return parse();
    } finally {
      this.#depth--;
    }
  }

  fail(what: string): never {
    throw new PyParseError(`Invalid Python at character ${this.i}: ${what}`);
  }

  ws(): void {
    while (/[ \t\n\r]/.test(this.text[this.i] ?? "")) this.i++;
  }

  eat(s: string): boolean {
    this.ws();
    if (this.text.startsWith(s, this.i)) {
      this.i += s.length;
      return true;
    }
    return false;
  }

  /** An expression with binary arithmetic (evaluated, as BFCL `eval`s a `BinOp`). */
  expression(): Expr {
    let left = this.term();
    for (;;) {
      this.ws();
      const op = this.text[this.i];
      if (op !== "+" && op !== "-") return left;
      this.i++;
      left = { kind: "value", value: arith(op, left.value, this.term().value, this) };
    }
  }

  term(): Expr {
    let left = this.power();
    for (;;) {
      this.ws();
      const op = ["//", "*", "/", "%"].find((o) =>
        this.text.startsWith(o, this.i) && !this.text.startsWith("**", this.i)
      );
      if (!op) return left;
      this.i += op.length;
      left = { kind: "value", value: arith(op, left.value, this.power().value, this) };
    }
  }

  power(): Expr {
    const base = this.unary();
    if (this.eat("**")) {
      return { kind: "value", value: arith("**", base.value, this.unary().value, this) };
    }
    return base;
  }

  unary(): Expr {
    this.ws();
    const c = this.text[this.i];
    if (c === "-" || c === "+") {
      this.i++;
      const v = this.nested(() => this.unary()).value;
      if (c === "+") return { kind: "value", value: v };
      if (typeof v === "bigint") return { kind: "value", value: -v };
      if (typeof v === "number") return { kind: "value", value: -v };
      if (typeof v === "boolean") return { kind: "value", value: v ? -1n : 0n };
      this.fail("bad operand for unary -");
    }
    return this.atom();
  }

  atom(): Expr {
    this.ws();
    const start = this.i;
    const c = this.text[this.i];
    if (c === undefined) this.fail("unexpected end of text");
    if (c === "[") {
      this.i++;
      const items = this.nested(() => this.sequence("]"));
      return { kind: "list", items, value: items.map((e) => e.value) };
    }
    if (c === "(") {
      this.i++;
      const items = this.nested(() => this.sequence(")"));
      const text = this.text.slice(start, this.i);
      const tuple = items.length !== 1 || /,\s*\)$/.test(text);
      return {
        kind: "value",
        value: tuple ? new PyTuple(items.map((e) => e.value)) : items[0]!.value,
      };
    }
    if (c === "{") return { kind: "value", value: this.nested(() => this.dict()) };
    if (
      c === "'" || c === '"' || /[rRbBuUfF]/.test(c) && /['"]/.test(this.text[this.i + 1] ?? "")
    ) {
      let s = this.stringLiteral();
      // Adjacent string literals concatenate.
      for (;;) {
        this.ws();
        const d = this.text[this.i] ?? "";
        if (d !== "'" && d !== '"') break;
        s += this.stringLiteral();
      }
      return { kind: "value", value: s };
    }
    if (/[0-9.]/.test(c)) {
      PY_NUMBER.lastIndex = this.i;
      const m = PY_NUMBER.exec(this.text);
      if (!m || m[0] === ".") this.fail("bad number");
      this.i += m[0].length;
      return { kind: "value", value: pyNumber(m[0], this) };
    }
    if (this.text.startsWith("...", this.i)) {
      this.i += 3;
      return { kind: "value", value: "..." };
    }
    PY_NAME.lastIndex = this.i;
    const m = PY_NAME.exec(this.text);
    if (!m) this.fail(`unexpected ${JSON.stringify(c)}`);
    this.i += m[0].length;
    const constants: Record<string, PyValue> = { True: true, False: false, None: null };
    if (m[0] in constants && !this.text.startsWith(".", this.i)) {
      return { kind: "value", value: constants[m[0]]! };
    }
    if (m[0] === "lambda") this.fail("lambda expressions are not supported");
    let name = m[0];
    while (this.eat(".")) {
      this.ws();
      PY_NAME.lastIndex = this.i;
      const part = PY_NAME.exec(this.text);
      if (!part) this.fail("expected a name after .");
      this.i += part[0].length;
      name += "." + part[0];
    }
    this.ws();
    if (this.text[this.i] === "(") {
      this.i++;
      const kwargs = this.nested(() => this.arguments());
      const source = this.text.slice(start, this.i);
      const value = Object.keys(kwargs.keywords).length === 0
        ? source
        : { [name]: kwargs.keywords } as PyValue;
      return { kind: "call", name, kwargs: kwargs.keywords, value };
    }
    if (this.text[this.i] === "[") this.fail("subscripts are not supported");
    return { kind: "value", value: name };
  }

  sequence(close: string): Expr[] {
    const items: Expr[] = [];
    for (;;) {
      if (this.eat(close)) return items;
      items.push(this.expression());
      if (this.eat(close)) return items;
      if (!this.eat(",")) this.fail(`expected , or ${close}`);
    }
  }

  dict(): PyDict {
    this.i++;
    const out: PyDict = {};
    for (;;) {
      if (this.eat("}")) return out;
      const key = this.expression().value;
      if (!this.eat(":")) this.fail("expected : in a dict (sets are not supported)");
      const value = this.expression().value;
      out[typeof key === "string" ? key : pyRepr(key)] = value;
      if (this.eat("}")) return out;
      if (!this.eat(",")) this.fail("expected , or }");
    }
  }

  arguments(): { keywords: PyDict } {
    const keywords: PyDict = {};
    for (;;) {
      if (this.eat(")")) return { keywords };
      this.ws();
      PY_NAME.lastIndex = this.i;
      const m = PY_NAME.exec(this.text);
      const afterName = m ? this.text.slice(this.i + m[0].length).match(/^\s*=(?!=)/) : null;
      if (m && afterName) {
        this.i += m[0].length + afterName[0].length;
        keywords[m[0]] = this.expression().value;
      } else {
        this.expression(); // A positional argument: parsed, then dropped as BFCL drops it.
      }
      if (this.eat(")")) return { keywords };
      if (!this.eat(",")) this.fail("expected , or )");
    }
  }

  stringLiteral(): string {
    let prefix = "";
    while (/[rRbBuUfF]/.test(this.text[this.i] ?? "")) prefix += this.text[this.i++]!.toLowerCase();
    if (prefix.includes("f")) this.fail("f-strings are not supported");
    const raw = prefix.includes("r");
    const q = this.text[this.i]!;
    const triple = this.text.startsWith(q.repeat(3), this.i);
    const delim = triple ? q.repeat(3) : q;
    this.i += delim.length;
    let out = "";
    for (;;) {
      if (this.i >= this.text.length) this.fail("unterminated string");
      if (this.text.startsWith(delim, this.i)) {
        this.i += delim.length;
        return out;
      }
      const ch = this.text[this.i]!;
      if (ch === "\n" && !triple) this.fail("newline in a string");
      if (ch !== "\\") {
        out += ch;
        this.i++;
        continue;
      }
      const next = this.text[this.i + 1] ?? "";
      if (raw) {
        out += ch + next;
        this.i += 2;
        continue;
      }
      this.i += 2;
      const simple: Record<string, string> = {
        n: "\n",
        t: "\t",
        r: "\r",
        "\\": "\\",
        "'": "'",
        '"': '"',
        a: "\x07",
        b: "\b",
        f: "\f",
        v: "\v",
        "0": "\0",
        "\n": "",
      };
      if (next in simple) out += simple[next];
      else if (next === "x" || next === "u" || next === "U") {
        const len = next === "x" ? 2 : next === "u" ? 4 : 8;
        const hex = this.text.slice(this.i, this.i + len);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) this.fail("bad escape");
        out += String.fromCodePoint(parseInt(hex, 16));
        this.i += len;
      } else out += "\\" + next;
    }
  }
}

function pyNumber(text: string, p: PyParser): PyValue {
  const t = text.replaceAll("_", "");
  if (/[jJ]$/.test(t)) p.fail("complex numbers are not supported");
  if (/^0[xX]/.test(t) || /^0[oO]/.test(t) || /^0[bB]/.test(t)) return BigInt(t.toLowerCase());
  if (/[.eE]/.test(t)) return Number(t);
  return BigInt(t);
}

function arith(op: string, a: PyValue, b: PyValue, p: PyParser): PyValue {
  const na = numeric(a), nb = numeric(b);
  if (op === "+" && typeof a === "string" && typeof b === "string") return a + b;
  if (na === undefined || nb === undefined) p.fail(`unsupported operands for ${op}`);
  if (typeof na === "bigint" && typeof nb === "bigint" && op !== "/") {
    if ((op === "//" || op === "%") && nb === 0n) p.fail("division by zero");
    switch (op) {
      case "+":
        return na + nb;
      case "-":
        return na - nb;
      case "*":
        return na * nb;
      case "**":
        return nb >= 0n ? na ** nb : Number(na) ** Number(nb);
      case "//": {
        const q = na / nb;
        return (na % nb !== 0n) && ((na < 0n) !== (nb < 0n)) ? q - 1n : q;
      }
      case "%": {
        const r = na % nb;
        return r !== 0n && ((r < 0n) !== (nb < 0n)) ? r + nb : r;
      }
    }
  }
  const x = Number(na), y = Number(nb);
  if ((op === "/" || op === "//" || op === "%") && y === 0) p.fail("division by zero");
  switch (op) {
    case "+":
      return x + y;
    case "-":
      return x - y;
    case "*":
      return x * y;
    case "/":
      return x / y;
    case "**":
      return x ** y;
    case "//":
      return Math.floor(x / y);
    default:
      return x - y * Math.floor(x / y);
  }
}
