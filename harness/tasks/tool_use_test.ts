import assert from "node:assert/strict";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import {
  groundTruthOutput,
  loadToolSamples,
  scoreToolOutput,
  type ToolSample,
  toolsFor,
  toolUse,
} from "./tool_use.ts";
import { decodeToolCalls } from "./tool_call_parse.ts";
import {
  parsePyCalls,
  parsePyJson,
  type PyDict,
  pyEquals,
  pyToJson,
  PyTuple,
  type PyValue,
} from "./py_value.ts";
import { standardizeString } from "./bfcl_checker.ts";
import { contextFor, datasetOf, missing, stories } from "./test_context.ts";

const BFCL = "data/toolcall/bfcl_v4";
const CATEGORIES = ["simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance"];
const ignore = !CATEGORIES.every((c) => hasShared(`${BFCL}/BFCL_v4_${c}.json`));
const load = (c: string) =>
  loadToolSamples({ id: c, path: sharedPath(`${BFCL}/BFCL_v4_${c}.json`) });

Deno.test({
  name: "tool_use: BFCL's own ground truth scores 100 % in every category, as JSON and as Python",
  ignore,
  async fn() {
    for (const c of CATEGORIES) {
      const samples = await load(c);
      assert.ok(samples.length >= 200, c);
      for (const format of ["json", "python"] as const) {
        const failed = samples.map((s) => {
          const output = c === "irrelevance"
            ? "None of these functions can answer that."
            : groundTruthOutput(s, format);
          return scoreToolOutput(s, output);
        }).filter((r) => !r.correct);
        assert.deepEqual(failed, [], `${c} as ${format}`);
      }
    }
  },
});

type Call = { name: string; arguments: PyDict };

/** The ground-truth calls of a sample as {name, arguments} objects (ints and floats kept apart). */
function truthCalls(s: ToolSample): Call[] {
  return parsePyJson(groundTruthOutput(s, "json")) as Call[];
}

const asJson = (calls: (Call | undefined)[]) => pyToJson(calls as PyValue);

Deno.test({
  name:
    "tool_use: corrupted ground truth gives BFCL's failure codes; reordered parallel calls pass",
  ignore,
  async fn() {
    const counts: Record<string, number> = {};
    const expect = (s: ToolSample, calls: (Call | undefined)[], code: string) => {
      const r = scoreToolOutput(s, asJson(calls));
      assert.equal(r.code, code, `${s.id}: ${asJson(calls)} → ${r.code} ${r.message}`);
      counts[code] = (counts[code] ?? 0) + 1;
    };
    for (const s of await load("simple_python")) {
      const [call] = truthCalls(s);
      const fn = s.functions[0]!;
      expect(s, [{ ...call!, name: call!.name + "_x" }], "simple_function_checker:wrong_func_name");
      const required = fn.parameters.required ?? [];
      if (required.length > 0) {
        const { [required[0]!]: _, ...rest } = call!.arguments;
        expect(s, [{ ...call!, arguments: rest }], "simple_function_checker:missing_required");
      }
      expect(
        s,
        [{ ...call!, arguments: { zz_extra: 1n, ...call!.arguments } }],
        "simple_function_checker:unexpected_param",
      );
      for (const [k, v] of Object.entries(call!.arguments)) {
        const type = fn.parameters.properties[k]!.type;
        // Wrong type: a list where an integer or string belongs.
        if (type === "integer" || type === "string") {
          expect(
            s,
            [{ ...call!, arguments: { ...call!.arguments, [k]: [v!] } }],
            "type_error:simple",
          );
        }
        // Wrong value of the right type.
        if (type === "string") {
          expect(
            s,
            [{ ...call!, arguments: { ...call!.arguments, [k]: "zzz-not-an-answer" } }],
            "value_error:string",
          );
        }
        if (type === "integer" && typeof v === "bigint") {
          expect(
            s,
            [{ ...call!, arguments: { ...call!.arguments, [k]: v + 1001n } }],
            "value_error:others",
          );
        }
      }
      expect(s, [call, call], "simple_function_checker:wrong_count");
    }
    for (const s of await load("parallel")) {
      const calls = truthCalls(s);
      assert.ok(calls.length >= 2);
      assert.ok(scoreToolOutput(s, asJson([...calls].reverse())).correct, `${s.id} reordered`);
      expect(s, calls.slice(1), "parallel_function_checker_no_order:wrong_count");
      expect(s, [...calls, calls[0]], "parallel_function_checker_no_order:wrong_count");
      expect(
        s,
        [{ ...calls[0]!, name: "nope" }, ...calls.slice(1)],
        "parallel_function_checker_no_order:cannot_find_match",
      );
    }
    for (const s of await load("multiple")) {
      const [call] = truthCalls(s);
      const other = s.functions.find((f) => f.name !== call!.name);
      if (other) {
        expect(s, [{ ...call!, name: other.name }], "simple_function_checker:wrong_func_name");
      }
      expect(s, [call, call], "multiple_function_checker:wrong_count");
    }
    for (const s of (await load("irrelevance")).slice(0, 20)) {
      expect(
        s,
        [{ name: s.functions[0]!.name, arguments: {} }],
        "irrelevance_error:decoder_success",
      );
    }
    // Every corruption kind was exercised many times.
    assert.deepEqual(Object.keys(counts).sort(), [
      "irrelevance_error:decoder_success",
      "multiple_function_checker:wrong_count",
      "parallel_function_checker_no_order:cannot_find_match",
      "parallel_function_checker_no_order:wrong_count",
      "simple_function_checker:missing_required",
      "simple_function_checker:unexpected_param",
      "simple_function_checker:wrong_count",
      "simple_function_checker:wrong_func_name",
      "type_error:simple",
      "value_error:others",
      "value_error:string",
    ]);
    for (const code of Object.keys(counts)) {
      assert.ok(counts[code]! >= 20, `${code}: ${counts[code]}`);
    }
  },
});

Deno.test("tool_use: Python types and BFCL's promotion, optional and normalisation rules", () => {
  const sample: ToolSample = {
    id: "t_0",
    category: "simple",
    messages: [],
    functions: [{
      name: "area",
      parameters: {
        type: "dict",
        properties: {
          size: { type: "float" },
          count: { type: "integer" },
          city: { type: "string" },
          tags: { type: "array", items: { type: "string" } },
          unit: { type: "string" },
        },
        required: ["size", "count"],
      },
    }],
    answers: [
      parsePyJson(
        '{"area": {"size": [2.0], "count": [3], "city": ["New York, NY", ""], "tags": [["a b", "c"], ""], "unit": ["", "m"]}}',
      ) as ToolSample["answers"][number],
    ],
  };
  const code = (out: string) => scoreToolOutput(sample, out).code;
  assert.equal(
    code("area(size=2, count=3)"),
    "ok",
    "int → float promotion; optional params left out",
  );
  assert.equal(code('[area(size=2.0, count=3, city="new york ny", tags=["A-B", "c"])]'), "ok");
  assert.equal(code("area(size=2.0, count=3.0)"), "type_error:simple", "no float → int");
  assert.equal(code("area(size=2.0, count=True)"), "type_error:simple", "bool is not int");
  assert.equal(code("area(size=2.0, count=3, unit='km')"), "value_error:string");
  assert.equal(code("area(size=2.0, count=3, tags=['c', 'a b'])"), "value_error:list/tuple");
  // BFCL's nested type check passes any list when "" (optional) is among the options …
  assert.equal(code("area(size=2.0, count=3, tags=[1])"), "value_error:list/tuple");
  // … and checks the item types when it is not.
  const strict = structuredClone(sample.answers[0]!);
  strict.area!.tags = [["a b", "c"]];
  const nested = scoreToolOutput(
    { ...sample, answers: [strict] },
    "area(size=2.0, count=3, tags=[1])",
  );
  assert.equal(nested.code, "type_error:nested");
  assert.equal(
    code('{"name": "area", "arguments": {"size": 2.5, "count": 3}}'),
    "value_error:others",
  );
  assert.equal(code("I would call area."), "ast_decoder:decoder_failed");
  assert.equal(code('{"answer": 4}'), "ast_decoder:decoder_wrong_output_format");
  assert.equal(standardizeString("April 1, 2024"), "april12024");
  assert.equal(standardizeString("it's"), 'it"s');
});

Deno.test("tool_use: calls decode from tags, JSON shapes and Python syntax", () => {
  const calls = (out: string) => {
    const d = decodeToolCalls(out);
    assert.ok(d.ok, `${out}: ${!d.ok && d.message}`);
    return d.calls;
  };
  const want = [{ f: { a: 1n } }, { "m.g": { b: "x" } }];
  const same = (a: unknown, b: unknown) =>
    assert.ok(
      pyEquals(a as never, b as never),
      JSON.stringify(a, (_, v) => typeof v === "bigint" ? `${v}n` : v),
    );
  same(
    calls(
      '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call><tool_call>{"name": "m.g", "arguments": {"b": "x"}}</tool_call>',
    ),
    want,
  );
  same(calls('{"name": "f", "arguments": {"a": 1}}{"name": "m.g", "arguments": {"b": "x"}}'), want);
  same(
    calls(
      '```json\n[{"type": "function", "function": {"name": "f", "arguments": "{\\"a\\": 1}"}}, {"function": "m.g", "parameters": {"b": "x"}}]\n```',
    ),
    want,
  );
  same(calls('[{"f": {"a": 1}}, {"m.g": {"b": "x"}}]'), want);
  same(calls("[f(a=1), m.g(b='x')]"), want);
  same(calls("```python\nf(0, a=1)\n```"), [{ f: { a: 1n } }]); // positional arguments are dropped
  same(calls("f(a=[], b={'k': (1, 2)}, c=-3.5e1, d=None, e=2**3, g=x.y(z=1), h=q)"), [{
    f: {
      a: [],
      b: { k: new PyTuple([1n, 2n]) },
      c: -35,
      d: null,
      e: 8n,
      g: { "x.y": { z: 1n } },
      h: "q",
    },
  }]);
  assert.deepEqual(calls("[]"), []);
  assert.throws(() => parsePyCalls("[f(a=1), 3]"), /every list element must be a call/);
});

Deno.test("tool_use: the fixture set's inline ground truth scores 100 %; tools in OpenAI form", async () => {
  const path = `${REPO_ROOT}/fixtures/datasets/tool_calls.jsonl`;
  const samples = await loadToolSamples({ id: "tool_calls", path });
  const categories = new Set(samples.map((s) => s.category));
  assert.deepEqual([...categories].sort(), [
    "irrelevance",
    "multiple",
    "parallel",
    "parallel_multiple",
    "simple",
  ]);
  for (const s of samples) {
    const out = s.category === "irrelevance"
      ? "No tool fits."
      : truthCalls(s).map((c) => `<tool_call>${pyToJson(c as PyValue)}</tool_call>`).join("");
    assert.ok(scoreToolOutput(s, out).correct, s.id);
  }
  const [tool] = toolsFor(samples[0]!.functions, "openai") as {
    type: string;
    function: { parameters: { type: string } };
  }[];
  assert.equal(tool!.type, "function");
  assert.equal(tool!.function.parameters.type, "object");
});

Deno.test({
  name: "tool_use: the task runs stories260K with tools in the fallback prompt",
  ignore: missing(),
  async fn() {
    const model = await stories();
    const dataset = datasetOf(`${REPO_ROOT}/fixtures/datasets/tool_calls.jsonl`, "jsonl");
    const rows = await toolUse.run(
      contextFor(model, "tool_use", { max_new_tokens: 4, limit: 5 }, { dataset }),
    );
    assert.equal(rows[0]!.metric, "accuracy");
    assert.equal(rows[0]!.samples!.values.length, 5);
    // One question of each category (5 strata, 5 samples), each with its own row.
    assert.deepEqual(rows.slice(1, 6).map((r) => r.n), [1, 1, 1, 1, 1]);
    assert.equal(rows.at(-1)!.metric, "failures");
    assert.match(
      rows[0]!.detail,
      /^tool_use chat=fallback tool_format=bfcl max_new_tokens=4 samples=5\/250/,
    );
  },
});
