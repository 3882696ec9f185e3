import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { readPredictions, ScoreInputError, scorePredictions } from "./score.ts";
import { groundTruthOutput, loadToolSamples } from "./tool_use.ts";

const JSON_SET = join(REPO_ROOT, "fixtures/datasets/json_tasks.jsonl");

async function write(lines: unknown[]): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  await Deno.writeTextFile(path, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  return path;
}

Deno.test("score: json predictions are scored with the task's rules; missing ids fail", async () => {
  const gold = (await Deno.readTextFile(JSON_SET)).trim().split("\n").map((l) => JSON.parse(l));
  const predictions = gold.slice(0, 10).map((g, i) => ({
    id: g.id,
    output: i < 8 ? "```json\n" + JSON.stringify(g.gold) + "\n```" : "no idea",
  }));
  const { metrics, scores } = await scorePredictions("json", JSON_SET, await write(predictions));
  const get = (m: string) => metrics.find((r) => r.metric === m)!;
  assert.equal(scores.length, gold.length);
  assert.equal(get("exact_match").value, 8 / gold.length);
  assert.equal(scores.filter((s) => s.code === "missing_prediction").length, gold.length - 10);
  assert.equal(scores[9]!.code, "no_json");
});

Deno.test({
  name: "score: tool_use predictions in BFCL's layout; the command line writes reports",
  ignore: !hasShared("data/toolcall/bfcl_v4/BFCL_v4_parallel.json"),
  async fn() {
    const dataset = sharedPath("data/toolcall/bfcl_v4/BFCL_v4_parallel.json");
    const samples = await loadToolSamples({ id: "p", path: dataset });
    const predictions = await write(
      samples.map((s, i) => ({ id: s.id, output: i % 2 ? groundTruthOutput(s, "python") : "" })),
    );
    const { metrics } = await scorePredictions("tool_use", dataset, predictions);
    assert.equal(metrics[0]!.value, 0.5);
    const out = await Deno.makeTempDir();
    const samplesFile = join(out, "samples.jsonl");
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        join(REPO_ROOT, "main.ts"),
        "score",
        "tool_use",
        "--dataset",
        dataset,
        "--predictions",
        predictions,
        "--out",
        out,
        "--samples",
        samplesFile,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    assert.match(new TextDecoder().decode(r.stdout), /\| accuracy \|\s+0\.5 \|/);
    const results = JSON.parse(await Deno.readTextFile(join(out, "results.json")));
    assert.equal(results.rows[0].task, "tool_use");
    assert.equal(results.rows[0].samples.values.length, samples.length);
    const perSample = (await Deno.readTextFile(samplesFile)).trim().split("\n");
    assert.equal(perSample.length, samples.length);
    // An empty answer decodes, as in BFCL, to an empty list of calls.
    assert.equal(JSON.parse(perSample[0]!).code, "parallel_function_checker_no_order:wrong_count");
  },
});

Deno.test("score: unusable predictions are named errors", async () => {
  await assert.rejects(readPredictions(await write([{ id: "a" }])), ScoreInputError);
  await assert.rejects(
    readPredictions(await write([{ id: "a", output: "" }, { id: "a", output: "x" }])),
    /id "a" appears twice/,
  );
  await assert.rejects(
    scorePredictions("json", JSON_SET, await write([{ id: "nope", output: "{}" }])),
    /1 prediction id\(s\) are not in the dataset, e.g. "nope"/,
  );
  await assert.rejects(
    scorePredictions("perplexity", JSON_SET, await write([])),
    /Task "perplexity" cannot score predictions; known: json, tool_use/,
  );
});

Deno.test("score: BFCL result files ({id, result}: text or decoded calls) are read", async () => {
  const dir = await Deno.makeTempDir();
  const dataset = join(dir, "BFCL_v4_simple_python.json");
  const fn = {
    name: "area",
    description: "",
    parameters: {
      type: "dict",
      properties: { r: { type: "float" }, unit: { type: "string" } },
      required: ["r"],
    },
  };
  const ids = ["simple_python_0", "simple_python_1", "simple_python_2", "simple_python_3"];
  await Deno.writeTextFile(
    dataset,
    ids.map((id) =>
      JSON.stringify({ id, question: [[{ role: "user", content: "?" }]], function: [fn] })
    ).join("\n"),
  );
  await Deno.mkdir(join(dir, "possible_answer"));
  await Deno.writeTextFile(
    join(dir, "possible_answer", "BFCL_v4_simple_python.json"),
    ids.map((id) => JSON.stringify({ id, ground_truth: [{ area: { r: [2.0], unit: ["", "m"] } }] }))
      .join("\n"),
  );
  const predictions = await write([
    { id: ids[0], result: "[area(r=2.0)]", input_token_count: 10 },
    { id: ids[1], result: [{ area: '{"r": 2.0, "unit": "m"}' }] },
    { id: ids[2], result: [{ area: { r: 3.0 } }] },
    { id: ids[3], result: [{ area: "{not json" }] },
  ]);
  const { scores } = await scorePredictions("tool_use", dataset, predictions);
  assert.deepEqual(scores.map((s) => s.code), [
    "ok",
    "ok",
    "value_error:others",
    "ast_decoder:decoder_failed",
  ]);
});

Deno.test("score: input files — BOM accepted; bad UTF-8, empty files named with file and line", async () => {
  const bytes = async (data: Uint8Array) => {
    const path = await Deno.makeTempFile({ suffix: ".jsonl" });
    await Deno.writeFile(path, data);
    return path;
  };
  const enc = new TextEncoder();
  const gold = JSON.parse((await Deno.readTextFile(JSON_SET)).split("\n")[0]!);
  const line = JSON.stringify({ id: gold.id, output: JSON.stringify(gold.gold) });
  // A byte-order mark before the first line is not part of the JSON.
  const bom = await bytes(new Uint8Array([0xef, 0xbb, 0xbf, ...enc.encode(line + "\n")]));
  const { scores } = await scorePredictions("json", JSON_SET, bom);
  assert.equal(scores.find((s) => s.id === gold.id)!.code, "ok");
  // Latin-1 bytes are an error naming the predictions file, the line and the byte.
  const latin1 = await bytes(
    new Uint8Array([
      ...enc.encode(line + "\n" + '{"id": "x", "output": "caf'),
      0xe9,
      ...enc.encode('"}\n'),
    ]),
  );
  await assert.rejects(
    scorePredictions("json", JSON_SET, latin1),
    (e: Error) => {
      assert.equal(e.name, "ScoreInputError");
      assert.match(e.message, /^Predictions file .* line 2, byte 27: 0xE9 is not UTF-8/);
      return true;
    },
  );
  await assert.rejects(
    scorePredictions("json", JSON_SET, await bytes(enc.encode("\n\n"))),
    /Predictions file .* holds no predictions/,
  );
  await assert.rejects(
    scorePredictions("json", JSON_SET, await write([{ id: "a", answer: "x" }])),
    /^ScoreInputError|Predictions file .* line 1: expected \{"id": …, "output"/,
  );
  const emptySet = await bytes(enc.encode(""));
  await assert.rejects(
    scorePredictions("json", emptySet, await write([{ id: "a", output: "{}" }])),
    /Dataset .* is empty: expected one JSON value per line/,
  );
  const badSet = await bytes(new Uint8Array([...enc.encode('{"schema": {}}\n{"schema": "'), 0xff]));
  await assert.rejects(
    scorePredictions("json", badSet, await write([{ id: "a", output: "{}" }])),
    /Dataset .* line 2, byte 13: 0xFF is not UTF-8/,
  );
});

Deno.test("score: the command line exits 2 with the file and line for a dataset that is not UTF-8", async () => {
  const dataset = await Deno.makeTempFile({ suffix: ".jsonl" });
  await Deno.writeFile(
    dataset,
    new Uint8Array([...new TextEncoder().encode('{"schema": {}}\n{"schema": "'), 0xff, 0x22, 0x7d]),
  );
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(REPO_ROOT, "main.ts"),
      "score",
      "json",
      "--dataset",
      dataset,
      "--predictions",
      await write([{ id: "line_1", output: "{}" }]),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(r.stderr);
  assert.equal(r.code, 2, stderr);
  assert.match(stderr, /^Dataset .* line 2, byte 13: 0xFF is not UTF-8; save the file as UTF-8\n$/);
});
