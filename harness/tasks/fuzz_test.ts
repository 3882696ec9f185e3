/**
 * Seeded fuzzing of every input a user hands quantbench's loaders and scorers: the example suites
 * (lines deleted and duplicated, values swapped for other types, random bytes), and for each
 * scoring task its dataset lines and its predictions (the same, plus values nested thousands deep
 * and bytes that are not UTF-8). The only acceptable outcomes are a result — per-sample failure
 * codes included — or a named input error (`SuiteError`, `DatasetError`, `EncodingError`,
 * `ScoreInputError`); anything else fails the test with the seed and the mutated input. At least
 * 1000 mutations of each kind; the whole file runs in well under a minute. Messages name the
 * seed (`QUANTBENCH_FUZZ_SEED`, default 0) and the mutated input.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../../core/shared.ts";
import { parseSuite } from "../suite/load.ts";
import { seededRandom } from "../../core/random.ts";
import { readPredictions } from "./score.ts";
import { type JsonSample, loadJsonSamples, scoreJsonOutput } from "./json_validity.ts";
import { loadToolSamples, scoreToolOutput, type ToolSample } from "./tool_use.ts";
import { SchemaValidator } from "./schema_validator.ts";

const N = 1000;
/** `QUANTBENCH_FUZZ_SEED=n` explores other mutations; CI runs seed 0. */
const SEED = Number(Deno.env.get("QUANTBENCH_FUZZ_SEED") ?? 0);
const NAMED = new Set(["SuiteError", "DatasetError", "EncodingError", "ScoreInputError"]);
const enc = new TextEncoder();

/** A seeded mutator of text and JSON values. */
class Mutator {
  readonly random: () => number;
  constructor(seed: number, label: string) {
    this.random = seededRandom(seed, label);
  }
  int(n: number): number {
    return Math.floor(this.random() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Line- and byte-level damage to a text (the result may not be UTF-8). */
  bytes(text: string): Uint8Array {
    const lines = text.split("\n");
    const b = () => enc.encode(lines.join("\n"));
    switch (this.int(7)) {
      case 0: // a line deleted
        lines.splice(this.int(lines.length), 1);
        return b();
      case 1: { // a line duplicated
        const i = this.int(lines.length);
        lines.splice(i, 0, lines[i]!);
        return b();
      }
      case 2: { // two lines swapped
        const i = this.int(lines.length), j = this.int(lines.length);
        [lines[i], lines[j]] = [lines[j]!, lines[i]!];
        return b();
      }
      case 3: { // random bytes written over a span
        const bytes = b();
        const at = this.int(bytes.length);
        for (let k = 0; k < 1 + this.int(8) && at + k < bytes.length; k++) {
          bytes[at + k] = this.int(256);
        }
        return bytes;
      }
      case 4: { // a span deleted
        const t = lines.join("\n");
        const at = this.int(t.length);
        return enc.encode(t.slice(0, at) + t.slice(at + 1 + this.int(40)));
      }
      case 5: { // a syntax character inserted
        const t = lines.join("\n");
        const at = this.int(t.length);
        const c = this.pick([
          "{",
          "}",
          "[",
          "]",
          '"',
          ":",
          ",",
          "\\",
          "-",
          "#",
          "&",
          "*",
          "\t",
          "\0",
        ]);
        return enc.encode(t.slice(0, at) + c + t.slice(at));
      }
      default: // cut short
        return b().slice(0, this.int(b().length));
    }
  }

  /** A JSON value with one node replaced by a value of another type, removed, or nested deep. */
  value(v: unknown): unknown {
    const copy = structuredClone(v);
    const nodes: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
    const walk = (node: unknown) => {
      if (Array.isArray(node)) {
        node.forEach((x, i) => {
          nodes.push({ parent: node, key: i });
          walk(x);
        });
      } else if (typeof node === "object" && node !== null) {
        for (const [k, x] of Object.entries(node)) {
          nodes.push({ parent: node as Record<string, unknown>, key: k });
          walk(x);
        }
      }
    };
    walk(copy);
    if (nodes.length === 0) return this.other(copy);
    const { parent, key } = this.pick(nodes);
    const target = parent as Record<string | number, unknown>;
    const r = this.int(10);
    if (r === 0 && !Array.isArray(parent)) delete target[key];
    else if (r === 1) target[key] = deep(this.int(2) ? "[" : "{", 3000);
    else target[key] = this.other(target[key]);
    return copy;
  }

  other(v: unknown): unknown {
    const options: unknown[] = [
      null,
      true,
      0,
      -1.5e308,
      "",
      "x".repeat(this.int(3) * 1000),
      "\u202e</script>",
      [],
      {},
      [v],
      { v },
      String(v),
      1e400,
    ];
    return this.pick(options);
  }
}

/** `[[[…]]]` or `{"a":{"a":…}}`, `depth` deep, as a value JSON.parse gives. */
function deep(open: "[" | "{", depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = open === "[" ? [v] : { a: v };
  return v;
}

function named(e: unknown, what: string): void {
  if (e instanceof Error && NAMED.has(e.name)) return;
  throw new Error(`seed ${SEED}, ${what}: an unnamed error escaped: ${e}`, { cause: e });
}

async function tempFile(bytes: Uint8Array, suffix = ".jsonl"): Promise<string> {
  const path = await Deno.makeTempFile({ suffix });
  await Deno.writeFile(path, bytes);
  return path;
}

Deno.test("fuzz: 1000 mutated example suites give a suite or a SuiteError", async () => {
  const dir = join(REPO_ROOT, "suites");
  const suites: { path: string; text: string }[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.name.endsWith(".yaml")) {
      suites.push({ path: join(dir, e.name), text: await Deno.readTextFile(join(dir, e.name)) });
    }
  }
  suites.sort((a, b) => a.path.localeCompare(b.path));
  const m = new Mutator(SEED, "suite");
  const outcomes = { loaded: 0, refused: 0 };
  for (let i = 0; i < N; i++) {
    const { path, text } = m.pick(suites);
    const bytes = m.int(4) === 0 ? enc.encode(swapYamlValue(text, m)) : m.bytes(text);
    // The loader gets text, as loadSuite reads it: replacement characters for bad bytes.
    const mutated = new TextDecoder().decode(bytes);
    try {
      await parseSuite(mutated, path);
      outcomes.loaded++;
    } catch (e) {
      named(e, `suite mutation ${i} of ${path}:\n${mutated}`);
      outcomes.refused++;
    }
  }
  assert.ok(outcomes.loaded > 50 && outcomes.refused > 200, JSON.stringify(outcomes));
});

/** A YAML scalar swapped for a value of another type (`256` → `"x"`, `f32` → `[1]`, …). */
function swapYamlValue(text: string, m: Mutator): string {
  const scalars = [...text.matchAll(/(?<=: |- |\[|, )([A-Za-z0-9_.\/-]+)/g)];
  if (scalars.length === 0) return text;
  const s = m.pick(scalars);
  const replacement = m.pick(["[1, 2]", "{ a: 1 }", "null", "-1", "true", '"x"', "1e999", "~"]);
  return text.slice(0, s.index) + replacement + text.slice(s.index! + s[0].length);
}

/** Mutated copies of a JSON Lines file's lines, each written as a one-line file. */
async function mutatedLines(
  lines: string[],
  m: Mutator,
  each: (path: string, text: string) => Promise<void>,
): Promise<void> {
  for (let i = 0; i < N; i++) {
    const line = m.pick(lines);
    const bytes = m.int(2) === 0
      ? enc.encode(JSON.stringify(m.value(JSON.parse(line))))
      : m.bytes(line);
    const path = await tempFile(bytes);
    try {
      await each(path, new TextDecoder().decode(bytes));
    } finally {
      await Deno.remove(path);
    }
  }
}

Deno.test("fuzz: json — 1000 mutated dataset lines and 1000 mutated predictions", async () => {
  const datasetPath = join(REPO_ROOT, "fixtures/datasets/json_tasks.jsonl");
  const lines = (await Deno.readTextFile(datasetPath)).trim().split("\n");
  const validator = new SchemaValidator(1000);
  const outcomes = { samples: 0, refused: 0, scored: 0 };
  const m = new Mutator(SEED, "json");
  try {
    const loaded: JsonSample[] = [];
    await mutatedLines(lines, m, async (path, text) => {
      try {
        loaded.push(...await loadJsonSamples({ id: path, path }));
        outcomes.samples++;
      } catch (e) {
        named(e, `json dataset line: ${text.slice(0, 300)}`);
        outcomes.refused++;
      }
    });
    // Every sample that loads is scored: its gold answer, and a damaged answer.
    for (const s of loaded.slice(0, 300)) {
      for (
        const output of [
          JSON.stringify(s.gold ?? {}),
          new TextDecoder().decode(m.bytes(JSON.stringify(s.gold ?? {}))),
        ]
      ) {
        const r = await scoreJsonOutput(s, output, validator);
        assert.equal(typeof r.code, "string");
        outcomes.scored++;
      }
    }
    // Predictions: the file is read (or refused), then each output is scored.
    const gold = lines.map((l) => JSON.parse(l));
    const samples = await loadJsonSamples({ id: datasetPath, path: datasetPath });
    const byId = new Map(samples.map((s) => [s.id, s]));
    const predictionLines = gold.map((g) =>
      JSON.stringify({ id: g.id, output: JSON.stringify(g.gold) })
    );
    await mutatedLines(predictionLines, m, async (path, text) => {
      let predictions;
      try {
        predictions = await readPredictions(path);
      } catch (e) {
        named(e, `json prediction: ${text.slice(0, 300)}`);
        outcomes.refused++;
        return;
      }
      for (const [id, output] of predictions) {
        const s = byId.get(id);
        if (!s || typeof output !== "string") continue;
        await scoreJsonOutput(s, output, validator);
        outcomes.scored++;
      }
    });
  } finally {
    validator.close();
  }
  assert.ok(outcomes.samples > 100 && outcomes.refused > 100, JSON.stringify(outcomes));
  assert.ok(outcomes.scored > 500, JSON.stringify(outcomes));
});

Deno.test("fuzz: tool_use — 1000 mutated dataset lines and 1000 mutated predictions", async () => {
  const datasetPath = join(REPO_ROOT, "fixtures/datasets/tool_calls.jsonl");
  const lines = (await Deno.readTextFile(datasetPath)).trim().split("\n");
  const m = new Mutator(SEED, "tool_use");
  const outcomes = { samples: 0, refused: 0, scored: 0 };
  const quiet = () => {};
  const outputsOf = (s: ToolSample) => {
    const call = s.answers.map((a) => {
      const [name, params] = Object.entries(a)[0]!;
      return `${name}(${Object.keys(params).map((k) => `${k}=1`).join(", ")})`;
    });
    const text = `[${call.join(", ")}]`;
    return [
      text,
      new TextDecoder().decode(m.bytes(text)),
      "[".repeat(4000),
      `f(a=${"(".repeat(3000)})`,
    ];
  };
  await mutatedLines(lines, m, async (path, text) => {
    let samples: ToolSample[];
    try {
      samples = await loadToolSamples({ id: path, path }, quiet);
      outcomes.samples++;
    } catch (e) {
      named(e, `tool_use dataset line: ${text.slice(0, 300)}`);
      outcomes.refused++;
      return;
    }
    for (const s of samples) {
      for (const output of outputsOf(s)) {
        assert.equal(typeof scoreToolOutput(s, output).code, "string");
        outcomes.scored++;
      }
    }
  });
  const samples = await loadToolSamples({ id: datasetPath, path: datasetPath }, quiet);
  const byId = new Map(samples.map((s) => [s.id, s]));
  const predictionLines = samples.map((s, i) =>
    i % 2
      ? JSON.stringify({ id: s.id, output: outputsOf(s)[0] })
      : JSON.stringify({ id: s.id, result: s.answers.map((a) => ({ [Object.keys(a)[0]!]: "{}" })) })
  );
  await mutatedLines(predictionLines, m, async (path, text) => {
    let predictions;
    try {
      predictions = await readPredictions(path);
    } catch (e) {
      named(e, `tool_use prediction: ${text.slice(0, 300)}`);
      outcomes.refused++;
      return;
    }
    for (const [id, output] of predictions) {
      const s = byId.get(id);
      if (!s) continue;
      assert.equal(typeof scoreToolOutput(s, output).code, "string");
      outcomes.scored++;
    }
  });
  assert.ok(outcomes.samples > 100 && outcomes.refused > 100, JSON.stringify(outcomes));
  assert.ok(outcomes.scored > 1000, JSON.stringify(outcomes));
});
