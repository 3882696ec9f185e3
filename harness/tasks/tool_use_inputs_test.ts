import assert from "node:assert/strict";
import { join } from "node:path";
import {
  categoryFromFileName,
  categoryFromId,
  loadToolSamples,
  scoreToolOutput,
  type ToolSample,
} from "./tool_use.ts";
import { decodeToolCalls } from "./tool_call_parse.ts";
import { DatasetError } from "../../core/dataset.ts";
import { pyEquals, type PyValue } from "./py_value.ts";
import { javaTypeConverter, jsTypeConverter } from "./bfcl_literals.ts";
import type { FunctionDoc } from "./bfcl_checker.ts";

const fn = (
  name: string,
  props: FunctionDoc["parameters"]["properties"],
  required: string[] = [],
): FunctionDoc => ({
  name,
  description: "",
  parameters: { type: "dict", properties: props, required },
});

async function bfclFolder(
  name: string,
  questions: unknown[],
  answers?: unknown[],
): Promise<string> {
  const dir = await Deno.makeTempDir();
  const path = join(dir, name);
  await Deno.writeTextFile(path, questions.map((q) => JSON.stringify(q)).join("\n") + "\n");
  if (answers) {
    await Deno.mkdir(join(dir, "possible_answer"));
    await Deno.writeTextFile(
      join(dir, "possible_answer", name),
      answers.map((a) => JSON.stringify(a)).join("\n") + "\n",
    );
  }
  return path;
}

const question = (id: string, functions: unknown[]) => ({
  id,
  question: [[{ role: "user", content: "?" }]],
  function: functions,
});

Deno.test("tool_use: brackets nested 3000 deep are a decoder failure, not a stack overflow", () => {
  const sample: ToolSample = {
    id: "s",
    category: "simple",
    messages: [],
    functions: [fn("f", { a: { type: "array", items: { type: "integer" } } }, ["a"])],
    answers: [{ f: { a: [[1n]] } }],
  };
  for (
    const out of [
      "[".repeat(3000),
      `f(a=${"[".repeat(3000)}1${"]".repeat(3000)})`,
      `{"name": "f", "arguments": {"a": ${"[".repeat(3000)}1${"]".repeat(3000)}}}`,
      `f(a=${"-".repeat(3000)}1)`,
      `<tool_call>${"{".repeat(5000)}</tool_call>`,
    ]
  ) {
    const r = scoreToolOutput(sample, out);
    assert.match(r.code, /^ast_decoder:decoder_(failed|wrong_output_format)$/, out.slice(0, 40));
  }
  // Under 200 open brackets in all still decode (Python's own parser stops at 200 too).
  const deep = decodeToolCalls(`f(a=${"[".repeat(190)}1${"]".repeat(190)})`);
  assert.ok(deep.ok);
});

Deno.test("tool_use: Python call syntax with non-ASCII identifiers decodes", () => {
  const d = decodeToolCalls("[calcular_impuesto(año_vehiculo=2020, país='España', 名前='x')]");
  assert.ok(d.ok, !d.ok ? d.message : "");
  assert.ok(
    pyEquals(
      d.calls as unknown as PyValue,
      [{ calcular_impuesto: { "año_vehiculo": 2020n, "país": "España", "名前": "x" } }],
    ),
  );
});

Deno.test("tool_use: Java and JavaScript literals follow BFCL's converters", () => {
  const eq = (a: PyValue, b: PyValue) => assert.ok(pyEquals(a, b), `${String(a)}`);
  eq(javaTypeConverter("true", "boolean"), true);
  eq(javaTypeConverter("TRUE", "boolean"), "TRUE");
  eq(javaTypeConverter("123L", "long"), 123n);
  eq(javaTypeConverter("123", "long"), "123");
  eq(javaTypeConverter("3.5f", "float"), 3.5);
  eq(javaTypeConverter("3.5", "double"), 3.5);
  eq(javaTypeConverter("new int[]{1, 2, 3}", "Array", "integer"), [1n, 2n, 3n]);
  // BFCL converts each element of a String[] with its String rule, which keeps the quotes.
  eq(javaTypeConverter('new String[]{"a", "b"}', "Array", "String"), ['"a"', '"b"']);
  eq(javaTypeConverter('new ArrayList<>(Arrays.asList("a", "b"))', "ArrayList", "String"), [
    "a",
    "b",
  ]);
  eq(
    javaTypeConverter(
      'new HashMap<String, Object>() {{ put("k1", 1); put("k2", "v"); put("k3", true); }}',
      "HashMap",
    ),
    { k1: 1n, k2: "v", k3: true },
  );
  eq(javaTypeConverter("new HashMap<>()", "HashMap"), {});
  assert.throws(() => javaTypeConverter("x", "Set"), /Set conversion is not implemented/);
  eq(jsTypeConverter("'abc'", "String"), "abc");
  eq(jsTypeConverter("123n", "Bigint"), 123n);
  eq(jsTypeConverter("[1, 'two', true]", "array"), [1n, "two", true]);
  eq(jsTypeConverter("new Array(4.4, 5.5)", "array", "float"), [4.4, 5.5]);
  eq(jsTypeConverter(" [ [1, 2], [3, 4]]", "array", "array"), [[1n, 2n], [3n, 4n]]);
  eq(jsTypeConverter("{'key1': 123, 'key2': 'value', 'key3': false}", "dict"), {
    key1: 123n,
    key2: "value",
    key3: false,
  });
  eq(jsTypeConverter('{"m": ["a", "b"], "s": x}', "dict"), { m: ["a", "b"], s: "x" });
});

Deno.test("tool_use: Java and JavaScript call syntax is read as BFCL's tree-sitter decoder reads it", () => {
  const java: ToolSample = {
    id: "simple_java_9",
    category: "simple_java",
    messages: [],
    functions: [fn("Db.open", {
      name: { type: "String" },
      ro: { type: "boolean" },
      max: { type: "long" },
      opts: { type: "HashMap" },
      ids: { type: "Array", items: { type: "integer" } },
    }, ["name", "ro"])],
    answers: [{
      "Db.open": { name: ["main"], ro: [true], max: [5n, ""], opts: [{}, ""], ids: [[1n, 2n], ""] },
    }],
  };
  const code = (out: string) => scoreToolOutput(java, out).code;
  assert.equal(code('[Db.open(name="main", ro=true, max=5L, ids=new int[]{1, 2})]'), "ok");
  assert.equal(code('Db.open(name="main", ro=true)'), "ok");
  assert.equal(code('Db.open(name="main", ro=yes)'), "type_error:simple");
  assert.equal(code('Db.open(name="main", ro=true, max=5)'), "type_error:simple");
  // BFCL's traversal keeps `new HashMap<…>()` without its anonymous class body: an empty map.
  assert.equal(
    code('Db.open(name="main", ro=true, opts=new HashMap<String, Object>() {{ put("a", 1); }})'),
    "ok",
  );
  assert.equal(
    code('Db.open(name="main", ro=true), Db.open(name="x", ro=true)'),
    "ast_decoder:decoder_failed",
  );
  // Decoded calls with a value that is not a string: BFCL's `type_error:java`.
  assert.equal(
    scoreToolOutput(java, { calls: [{ "Db.open": { name: "main", ro: true } }] }).code,
    "type_error:java",
  );
  const js: ToolSample = {
    ...java,
    id: "simple_javascript_1",
    category: "simple_javascript",
    functions: [
      fn("f", { n: { type: "integer" }, tags: { type: "array", items: { type: "String" } } }, [
        "n",
        "tags",
      ]),
    ],
    answers: [{ f: { n: [3n], tags: [["a", "b"]] } }],
  };
  assert.equal(scoreToolOutput(js, "f(n=3, tags=['a', 'b'])").code, "ok");
  // A quoted literal loses its quotes first, as in BFCL: '3' is the integer 3.
  assert.equal(scoreToolOutput(js, "f(n='3', tags=['a', 'b'])").code, "ok");
  assert.equal(scoreToolOutput(js, "f(n=three, tags=['a', 'b'])").code, "type_error:simple");
  assert.equal(
    scoreToolOutput(js, { calls: [{ f: { n: 3n, tags: "['a']" } }] }).code,
    "type_error:js",
  );
});

Deno.test("tool_use: the category comes from BFCL's file name, then the field, then the id", async () => {
  assert.equal(categoryFromFileName("/x/BFCL_v4_parallel.json"), "parallel");
  assert.equal(categoryFromFileName("BFCL_v3_simple_result.json"), "simple");
  assert.equal(categoryFromFileName("questions.jsonl"), undefined);
  assert.equal(categoryFromId("live_simple_23-5-1"), "live_simple");
  assert.equal(categoryFromId("q7"), undefined);
  const f = fn("get", { city: { type: "string" } }, ["city"]);
  const answer = (id: string, cities: string[]) => ({
    id,
    ground_truth: cities.map((c) => ({ get: { city: [c] } })),
  });
  // Ids that do not name a category: the file name does.
  const path = await bfclFolder(
    "BFCL_v4_parallel.json",
    [question("q1", [f]), question("q2", [f])],
    [answer("q1", ["Paris", "Rome"]), answer("q2", ["Oslo", "Bern"])],
  );
  const warnings: string[] = [];
  const samples = await loadToolSamples({ id: "p", path }, (w) => void warnings.push(w));
  assert.deepEqual(samples.map((s) => s.category), ["parallel", "parallel"]);
  assert.equal(warnings.length, 0);
  assert.equal(scoreToolOutput(samples[0]!, "[get(city='Rome'), get(city='Paris')]").code, "ok");
  assert.equal(
    scoreToolOutput(samples[0]!, "[get(city='Rome')]").code,
    "parallel_function_checker_no_order:wrong_count",
  );
  // No file name, field or id category: single-call questions, with a warning.
  const plain = await bfclFolder(
    "tools.jsonl",
    [{ ...question("q1", [f]), ground_truth: answer("q1", ["Paris"]).ground_truth }, {
      ...question("multi_4", [f]),
      category: "parallel",
      ground_truth: answer("", ["A", "B"]).ground_truth,
    }],
  );
  const loaded = await loadToolSamples({ id: "t", path: plain }, (w) => void warnings.push(w));
  assert.deepEqual(loaded.map((s) => s.category), ["simple", "parallel"]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /1 question\(s\) have no category .* e\.g\. "q1"/);
});

Deno.test("tool_use: live_relevance needs no possible answers; a call passes", async () => {
  const f = fn("get", { city: { type: "string" } }, ["city"]);
  const path = await bfclFolder("BFCL_v4_live_relevance.json", [question("live_relevance_0-0-0", [
    f,
  ])]);
  const [s] = await loadToolSamples({ id: "r", path });
  assert.equal(s!.category, "live_relevance");
  assert.equal(scoreToolOutput(s!, "[get(city='x')]").code, "ok");
  assert.equal(scoreToolOutput(s!, "I cannot.").code, "relevance_error:decoder_failed");
  assert.equal(scoreToolOutput(s!, "[]").code, "relevance_error:decoder_failed");
});

Deno.test("tool_use: data BFCL's checker cannot use is an error naming file, line and id", async () => {
  const f = fn("get", { city: { type: "string" } }, ["city"]);
  const bad = async (name: string, q: unknown, answer?: unknown, re?: RegExp) => {
    const path = await bfclFolder(name, [q], answer === undefined ? undefined : [answer]);
    await assert.rejects(loadToolSamples({ id: "d", path }), (e) => {
      assert.ok(e instanceof DatasetError, String(e));
      assert.match(e.message, /line 1 \(id "[^"]+"\)/);
      if (re) assert.match(e.message, re);
      return true;
    });
  };
  await bad("BFCL_v4_simple.json", question("simple_0", [f]), {
    id: "simple_0",
    ground_truth: [{ other: { city: ["x"] } }],
  }, /names "other", which no function of the question has/);
  await bad(
    "BFCL_v4_simple_java.json",
    question("simple_java_0", [fn("g", { s: { type: "TreeMap" } })]),
    { id: "simple_java_0", ground_truth: [{ g: { s: ["x"] } }] },
    /type "TreeMap", which BFCL's java checker does not know/,
  );
  const missing = await bfclFolder("BFCL_v4_multiple.json", [question("multiple_0", [f])]);
  await assert.rejects(
    loadToolSamples({ id: "m", path: missing }),
    /cannot read its possible answers .*possible_answer\/BFCL_v4_multiple\.json/,
  );
});
