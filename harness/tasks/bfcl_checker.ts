/**
 * The Berkeley Function-Calling Leaderboard's AST checker (gorilla
 * `bfcl_eval/eval_checker/ast_eval/ast_checker.py`), rule for rule, with its error types as
 * failure codes:
 *
 * - the function name must match; every `required` parameter must be present; a parameter the
 *   function or the possible answer does not know is unexpected;
 * - types follow Python (`integer` int, `float` float, `string`/`any` str, `boolean` bool,
 *   `array`/`tuple` list, `dict` dict) with int → float promotion, one level of item types for
 *   arrays, and BFCL's "variable" allowance (a value of the possible answer's type is accepted);
 * - strings (alone, in lists and in dicts) compare after `standardize_string`: spaces and
 *   `,./-_*^` removed, lower case, `'` → `"`;
 * - a possible-answer list containing `""` marks an optional parameter;
 * - `parallel` categories match calls to answers in any order; `multiple` checks the one call
 *   against the one answer; other categories need exactly one call;
 * - Java and JavaScript categories (`…java…`, `…javascript…`, as BFCL's `is_java`/`is_js` tell):
 *   every argument must be a string (else `type_error:java` / `type_error:js`) holding a literal,
 *   converted by the declared type with BFCL's converters (`bfcl_literals.ts`) before the checks
 *   above; int → float promotion is Python's only.
 *
 * One deliberate difference: BFCL pairs parallel calls with answers greedily, in answer order, which
 * rejects some correct answers listed in another order (BFCL's `parallel_178` reversed: its first
 * possible answer accepts two of the calls and takes the one a later answer needs). Here calls and
 * answers are paired by a perfect matching, found whenever one exists; wherever BFCL's greedy
 * pairing succeeds, the verdict is the same.
 *
 * Irrelevance (no call expected) and the decoding of model output live in `tool_use.ts`.
 *
 * @module
 */
import {
  isDict,
  type PyCall,
  type PyDict,
  pyEquals,
  pyIn,
  pyRepr,
  PyTuple,
  pyTypeName,
  type PyValue,
} from "./py_value.ts";
import {
  BfclTypeError,
  JAVA_TYPES,
  javaTypeConverter,
  JS_TYPES,
  jsTypeConverter,
  NESTED_CONVERSION_TYPES,
} from "./bfcl_literals.ts";

/** The language of a BFCL category: its functions' syntax and type rules. */
export type BfclLanguage = "python" | "java" | "javascript";

/** BFCL's `is_java` / `is_js`: the language a category's name implies. */
export function categoryLanguage(category: string): BfclLanguage {
  if (category.includes("javascript")) return "javascript";
  if (category.includes("java")) return "java";
  return "python";
}

/** The declared types each language's checker knows (the keys of BFCL's type tables). */
export const KNOWN_TYPES: Readonly<Record<BfclLanguage, readonly string[]>> = {
  python: ["string", "integer", "float", "boolean", "array", "tuple", "dict", "any"],
  java: Object.keys(JAVA_TYPES),
  javascript: Object.keys(JS_TYPES),
};

/** A function description (BFCL `function` entries; `type: dict` parameters). */
export interface FunctionDoc {
  name: string;
  description?: string;
  parameters: {
    type?: string;
    properties: Record<string, { type: string; items?: { type: string } }>;
    required?: string[];
  };
}

/** One possible answer: `{function name: {parameter: [acceptable values]}}`. */
export type PossibleAnswer = { [name: string]: { [param: string]: PyValue[] } };

/** The checker's verdict, as BFCL reports it. */
export interface CheckResult {
  valid: boolean;
  error: string[];
  /** BFCL's `error_type`, e.g. `simple_function_checker:missing_required`; "" when valid. */
  errorType: string;
}

/** Thrown when a question's function list lacks a function its answer names (bad data). */
export class BfclDataError extends Error {
  override name = "BfclDataError";
}

const PYTHON_TYPES: Record<string, string> = {
  string: "str",
  integer: "int",
  float: "float",
  boolean: "bool",
  array: "list",
  tuple: "list",
  dict: "dict",
  any: "str",
};
const NESTED_TYPES = ["array", "tuple"];

const ok = (): CheckResult => ({ valid: true, error: [], errorType: "" });
const fail = (errorType: string, error: string): CheckResult => ({
  valid: false,
  error: [error],
  errorType,
});

/** Checks decoded calls against the possible answers of a question in a BFCL category. */
export function astChecker(
  functions: readonly FunctionDoc[],
  calls: readonly PyCall[],
  answers: readonly PossibleAnswer[],
  category: string,
): CheckResult {
  const language = categoryLanguage(category);
  if (category.includes("parallel")) return parallelNoOrder(functions, calls, answers, language);
  if (category.includes("multiple")) return multipleChecker(functions, calls, answers, language);
  if (calls.length !== 1) {
    return fail("simple_function_checker:wrong_count", "Wrong number of functions.");
  }
  return simpleFunctionChecker(functions[0]!, calls[0]!, answers[0]!, language);
}

function findDescription(functions: readonly FunctionDoc[], name: string): FunctionDoc {
  const doc = functions.find((f) => f.name === name);
  if (!doc) throw new BfclDataError(`The possible answer names "${name}", which no function has`);
  return doc;
}

function possibleAnswerType(options: readonly PyValue[]): string | undefined {
  for (const o of options) if (o !== "") return pyTypeName(o);
  return undefined;
}

interface TypeResult extends CheckResult {
  isVariable: boolean;
}

function typeChecker(
  param: string,
  value: PyValue,
  options: readonly PyValue[],
  expectedDescription: string,
  expected: string,
  nested: string | undefined,
): TypeResult {
  const result: TypeResult = {
    valid: true,
    error: [],
    isVariable: false,
    errorType: "type_error:simple",
  };
  let isVariable = false;
  const answerType = possibleAnswerType(options);
  if (answerType !== undefined && answerType !== expected) isVariable = true;
  if (pyTypeName(value) === expected) {
    if (nested === undefined) {
      result.isVariable = isVariable;
      return result;
    }
    for (const option of options) {
      let flag = true;
      if (Array.isArray(option)) {
        for (const item of value as PyValue[]) {
          const r = typeChecker(param, item, option, `<class '${nested}'>`, nested, undefined);
          if (!r.valid) {
            flag = false;
            break;
          }
        }
      }
      if (flag) return { valid: true, error: [], errorType: "", isVariable };
    }
    result.valid = false;
    result.error = [
      `Nested type checking failed for parameter '${param}'. Expected outer type ` +
      `${expectedDescription} with inner type <class '${nested}'>. Parameter value: ` +
      `${pyRepr(value)}.`,
    ];
    result.errorType = "type_error:nested";
  }
  if (answerType !== undefined && pyTypeName(value) === answerType) {
    result.isVariable = true;
    return result;
  }
  result.valid = false;
  result.error.push(
    `Incorrect type for parameter '${param}'. Expected type ${expectedDescription}, got ` +
      `${pyTypeName(value)}. Parameter value: ${pyRepr(value)}.`,
  );
  result.errorType = "type_error:simple";
  return result;
}

/** BFCL's `standardize_string`. */
export function standardizeString(s: string): string {
  return s.replace(/[ ,./\-_*^]/g, "").toLowerCase().replaceAll("'", '"');
}

/** Python `list(x)` of an answer option (a string iterates over its characters). */
function asList(option: PyValue): PyValue[] {
  if (Array.isArray(option)) return option;
  if (option instanceof PyTuple) return option.items;
  if (typeof option === "string") return [...option];
  if (isDict(option)) return Object.keys(option);
  throw new BfclDataError(`A list parameter's possible answer ${pyRepr(option)} is not iterable`);
}

function stringChecker(param: string, value: string, options: readonly PyValue[]): CheckResult {
  const wanted = options.filter((o): o is string => typeof o === "string").map(standardizeString);
  if (!wanted.includes(standardizeString(value))) {
    return fail(
      "value_error:string",
      `Invalid value for parameter '${param}': ${pyRepr(value)}. Expected one of ` +
        `${pyRepr([...options])}. Case insensitive.`,
    );
  }
  return ok();
}

function listChecker(param: string, value: PyValue[], options: readonly PyValue[]): CheckResult {
  const std = (v: PyValue) => typeof v === "string" ? standardizeString(v) : v;
  const wanted = options.map((o) => asList(o).map(std));
  if (!pyIn(value.map(std), wanted)) {
    return fail(
      "value_error:list/tuple",
      `Invalid value for parameter '${param}': ${pyRepr(value)}. Expected one of ` +
        `${pyRepr([...options])}.`,
    );
  }
  return ok();
}

function dictChecker(_param: string, value: PyDict, options: readonly PyValue[]): CheckResult {
  let result: CheckResult = { valid: false, error: [], errorType: "dict_checker:unclear" };
  for (const option of options) {
    if (option === "") continue;
    result = { valid: false, error: [], errorType: "dict_checker:unclear" };
    let flag = true;
    if (!isDict(option)) {
      throw new BfclDataError(`A dict parameter's possible answer ${pyRepr(option)} is not a dict`);
    }
    const answer = option;
    for (const [key, v] of Object.entries(value)) {
      if (!(key in answer)) {
        result = fail("value_error:dict_key", `Unexpected dict key parameter: '${key}'.`);
        flag = false;
        break;
      }
      const std = typeof v === "string" ? standardizeString(v) : v;
      const wanted = asList(answer[key]!).map((o) =>
        typeof o === "string" ? standardizeString(o) : o
      );
      if (!pyIn(std, wanted)) {
        result = fail(
          "value_error:dict_value",
          `Invalid value for parameter '${key}': ${pyRepr(v)}. Expected one of ` +
            `${pyRepr(wanted)}.`,
        );
        flag = false;
        break;
      }
    }
    for (const [key, v] of Object.entries(answer)) {
      if (!(key in value) && !pyIn("", asList(v))) {
        result = fail("value_error:dict_key", `Missing dict key parameter: '${key}'.`);
        flag = false;
        break;
      }
    }
    if (flag) return ok();
  }
  return result;
}

function listDictChecker(param: string, value: PyValue[], options: readonly PyValue[]) {
  let result: CheckResult = { valid: false, error: [], errorType: "list_dict_checker:unclear" };
  for (const option of options) {
    let flag = true;
    const answer = asList(option);
    if (value.length !== answer.length) {
      result = fail("value_error:list_dict_count", "Wrong number of dictionaries in the list.");
      continue;
    }
    for (let i = 0; i < value.length; i++) {
      result = dictChecker(param, value[i] as PyDict, [answer[i]!]);
      if (!result.valid) {
        flag = false;
        break;
      }
    }
    if (flag) return ok();
  }
  return result;
}

/** BFCL's `simple_function_checker`. */
export function simpleFunctionChecker(
  doc: FunctionDoc,
  call: PyCall,
  answer: PossibleAnswer,
  language: BfclLanguage = "python",
): CheckResult {
  const possible = Object.values(answer)[0]!;
  const name = doc.name;
  const details = doc.parameters.properties;
  if (!(name in call)) {
    return fail(
      "simple_function_checker:wrong_func_name",
      `Function name '${name}' not found in model output.`,
    );
  }
  const params = call[name]!;
  for (const param of doc.parameters.required ?? []) {
    if (!(param in params)) {
      return fail(
        "simple_function_checker:missing_required",
        `Missing required parameter: '${param}'.`,
      );
    }
  }
  for (let [param, value] of Object.entries(params)) {
    if (!(param in details) || !(param in possible)) {
      return fail(
        "simple_function_checker:unexpected_param",
        `Unexpected parameter: '${param}'.`,
      );
    }
    const description = details[param]!.type;
    const itemType = details[param]!.items?.type;
    let expected: string | undefined;
    let nested: string | undefined;
    if (language === "python") {
      expected = PYTHON_TYPES[description];
      nested = NESTED_TYPES.includes(description) && itemType !== undefined
        ? PYTHON_TYPES[itemType]
        : undefined;
    } else {
      const table = language === "java" ? JAVA_TYPES : JS_TYPES;
      expected = table[description];
      if (expected !== undefined) {
        if (typeof value !== "string") {
          return fail(
            language === "java" ? "type_error:java" : "type_error:js",
            `Incorrect type for parameter '${param}'. Expected type String, got ` +
              `${pyTypeName(value)}. Parameter value: ${pyRepr(value)}.`,
          );
        }
        const convert = language === "java" ? javaTypeConverter : jsTypeConverter;
        try {
          if (NESTED_CONVERSION_TYPES.includes(description)) {
            nested = itemType === undefined ? undefined : table[itemType];
            value = convert(value, description, itemType);
          } else {
            value = convert(value, description);
          }
        } catch (e) {
          if (!(e instanceof BfclTypeError)) throw e;
          return fail("type_error:unsupported", `Parameter '${param}': ${e.message}.`);
        }
      }
    }
    if (expected === undefined) {
      throw new BfclDataError(
        `Parameter "${param}" of "${name}" has unknown type "${description}"`,
      );
    }
    if (description === "tuple" && value instanceof PyTuple) value = value.items;
    if (language === "python" && description === "float" && typeof value === "bigint") {
      value = Number(value);
    }
    const options = possible[param]!;
    const typed = typeChecker(param, value, options, description, expected, nested);
    if (!typed.valid) return typed;
    if (!typed.isVariable) {
      let r: CheckResult | undefined;
      if (expected === "dict") r = dictChecker(param, value as PyDict, options);
      else if (expected === "list" && nested === "dict") {
        r = listDictChecker(param, value as PyValue[], options);
      } else if (expected === "str") r = stringChecker(param, value as string, options);
      else if (expected === "list") r = listChecker(param, value as PyValue[], options);
      if (r) {
        if (!r.valid) return r;
        continue;
      }
    }
    if (!pyIn(value, options)) {
      return fail(
        "value_error:others",
        `Invalid value for parameter '${param}': ${pyRepr(value)}. Expected one of ` +
          `${pyRepr(options)}.`,
      );
    }
  }
  for (const [param, options] of Object.entries(possible)) {
    if (!(param in params) && !options.some((o) => pyEquals(o, ""))) {
      return fail(
        "simple_function_checker:missing_optional",
        `Optional parameter '${param}' not provided and not marked as optional.`,
      );
    }
  }
  return ok();
}

function parallelNoOrder(
  functions: readonly FunctionDoc[],
  calls: readonly PyCall[],
  answers: readonly PossibleAnswer[],
  language: BfclLanguage,
): CheckResult {
  if (calls.length !== answers.length) {
    return fail("parallel_function_checker_no_order:wrong_count", "Wrong number of functions.");
  }
  // fits[i][j]: call j satisfies possible answer i.
  const fits = answers.map((answer) => {
    const doc = findDescription(functions, Object.keys(answer)[0]!);
    return calls.map((call) => simpleFunctionChecker(doc, call, answer, language).valid);
  });
  // A perfect matching by augmenting paths (Kuhn): unlike BFCL's greedy pass in answer order, it
  // accepts every order of a correct set of calls.
  const callOf = new Array<number>(answers.length).fill(-1);
  const answerOf = new Array<number>(calls.length).fill(-1);
  const augment = (i: number, seen: Set<number>): boolean => {
    for (let j = 0; j < calls.length; j++) {
      if (!fits[i]![j] || seen.has(j)) continue;
      seen.add(j);
      if (answerOf[j] === -1 || augment(answerOf[j]!, seen)) {
        answerOf[j] = i;
        callOf[i] = j;
        return true;
      }
    }
    return false;
  };
  for (let i = 0; i < answers.length; i++) {
    if (!augment(i, new Set())) {
      return fail(
        "parallel_function_checker_no_order:cannot_find_match",
        `Could not find a matching function among the model outputs for index ${i} of possible ` +
          `answers.`,
      );
    }
  }
  return ok();
}

function multipleChecker(
  functions: readonly FunctionDoc[],
  calls: readonly PyCall[],
  answers: readonly PossibleAnswer[],
  language: BfclLanguage,
): CheckResult {
  if (calls.length !== answers.length) {
    return fail("multiple_function_checker:wrong_count", "Wrong number of functions.");
  }
  const doc = findDescription(functions, Object.keys(answers[0]!)[0]!);
  return simpleFunctionChecker(doc, calls[0]!, answers[0]!, language);
}
