import assert from "node:assert/strict";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { extractJson } from "./json_extract.ts";
import { SchemaValidator } from "./schema_validator.ts";
import { type JsonSample, jsonTask, scoreJsonOutput } from "./json_validity.ts";
import { contextFor, datasetOf, missing, samplesReproduce, stories } from "./test_context.ts";

const MASKBENCH = ["github_trivial", "handwritten", "json_mode_eval", "synthesized"];

/**
 * maskbench instances whose `valid` flag we do not reproduce, with the reason: `file:line:test`.
 */
const ALLOWED_DISAGREEMENTS: Record<string, string> = {
  // Draft 4 calls 12345.0 a non-integer (Python's validator sees a float); JSON.parse yields the
  // number 12345, so the instance {"userId": 12345.0} is indistinguishable from {"userId": 12345}.
  "github_trivial:19:1": "draft-04 integer vs 12345.0, lost by JSON.parse",
};

Deno.test({
  name: "json: the validator reproduces every maskbench valid flag but the listed exceptions",
  ignore: !MASKBENCH.every((f) => hasShared(`data/json/maskbench_${f}.jsonl`)),
  async fn() {
    const validator = new SchemaValidator(10000);
    const disagreements: string[] = [];
    let checked = 0;
    try {
      for (const f of MASKBENCH) {
        const lines = (await Deno.readTextFile(sharedPath(`data/json/maskbench_${f}.jsonl`)))
          .split("\n");
        for (const [i, line] of lines.entries()) {
          if (!line.trim()) continue;
          const { schema, tests } = JSON.parse(line);
          for (const [j, t] of tests.entries()) {
            const r = await validator.validate(schema, t.data);
            checked++;
            if (r.valid !== t.valid) disagreements.push(`${f}:${i + 1}:${j}`);
          }
        }
      }
    } finally {
      validator.close();
    }
    assert.equal(checked, 1772);
    assert.deepEqual(disagreements, Object.keys(ALLOWED_DISAGREEMENTS));
  },
});

Deno.test("json: extraction strips fences, skips prose and takes the first JSON value", () => {
  const ok = (s: string) => {
    const e = extractJson(s);
    assert.ok(e.ok, s);
    return e.value;
  };
  assert.deepEqual(ok('```json\n{"a": 1}\n```\nDone.'), { a: 1 });
  assert.deepEqual(ok("```\n[1, 2]"), [1, 2], "an unclosed fence");
  assert.deepEqual(ok('Sure! Here it is: {"a": "}"} and {"b": 2}'), { a: "}" });
  assert.deepEqual(ok('[note] {"a": [1, {"b": null}]}'), { a: [1, { b: null }] });
  assert.equal(ok(' "hello" '), "hello");
  assert.equal(ok("42"), 42);
  const none = extractJson("no json here");
  assert.ok(!none.ok && none.code === "no_json");
  const broken = extractJson('{"a": 1,}');
  assert.ok(!broken.ok && broken.code === "parse_error");
  const cut = extractJson('{"a": [1, 2');
  assert.ok(!cut.ok && cut.code === "parse_error" && /never closed/.test(cut.message));
});

Deno.test("json: failure codes of scored answers", async () => {
  // Generous: the time limit is for catastrophic regexes, not for a busy machine's worker start.
  const validator = new SchemaValidator(5000);
  const sample = (schema: unknown, gold?: unknown): JsonSample => ({
    id: "s",
    messages: [],
    schema,
    ...(gold === undefined ? {} : { gold }),
    stratum: "",
  });
  const person = {
    type: "object",
    properties: { name: { type: "string" }, age: { type: "integer", minimum: 0 } },
    required: ["name"],
    additionalProperties: false,
  };
  const code = async (s: JsonSample, out: string) =>
    (await scoreJsonOutput(s, out, validator)).code;
  try {
    assert.equal(
      await code(sample(person, { name: "Ann", age: 3 }), '{"age": 3, "name": "Ann"}'),
      "ok",
    );
    assert.equal(await code(sample(person, { name: "Ann" }), '{"name": "Bob"}'), "mismatch");
    assert.equal(await code(sample(person), '{"name": "Bob", "age": -1}'), "schema_invalid");
    assert.equal(await code(sample(person), '{"name": "Bob", "x": 1}'), "schema_invalid");
    assert.equal(await code(sample(person), "Bob is 3."), "no_json");
    assert.equal(await code(sample(person), "{name: Bob}"), "parse_error");
    assert.equal(await code(sample({ type: 12 }), "{}"), "schema_error");
    assert.equal(await code(sample({ type: "string", format: "email" }), '"a@b.co"'), "ok");
    assert.equal(
      await code(sample({ type: "string", format: "date" }), '"2024-13-01"'),
      "schema_invalid",
    );
    // Draft 4's boolean exclusiveMaximum, read as draft 6's numeric form.
    const d4 = {
      $schema: "http://json-schema.org/draft-04/schema#",
      maximum: 5,
      exclusiveMaximum: true,
    };
    assert.equal(await code(sample(d4), "5"), "schema_invalid");
    assert.equal(await code(sample(d4), "4.5"), "ok");
    // A catastrophically backtracking pattern is stopped by the per-sample time limit …
    const redos = { type: "string", pattern: "^(a+)+$" };
    assert.equal(await code(sample(redos), `"${"a".repeat(40)}!"`), "schema_timeout");
    // … and the validator keeps working afterwards.
    assert.equal(await code(sample(person), '{"name": "Ann"}'), "ok");
    const scored = await scoreJsonOutput(sample(person), '{"name": 1}', validator);
    assert.deepEqual([scored.parse_valid, scored.schema_valid, scored.exact_match], [1, 0, null]);
  } finally {
    validator.close();
  }
});

Deno.test({
  name: "json: the task runs stories260K on the fixture set with a stratified, seeded subset",
  ignore: missing(),
  async fn() {
    const model = await stories();
    const dataset = datasetOf(`${REPO_ROOT}/fixtures/datasets/json_tasks.jsonl`, "jsonl");
    const ctx = contextFor(model, "json", { max_new_tokens: 8, limit: 4 }, { dataset });
    const rows = await jsonTask.run(ctx);
    assert.deepEqual(rows.map((r) => r.metric), [
      "parse_valid",
      "schema_valid",
      "exact_match",
      "failures",
    ]);
    const ids = rows[0]!.samples!.ids!;
    assert.equal(ids.length, 4);
    const again = { ...ctx, task: { ...ctx.task, options: { max_new_tokens: 1, limit: 4 } } };
    assert.deepEqual((await jsonTask.run(again))[0]!.samples!.ids, ids, "the same subset again");
    // A model trained on children's stories writes no JSON; the mechanics still hold.
    assert.ok(rows.every((r) => r.value >= 0 && r.value <= 1));
    assert.deepEqual(samplesReproduce(rows), []);
    assert.match(
      rows[0]!.detail,
      /^json chat=fallback max_new_tokens=8 samples=4\/200 seed=0 patterns=ecma262\|python-re$/,
    );
    assert.match(rows[3]!.detail, /codes=ok,missing_prediction,context_overflow,.* counts=/);
  },
});

Deno.test("json: generation stops when the first bracket closes, not at a nested object", async () => {
  const { stopAtJson } = await import("./json_validity.ts");
  assert.equal(stopAtJson('{"a": 1, "b": {"c": 2}'), false);
  assert.equal(stopAtJson('{"a": 1, "b": {"c": 2}}'), true);
  assert.equal(stopAtJson("Sure: [1, [2]"), false);
  assert.equal(stopAtJson("Sure: [1, [2]]"), true);
  assert.equal(stopAtJson("no json yet"), false);
});

Deno.test("json: schemas real users write — $async, Python patterns, byte, keywords beside $ref", async () => {
  const validator = new SchemaValidator(5000);
  const check = (schema: unknown, data: unknown) => validator.validate(schema, data);
  try {
    // jsonschemabench o17544/o17545 mark themselves "$async": an Ajv extension, not JSON Schema.
    const async = {
      $async: true,
      type: "object",
      properties: { email: { type: "string", format: "email" } },
      required: ["email"],
    };
    assert.equal((await check(async, { email: "a@b.co" })).code, "ok");
    assert.equal((await check(async, {})).code, "schema_invalid");
    // Patterns Python's re accepts and ECMA-262's u flag rejects are read in Python's dialect.
    const python = await check(
      { type: "string", pattern: "^[0-9\\,]+\\:[a-z\\-]{2}}$" },
      "1,2:a-}",
    );
    assert.equal(python.code, "ok");
    assert.match(python.message, /read in Python re's dialect/);
    assert.equal(
      (await check({ type: "string", pattern: "^(?P<y>\\d{4})-(?P=y)\\Z" }, "2024-2024")).code,
      "ok",
    );
    assert.equal((await check({ type: "string", pattern: "^\\,$" }, "x")).code, "schema_invalid");
    // A pattern no dialect reads is the schema's fault.
    assert.equal((await check({ type: "string", pattern: "(" }, "x")).code, "schema_error");
    // `byte` is OpenAPI's, not a JSON Schema format: an annotation in every draft.
    for (const $schema of ["http://json-schema.org/draft-04/schema#", undefined]) {
      assert.equal(
        (await check({ $schema, type: "string", format: "byte" }, "not base64!")).code,
        "ok",
      );
    }
    assert.equal(
      (await check({ type: "string", format: "uuid" }, "nope")).code,
      "schema_invalid",
      "2020-12 formats are asserted",
    );
    assert.equal(
      (await check({ $schema: "http://json-schema.org/draft-04/schema#", format: "uuid" }, "x"))
        .code,
      "ok",
      "uuid is not a draft-04 format",
    );
    // Drafts 4–7 ignore keywords beside $ref; 2019-09 and later apply them.
    const beside = (schema: string, defs: string) => ({
      $schema: schema,
      $ref: `#/${defs}/s`,
      type: "number",
      [defs]: { s: { type: "string" } },
    });
    assert.equal(
      (await check(beside("http://json-schema.org/draft-07/schema#", "definitions"), "x")).code,
      "ok",
    );
    assert.equal(
      (await check(beside("http://json-schema.org/draft-04/schema#", "definitions"), "x")).code,
      "ok",
    );
    assert.equal(
      (await check(beside("https://json-schema.org/draft/2020-12/schema", "$defs"), "x")).code,
      "schema_invalid",
    );
  } finally {
    validator.close();
  }
});

Deno.test({
  name: "json: jsonschemabench github_easy o17544 and o17545 ($async) score per sample",
  ignore: !hasShared("data/json/jsonschemabench_github_easy.jsonl"),
  async fn() {
    const validator = new SchemaValidator(5000);
    try {
      const lines = (await Deno.readTextFile(
        sharedPath("data/json/jsonschemabench_github_easy.jsonl"),
      )).split("\n").filter((l) => /"o1754[45]\.json"/.test(l));
      assert.equal(lines.length, 2);
      for (const line of lines) {
        const { schema } = JSON.parse(line);
        const sample: JsonSample = { id: "o", messages: [], schema, stratum: "" };
        const r = await scoreJsonOutput(sample, '{"email": "a@example.com"}', validator);
        assert.ok(["ok", "schema_invalid"].includes(r.code), `${r.code}: ${r.message}`);
      }
    } finally {
      validator.close();
    }
  },
});
