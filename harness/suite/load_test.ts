import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { loadSuite, parseSuite, SuiteError } from "./load.ts";
import { methods } from "../methods/registry.ts";
import { tasks } from "../tasks/registry.ts";
import { backendNames } from "../engines/registry.ts";
import { elementFormats } from "../../kernels/formats/registry.ts";
import schema from "../suite.schema.json" with { type: "json" };

// A calibrating method, so the calibration checks can be exercised whatever the registry holds.
// Test modules run in their own isolates, so this registration stays inside this file.
methods.register("calibrated_test", {
  name: "calibrated_test",
  description: "test double of a calibrating method",
  options: { calibration: { samples: 128, seq_len: 2048 }, damp: 0.01, act_order: false },
  unsupported: () => undefined,
  quantize: (model) => Promise.resolve(model),
});

const KNOWN = {
  methods: methods.names().join(", "),
  formats: elementFormats.names().join(", "),
  tasks: tasks.names().join(", "),
  backends: backendNames().join(", "),
};

/** Suite ids, then the registry's other names, as `exclude` messages list them. */
const union = (ids: string[], names: string[]) => [...new Set([...ids, ...names])].join(", ");

/** Files every test suite may refer to, relative to the suite's folder. */
const FILES: Record<string, string> = {
  "models/mini.bin": "not a real model",
  "data/wiki.txt": "hello world\n",
  "data/qa.jsonl": '{"q": 1}\n',
};

/** The suite file's path in expected messages (the temporary folder reads as DIR). */
const F = "DIR/suite.yaml";

async function withSuite<T>(
  text: string,
  fn: (file: string, dir: string) => Promise<T>,
  files: Record<string, string> = FILES,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "quantbench_suite_" });
  try {
    for (const [name, content] of Object.entries(files)) {
      await Deno.mkdir(dirname(join(dir, name)), { recursive: true });
      await Deno.writeTextFile(join(dir, name), content);
    }
    const file = join(dir, "suite.yaml");
    await Deno.writeTextFile(file, text);
    return await fn(file, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The issue lines a suite fails with, the temporary folder replaced by DIR. */
function issueLines(text: string, files?: Record<string, string>): Promise<string[]> {
  return withSuite(text, async (file, dir) => {
    const error = await loadSuite(file).then(
      () => assert.fail("the suite loaded without errors"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof SuiteError, `not a SuiteError: ${error}`);
    assert.equal(error.name, "SuiteError");
    const lines = error.message.replaceAll(dir, "DIR").split("\n");
    assert.equal(error.issues.length, lines.length);
    return lines;
  }, files);
}

/** A malformed suite and the exact lines it must fail with. */
interface Case {
  name: string;
  yaml: string;
  expected: string[];
  files?: Record<string, string>;
}

const CASES: Case[] = [
  {
    name: "bad indentation",
    yaml: `name: t
models:
  - id: mini
   path: models/mini.bin
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [`${F}:4:4: bad indentation: sequence item without - indicator (at /models/1/path)`],
  },
  {
    name: "a line indented under a plain value",
    yaml: `name: t
  seed: 1
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:1:7: bad indentation: the next line is indented further than this key's line (at /name)`,
    ],
  },
  {
    name: "tab indentation",
    yaml: `name: t
models:
\t- { id: mini, path: models/mini.bin }
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [`${F}:3:1: tab character in the indentation; indent with spaces (at /models)`],
  },
  {
    name: "duplicate keys, block and flow",
    yaml: `name: t
seed: 1
models:
  - { id: mini, path: models/mini.bin, id: other }
seed: 2
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:4:40: duplicate key "id" (first defined on line 4) (at /models/0/id)`,
      `${F}:5:1: duplicate key "seed" (first defined on line 2) (at /seed)`,
    ],
  },
  {
    name: "unclosed quote",
    yaml: `name: t
models:
  - { id: mini, path: "models/mini.bin }
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [`${F}:3:23: unclosed quote: this string has no closing " (at /models/0/path)`],
  },
  {
    name: "a list at the top level",
    yaml: `- name: t
- models: []
`,
    expected: [`${F}:1:1: expected a mapping, got a list (at /)`],
  },
  {
    name: "a scalar at the top level",
    yaml: `hello
`,
    expected: [`${F}:1:1: expected a mapping, got "hello" (at /)`],
  },
  {
    name: "an empty file",
    yaml: `# nothing but a comment
`,
    expected: [
      `${F}:1:1: the suite is empty; expected a mapping with name, models, methods, formats and tasks (at /)`,
    ],
  },
  {
    name: "more than one YAML document",
    yaml: `name: t
---
name: u
`,
    expected: [
      `${F}:2:1: more than one YAML document ("---"); a suite is a single document (at /)`,
    ],
  },
  {
    name: "an alias without its anchor",
    yaml: `name: t
seed: *s
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [`${F}:2:7: unknown alias "*s"; define "&s" before using it (at /seed)`],
  },
  {
    name: "missing name",
    yaml: `models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [`${F}:1:1: missing required key "name" (at /)`],
  },
  {
    name: "name with a space",
    yaml: `name: my suite
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:1:7: expected letters, digits, "_", "." and "-" only, got "my suite" (at /name)`,
    ],
  },
  {
    name: "wrong types: seed, group, symmetric, an empty value",
    yaml: `name: t
seed: abc
description:
models: [{ id: mini, path: models/mini.bin }]
methods: [none, rtn]
formats:
  - { weights: int4, group: "32" }
  - { weights: int4, symmetric: yes }
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:2:7: expected an integer, got "abc" (at /seed)`,
      `${F}:3:1: expected a string, got nothing (at /description)`,
      `${F}:7:29: expected an integer, got "32" (at /formats/0/group)`,
      `${F}:8:33: expected true or false, got "yes" (at /formats/1/symmetric)`,
    ],
  },
  {
    name: "negative numbers",
    yaml: `name: t
seed: -1
models: [{ id: mini, path: models/mini.bin }]
datasets:
  wiki: { kind: text, path: data/wiki.txt, max_chars: -5 }
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: wiki }]
thresholds:
  perplexity: { max_relative_increase: -0.5 }
`,
    expected: [
      `${F}:2:7: expected an integer of at least 0, got -1 (at /seed)`,
      `${F}:5:55: expected an integer of at least 0, got -5 (at /datasets/wiki/max_chars)`,
      `${F}:10:40: expected a number of at least 0, got -0.5 (at /thresholds/perplexity/max_relative_increase)`,
    ],
  },
  {
    name: "group sizes that are not 0 or a power of two of at least 8",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [rtn]
formats:
  - { weights: int4, group: 12 }
  - { weights: int4, group: 4 }
  - { weights: int4, kv_cache: { format: int8, group: 24 } }
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:5:29: expected 0 (one scale per output channel) or a power of two of at least 8, got 12 (at /formats/0/group)`,
      `${F}:6:29: expected 0 (one scale per output channel) or a power of two of at least 8, got 4 (at /formats/1/group)`,
      `${F}:7:55: expected 0 (one scale per output channel) or a power of two of at least 8, got 24 (at /formats/2/kv_cache/group)`,
    ],
  },
  {
    name: "unknown top-level keys, with and without a suggestion",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formts: [f32]
colour: red
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:4:1: unknown key "formts"; did you mean "formats"? (at /formts)`,
      `${F}:5:1: unknown key "colour". Known: name, description, seed, models, datasets, methods, formats, backends, engines, tasks, exclude, thresholds (at /colour)`,
    ],
  },
  {
    name: "unknown keys in a model, a dataset, a format and a KV cache",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin, tokenzer: tok.bin }]
datasets:
  wiki: { kind: text, path: data/wiki.txt, max_char: 10 }
methods: [rtn]
formats:
  - { weights: int4, grup: 32, kv_cache: { format: int8, grop: 32 } }
tasks: [{ task: perplexity, dataset: wiki }]
`,
    expected: [
      `${F}:2:45: unknown key "tokenzer"; did you mean "tokenizer"? (at /models/0/tokenzer)`,
      `${F}:4:44: unknown key "max_char"; did you mean "max_chars"? (at /datasets/wiki/max_char)`,
      `${F}:7:22: unknown key "grup"; did you mean "group"? (at /formats/0/grup)`,
      `${F}:7:58: unknown key "grop"; did you mean "group"? (at /formats/0/kv_cache/grop)`,
    ],
  },
  {
    name: "missing required keys, with a misspelling hint in an open mapping",
    yaml: `name: t
models: [{ id: mini }]
methods: [{ methd: rtn }]
formats: [{ group: 32 }]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:2:10: missing required key "path" (at /models/0)`,
      `${F}:3:11: missing required key "method"; is "methd" a misspelling of it? (at /methods/0)`,
      `${F}:4:11: missing required key "weights" (at /formats/0)`,
    ],
  },
  {
    name: "list entries of the wrong type",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none, 5]
formats: [[int4]]
tasks: [true]
`,
    expected: [
      `${F}:3:17: expected a method name or a method with options, got 5 (at /methods/1)`,
      `${F}:4:11: expected a format preset or a format with settings, got a list (at /formats/0)`,
      `${F}:5:9: expected a task name or a task with options, got true (at /tasks/0)`,
    ],
  },
  {
    name: "unknown method names",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods:
  - rnt
  - { method: nnoe }
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:4:5: unknown method "rnt"; did you mean "rtn"? Known: ${KNOWN.methods} (at /methods/0)`,
      `${F}:5:15: unknown method "nnoe"; did you mean "none"? Known: ${KNOWN.methods} (at /methods/1/method)`,
    ],
  },
  {
    name: "unknown weight formats",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [rtn]
formats:
  - int44
  - { weights: in8, group: 32 }
  - { weights: int4, activations: int88, kv_cache: { format: f33 }, scale_dtype: f8 }
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:5:5: unknown weight format "int44"; did you mean "int4"? Known: ${KNOWN.formats} (at /formats/0)`,
      `${F}:6:16: unknown weight format "in8"; did you mean "int8"? Known: ${KNOWN.formats} (at /formats/1/weights)`,
      `${F}:7:35: unknown weight format "int88"; did you mean "int8"? Known: ${KNOWN.formats} (at /formats/2/activations)`,
      `${F}:7:62: unknown weight format "f33"; did you mean "f32"? Known: ${KNOWN.formats} (at /formats/2/kv_cache/format)`,
      `${F}:7:82: expected one of f16, bf16, f32, got "f8"; did you mean "f16"? (at /formats/2/scale_dtype)`,
    ],
  },
  {
    name: "a range on a non-integer format or with zero points",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [rtn]
formats:
  - { weights: q4_0, range: restricted }
  - { weights: int4, symmetric: false, range: restricted }
  - { weights: int4, range: narrow }
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:5:29: range applies to integer weight formats (int2 … int8), not "q4_0" (at /formats/0/range)`,
      `${F}:6:47: range: restricted is a symmetric scheme; use symmetric: true or drop range (at /formats/1/range)`,
      `${F}:7:29: expected one of full, restricted, got "narrow" (at /formats/2/range)`,
    ],
  },
  {
    name: "unknown task and backend names",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
backends: [cpuu]
tasks: [{ task: perplexty, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:5:12: unknown backend "cpuu"; did you mean "cpu"? Known: ${KNOWN.backends} (at /backends/0)`,
      `${F}:6:17: unknown task "perplexty"; did you mean "perplexity"? Known: ${KNOWN.tasks} (at /tasks/0/task)`,
    ],
  },
  {
    name: "unknown method options",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods:
  - { method: none, bits: 4 }
  - { method: calibrated_test, dmap: 0.1 }
  - { method: calibrated_test, id: c2, zzz: 1 }
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:4:21: unknown option "bits" for method "none"; it takes no options (at /methods/0/bits)`,
      `${F}:5:32: unknown option "dmap" for method "calibrated_test"; did you mean "damp"? (at /methods/1/dmap)`,
      `${F}:6:40: unknown option "zzz" for method "calibrated_test". Known: calibration, damp, act_order (at /methods/2/zzz)`,
    ],
  },
  {
    name: "method option values the method cannot run with, at their method's line",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods:
  - { method: gptq, device: tpu }
  - { method: rtn, clip: max }
  - { method: vptq, kmeans_mode: random }
  - { method: smoothquant, alpha: 2 }
  - { method: aqlm, finetune: true, finetune_adam_beta2: 1 }
  - { method: quarot, quantizer: awq }
  - { method: quarot, id: q2, quantizer: gptq, clip: mse }
  - { method: quip, pre_proj_extra: 3 }
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:4:5: method "gptq": GPTQ's device must be one of cpu, webgpu, got "tpu" (at /methods/0)`,
      `${F}:5:5: method "rtn": rtn option clip must be "none" or "mse", got "max" (at /methods/1)`,
      `${F}:6:5: method "vptq": VPTQ kmeans_mode is "hessian" or "", got "random" (at /methods/2)`,
      `${F}:7:5: method "smoothquant": SmoothQuant alpha must be in [0, 1], got 2 (at /methods/3)`,
      `${F}:8:5: method "aqlm": AQLM option finetune_adam_beta2 must be in [0, 1), got 1 (at /methods/4)`,
      `${F}:9:5: method "quarot": QuaRot's quantizer must be "rtn" or "gptq", got "awq" (at /methods/5)`,
      `${F}:10:5: method "quarot": QuaRot's clip applies to quantizer rtn; with gptq it must be "none", got "mse" (at /methods/6)`,
      `${F}:11:5: method "quip": QuIP pre_proj_extra is 0, 1 or 2, got 3 (at /methods/7)`,
    ],
  },
  {
    name: "unknown task option and an option of the wrong type",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
tasks:
  - { task: perplexity, dataset: data/wiki.txt, contxt: 128 }
  - { task: perplexity, id: p2, dataset: data/wiki.txt, context: abc }
`,
    expected: [
      `${F}:6:49: unknown option "contxt" for task "perplexity"; did you mean "context"? (at /tasks/0/contxt)`,
      `${F}:7:66: expected a number, got "abc" (at /tasks/1/context)`,
    ],
  },
  {
    name: "undefined dataset ids in a task and in calibration",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
datasets:
  wiki: { kind: text, path: data/wiki.txt }
methods:
  - { method: calibrated_test, calibration: { dataset: calib, samples: 8 } }
  - { method: rtn, calibration: { dataset: wiki } }
formats: [int4]
tasks: [{ task: perplexity, dataset: wiki2 }]
`,
    expected: [
      `${F}:6:56: dataset "calib" is not defined in datasets. Known: wiki (at /methods/0/calibration/dataset)`,
      `${F}:7:20: method "rtn" does not use calibration data (at /methods/1/calibration)`,
      `${F}:9:38: dataset "wiki2" is not defined in datasets; did you mean "wiki"? (at /tasks/0/dataset)`,
    ],
  },
  {
    name: "calibration sets: an undefined dataset, a set listed twice, an empty list",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
datasets:
  wiki: { kind: text, path: data/wiki.txt }
methods:
  - { method: calibrated_test, calibration: [{ dataset: wiki }, { dataset: code }, { dataset: wiki }] }
  - { id: b, method: calibrated_test, calibration: [] }
formats: [int4]
tasks: [{ task: perplexity, dataset: wiki }]
`,
    expected: [
      `${F}:6:76: dataset "code" is not defined in datasets. Known: wiki (at /methods/0/calibration/1/dataset)`,
      `${F}:6:95: duplicate calibration set "wiki" (first used on line 6) (at /methods/0/calibration/2/dataset)`,
      `${F}:7:52: the list is empty; add at least one entry (at /methods/1/calibration)`,
    ],
  },
  {
    name: "a dataset id when the suite defines none",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: wiki }]
`,
    expected: [
      `${F}:5:38: dataset "wiki" is not defined in datasets; the suite defines none (at /tasks/0/dataset)`,
    ],
  },
  {
    name: "missing model and tokenizer files",
    yaml: `name: t
models:
  - { id: mini, path: models/nope.bin, tokenizer: models/tok.bin }
  - { id: dir, path: models }
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`,
    expected: [
      `${F}:3:23: model file "models/nope.bin" does not exist (resolved to DIR/models/nope.bin) (at /models/0/path)`,
      `${F}:3:51: tokenizer file "models/tok.bin" does not exist (resolved to DIR/models/tok.bin) (at /models/0/tokenizer)`,
    ],
  },
  {
    name: "missing dataset files and a directory as a dataset",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
datasets:
  wiki: { kind: text, path: data/wiki2.txt }
  folder: { kind: jsonl, path: data }
methods: [none]
formats: [f32]
tasks:
  - { task: perplexity, dataset: data/gone.txt }
`,
    expected: [
      `${F}:4:29: dataset file "data/wiki2.txt" does not exist (resolved to DIR/data/wiki2.txt) (at /datasets/wiki/path)`,
      `${F}:5:32: dataset file "data" is a directory, not a file (resolved to DIR/data) (at /datasets/folder/path)`,
      `${F}:9:34: dataset file "data/gone.txt" does not exist (resolved to DIR/data/gone.txt) (at /tasks/0/dataset)`,
    ],
  },
  {
    name: "bad dataset kind and id",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
datasets:
  wiki: { kind: txt, path: data/wiki.txt }
  my data: { kind: text, path: data/wiki.txt }
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: wiki }]
`,
    expected: [
      `${F}:4:17: expected one of text, jsonl, got "txt"; did you mean "text"? (at /datasets/wiki/kind)`,
      `${F}:5:3: invalid name "my data": use letters, digits, "_", "." and "-" only (at /datasets/my data)`,
    ],
  },
  {
    name: "duplicate model, method, format, backend and task ids",
    yaml: `name: t
models:
  - { id: mini, path: models/mini.bin }
  - { id: mini, path: models/mini.bin }
methods: [rtn, { method: rtn }]
formats:
  - int4
  - { weights: int4 }
  - { id: int4-g32, weights: int8 }
  - { weights: int4, group: 32 }
backends: [cpu, cpu]
tasks:
  - { task: perplexity, dataset: data/wiki.txt }
  - { task: perplexity, dataset: data/wiki.txt, context: 128 }
`,
    expected: [
      `${F}:4:11: duplicate model id "mini" (first used on line 3) (at /models/1/id)`,
      `${F}:5:26: duplicate method id "rtn" (first used on line 5) (at /methods/1/method)`,
      `${F}:8:5: duplicate format id "int4" (first used on line 7) (at /formats/1)`,
      `${F}:10:5: duplicate format id "int4-g32" (first used on line 9) (at /formats/3)`,
      `${F}:11:17: duplicate backend "cpu" (first used on line 11) (at /backends/1)`,
      `${F}:14:13: duplicate task id "perplexity" on dataset "data/wiki.txt" (first used on line 13) (at /tasks/1/task)`,
    ],
  },
  {
    name: "empty lists",
    yaml: `name: t
models: []
methods: []
formats: []
backends: []
tasks: []
`,
    expected: [
      `${F}:2:9: the list is empty; add at least one entry (at /models)`,
      `${F}:3:10: the list is empty; add at least one entry (at /methods)`,
      `${F}:4:10: the list is empty; add at least one entry (at /formats)`,
      `${F}:5:11: the list is empty; add at least one entry (at /backends)`,
      `${F}:6:8: the list is empty; add at least one entry (at /tasks)`,
    ],
  },
  {
    name: "exclude rules: no keys, a misspelt key, unknown names, a bad value",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none, rtn]
formats: [f32, int4]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
exclude:
  - {}
  - { modle: mini }
  - { model: minni, method: "!nnoe", format: int44, backend: gpu }
  - { model: "mini/x" }
`,
    expected: [
      `${F}:7:5: expected at least one of: model, method, format, backend (at /exclude/0)`,
      `${F}:8:7: unknown key "modle"; did you mean "model"? (at /exclude/1/modle)`,
      `${F}:9:14: unknown model "minni"; did you mean "mini"? Known: mini (at /exclude/2/model)`,
      `${F}:9:29: unknown method "nnoe"; did you mean "none"? Known: ${
        union(["none", "rtn"], methods.names())
      } (at /exclude/2/method)`,
      `${F}:9:46: unknown format "int44"; did you mean "int4"? Known: ${
        union(["f32", "int4"], elementFormats.names())
      } (at /exclude/2/format)`,
      `${F}:9:62: unknown backend "gpu"; did you mean "cpu"? Known: ${KNOWN.backends} (at /exclude/2/backend)`,
      `${F}:10:14: expected an id of letters, digits, "_", "." and "-", optionally after "!", got "mini/x" (at /exclude/3/model)`,
    ],
  },
  {
    name: "thresholds: misspelt key, empty rule, wrong type",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
thresholds:
  perplexity: { max_relative_increse: 0.02 }
  json.schema_valid: {}
  bits: 0.1
`,
    expected: [
      `${F}:7:17: unknown key "max_relative_increse"; did you mean "max_relative_increase"? (at /thresholds/perplexity/max_relative_increse)`,
      `${F}:8:22: expected at least one of: max_relative_increase, max_relative_decrease, max_absolute_increase, max_absolute_drop (at /thresholds/json.schema_valid)`,
      `${F}:9:9: expected a mapping, got 0.1 (at /thresholds/bits)`,
    ],
  },
  {
    name: "exclude rules that remove every cell",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none, rtn]
formats: [f32, int4]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
exclude:
  - { method: none }
  - { method: "!none", backend: cpu }
`,
    expected: [
      `${F}:6:1: the suite expands to no cells: the exclude rules remove every combination of models, methods, formats and backends (at /exclude)`,
    ],
  },
  {
    name: "a task that needs a dataset without one",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
tasks:
  - perplexity
  - { task: perplexity, id: p2, context: 128 }
`,
    expected: [
      `${F}:6:5: task "perplexity" needs a dataset; add "dataset:" with a dataset id or a file path (at /tasks/0)`,
      `${F}:7:5: task "perplexity" needs a dataset; add "dataset:" with a dataset id or a file path (at /tasks/1)`,
    ],
  },
  {
    name: "many problems at once, reported in file order",
    yaml: `name: t
seed: "0"
models:
  - { id: mini, path: models/missing.bin }
datasets:
  wiki: { kind: text, path: data/wiki.txt, separatr: "\\n\\n" }
methods: [none, rnt]
formats: [f32, { weights: int4, group: 33 }]
backends: [cpu]
tasks:
  - { task: perplexity, dataset: wik }
thresholds: { perplexity: {} }
`,
    expected: [
      `${F}:2:7: expected an integer, got "0" (at /seed)`,
      `${F}:4:23: model file "models/missing.bin" does not exist (resolved to DIR/models/missing.bin) (at /models/0/path)`,
      `${F}:6:44: unknown key "separatr"; did you mean "separator"? (at /datasets/wiki/separatr)`,
      `${F}:7:17: unknown method "rnt"; did you mean "rtn"? Known: ${KNOWN.methods} (at /methods/1)`,
      `${F}:8:40: expected 0 (one scale per output channel) or a power of two of at least 8, got 33 (at /formats/1/group)`,
      `${F}:11:34: dataset "wik" is not defined in datasets; did you mean "wiki"? (at /tasks/0/dataset)`,
      `${F}:12:27: expected at least one of: max_relative_increase, max_relative_decrease, max_absolute_increase, max_absolute_drop (at /thresholds/perplexity)`,
    ],
  },
  {
    name: "a throughput-only method with a quality task",
    yaml: `name: t
models: [{ id: mini, path: models/mini.bin }]
methods:
  - rtn
  - random_codes
  - { id: e8p, method: random_codes, e8p: true }
formats: [aqlm_2x8]
tasks:
  - { task: throughput, prompt_tokens: 8, generate_tokens: 4 }
  - { task: perplexity, dataset: data/wiki.txt }
  - { task: kld, dataset: data/wiki.txt }
`,
    expected: [
      `${F}:5:5: impossible combination: method "random_codes" is for throughput only, but the suite also runs tasks "perplexity", "kld"; use it in a suite whose tasks are throughput only (at /methods/1)`,
      `${F}:6:24: impossible combination: method "random_codes" is for throughput only, but the suite also runs tasks "perplexity", "kld"; use it in a suite whose tasks are throughput only (at /methods/2/method)`,
    ],
  },
];

for (const c of CASES) {
  Deno.test(`loadSuite rejects: ${c.name}`, async () => {
    assert.deepEqual(await issueLines(c.yaml, c.files), c.expected);
  });
}

Deno.test("loadSuite: issues carry path, line, column and pointer", async () => {
  await withSuite(
    "name: t\nseed: x\nmodels: [{ id: m, path: models/mini.bin }]\nmethods: [none]\n" +
      "formats: [f32]\ntasks: [{ task: perplexity, dataset: data/wiki.txt }]\n",
    async (file) => {
      // The path in messages is exactly the one given, here relative to the working directory.
      const given = relative(Deno.cwd(), file);
      const error = await loadSuite(given).catch((e: unknown) => e);
      assert.ok(error instanceof SuiteError);
      assert.deepEqual(error.issues, [{
        path: given,
        line: 2,
        col: 7,
        pointer: "/seed",
        message: 'expected an integer, got "x"',
      }]);
      assert.equal(error.message, `${given}:2:7: expected an integer, got "x" (at /seed)`);
    },
  );
});

Deno.test("loadSuite: a missing suite file is a SuiteError at 1:1", async () => {
  const error = await loadSuite("/nonexistent/quantbench/suite.yaml").catch((e: unknown) => e);
  assert.ok(error instanceof SuiteError);
  assert.equal(error.issues.length, 1);
  assert.match(
    error.message,
    /^\/nonexistent\/quantbench\/suite\.yaml:1:1: cannot read the suite: /,
  );
  assert.ok(error.cause instanceof Deno.errors.NotFound);
});

const VALID = `# yaml-language-server: $schema=../harness/suite.schema.json
name: quick.start-1
description: a test suite
models:
  - { id: mini, path: ../models/mini.bin }
  - { id: other, path: ../models/other.bin, tokenizer: ../models/tok512.bin }
datasets:
  wiki: { kind: text, path: ../data/wiki.txt }
  calib: { kind: text, path: ../data/wiki.txt, max_chars: 1000, separator: "\\n\\n" }
methods:
  - none
  - rtn
  - { id: cal, method: calibrated_test, act_order: true, calibration: { dataset: calib } }
formats:
  - f32
  - int8
  - { weights: int4, group: 32 }
  - { weights: int3, group: 64, symmetric: false }
  - { id: w8a8, weights: int8, activations: int8, kv_cache: { format: int8 }, scale_dtype: bf16 }
tasks:
  - { task: perplexity, dataset: wiki, context: 256 }
  - { task: perplexity, id: ppl-jsonl, dataset: ../data/qa.jsonl }
exclude:
  - { method: none, format: "!f32" }
thresholds:
  perplexity: { max_relative_increase: 0.02 }
`;

const VALID_FILES = {
  "models/mini.bin": "m",
  "models/other.bin": "o",
  "models/tok512.bin": "t",
  "data/wiki.txt": "hello\n\nworld\n",
  "data/qa.jsonl": '{"q": 1}\n',
};

Deno.test("loadSuite: a valid suite, normalised with defaults and absolute paths", async () => {
  await withSuite(VALID.replaceAll("../", ""), async (file, dir) => {
    const suite = await loadSuite(file);
    const ppl = tasks.get("perplexity").options;
    const { hash, ...rest } = suite;
    assert.deepEqual(rest, {
      file,
      name: "quick.start-1",
      seed: 0,
      models: [
        {
          id: "mini",
          path: join(dir, "models/mini.bin"),
          tokenizer: join(dir, "models/tok512.bin"),
        },
        {
          id: "other",
          path: join(dir, "models/other.bin"),
          tokenizer: join(dir, "models/tok512.bin"),
        },
      ],
      datasets: {
        wiki: { id: "wiki", kind: "text", path: join(dir, "data/wiki.txt"), maxChars: 0 },
        calib: {
          id: "calib",
          kind: "text",
          path: join(dir, "data/wiki.txt"),
          maxChars: 1000,
          separator: "\n\n",
        },
        "data/qa.jsonl": {
          id: "data/qa.jsonl",
          kind: "jsonl",
          path: join(dir, "data/qa.jsonl"),
          maxChars: 0,
        },
      },
      methods: [
        { id: "none", method: "none", options: {} },
        { id: "rtn", method: "rtn", options: structuredClone(methods.get("rtn").options) },
        {
          id: "cal",
          method: "calibrated_test",
          options: {
            calibration: { dataset: "calib", samples: 128, seq_len: 2048 },
            damp: 0.01,
            act_order: true,
          },
        },
      ],
      formats: [
        { id: "f32", weights: "f32", group: 0, symmetric: true, options: {} },
        { id: "int8", weights: "int8", group: 0, symmetric: true, options: {} },
        { id: "int4-g32", weights: "int4", group: 32, symmetric: true, options: {} },
        { id: "int3-g64-asym", weights: "int3", group: 64, symmetric: false, options: {} },
        {
          id: "w8a8",
          weights: "int8",
          group: 0,
          symmetric: true,
          options: {
            activations: "int8",
            kv_cache: { format: "int8", group: 0 },
            scale_dtype: "bf16",
          },
        },
      ],
      backends: ["cpu"],
      tasks: [
        {
          id: "perplexity",
          task: "perplexity",
          dataset: "wiki",
          options: { ...ppl, context: 256 },
        },
        { id: "ppl-jsonl", task: "perplexity", dataset: "data/qa.jsonl", options: { ...ppl } },
      ],
      exclude: [{ method: "none", format: "!f32" }],
      thresholds: { perplexity: { max_relative_increase: 0.02 } },
    });
    // SHA-256 of the file's bytes, computed independently with Web Crypto.
    const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(file));
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(hash, hex);
    assert.match(hash, /^[0-9a-f]{64}$/);
  }, VALID_FILES);
});

Deno.test("loadSuite: a list of calibration sets gives one method per set, <id>@<dataset>", async () => {
  const yaml = `name: t
models: [{ id: mini, path: models/mini.bin }]
datasets:
  wiki: { kind: text, path: data/wiki.txt }
  qa: { kind: text, path: data/qa.jsonl }
methods:
  - none
  - { id: cal, method: calibrated_test, damp: 0.1, calibration: [{ dataset: wiki, samples: 4 }, { dataset: qa }] }
  - { method: calibrated_test, calibration: { dataset: wiki } }
formats: [int4]
tasks: [{ task: perplexity, dataset: wiki }]
`;
  await withSuite(yaml, async (file) => {
    const suite = await loadSuite(file);
    const options = (dataset: string, samples: number, damp: number) => ({
      calibration: { dataset, samples, seq_len: 2048 },
      damp,
      act_order: false,
    });
    assert.deepEqual(suite.methods, [
      { id: "none", method: "none", options: {} },
      {
        id: "cal@wiki",
        method: "calibrated_test",
        options: options("wiki", 4, 0.1),
        calibrationSet: { of: "cal", dataset: "wiki" },
      },
      {
        id: "cal@qa",
        method: "calibrated_test",
        options: options("qa", 128, 0.1),
        calibrationSet: { of: "cal", dataset: "qa" },
      },
      // A single calibration mapping stays as it was: no set, the plain id.
      { id: "calibrated_test", method: "calibrated_test", options: options("wiki", 128, 0.01) },
    ]);
  });
});

Deno.test("loadSuite: paths resolve relative to the suite file's folder", async () => {
  const files = { ...VALID_FILES, "suites/nightly.yaml": VALID };
  await withSuite("unused: true\n", async (_file, dir) => {
    const suite = await loadSuite(join(dir, "suites", "nightly.yaml"));
    assert.equal(suite.file, join(dir, "suites", "nightly.yaml"));
    assert.equal(suite.models[0]!.path, join(dir, "models", "mini.bin"));
    assert.equal(suite.datasets.wiki!.path, join(dir, "data", "wiki.txt"));
    assert.equal(suite.datasets["../data/qa.jsonl"]!.path, join(dir, "data", "qa.jsonl"));
    assert.equal(suite.tasks[1]!.dataset, "../data/qa.jsonl");
  }, files);
});

Deno.test("parseSuite: same result as loadSuite, with the hash of the text's UTF-8 bytes", async () => {
  await withSuite(VALID.replaceAll("../", ""), async (file) => {
    const text = await Deno.readTextFile(file);
    assert.deepEqual(await parseSuite(text, file), await loadSuite(file));
  }, VALID_FILES);
});

Deno.test("loadSuite: minimal suite gets seed 0, backends [cpu], no exclude or thresholds", async () => {
  const yaml = `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [rtn]
formats: [int4, { weights: int4, symmetric: false }]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`;
  await withSuite(yaml, async (file, dir) => {
    const suite = await loadSuite(file);
    assert.equal(suite.seed, 0);
    assert.deepEqual(suite.backends, ["cpu"]);
    assert.deepEqual(suite.exclude, []);
    assert.deepEqual(suite.thresholds, {});
    assert.deepEqual(suite.formats.map((f) => f.id), ["int4", "int4-asym"]);
    assert.deepEqual(suite.datasets, {
      "data/wiki.txt": {
        id: "data/wiki.txt",
        kind: "text",
        path: join(dir, "data/wiki.txt"),
        maxChars: 0,
      },
    });
    assert.deepEqual(suite.tasks[0]!.options, tasks.get("perplexity").options);
    // No tok*.bin beside the model, so no tokenizer.
    assert.equal(suite.models[0]!.tokenizer, undefined);
  });
});

Deno.test("loadSuite: a llama2.c model finds the one tok*.bin beside it", async () => {
  const yaml = `name: t
models: [{ id: mini, path: models/mini.bin }]
methods: [none]
formats: [f32]
tasks: [{ task: perplexity, dataset: data/wiki.txt }]
`;
  await withSuite(yaml, async (file, dir) => {
    const suite = await loadSuite(file);
    assert.equal(suite.models[0]!.tokenizer, join(dir, "models", "tok512.bin"));
  }, { ...FILES, "models/tok512.bin": "t" });
});

/** Every property schema, with the path to it, following `$ref`s into `$defs`. */
function* properties(node: unknown, path: string): Generator<[string, Record<string, unknown>]> {
  if (typeof node !== "object" || node === null) return;
  const record = node as Record<string, unknown>;
  if (typeof record.properties === "object") {
    for (const [name, sub] of Object.entries(record.properties as Record<string, unknown>)) {
      yield [`${path}/properties/${name}`, sub as Record<string, unknown>];
    }
  }
  for (const [key, value] of Object.entries(record)) {
    if (typeof value === "object") yield* properties(value, `${path}/${key}`);
  }
}

Deno.test("suite.schema.json: a documented 2020-12 schema, closed except for options", () => {
  assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
  assert.equal(typeof schema.$id, "string");
  const defs = schema.$defs as Record<string, Record<string, unknown>>;
  let count = 0;
  for (const [path, property] of properties(schema, "#")) {
    const ref = typeof property.$ref === "string"
      ? defs[property.$ref.replace("#/$defs/", "")]
      : undefined;
    for (const field of ["title", "description"]) {
      assert.equal(typeof (property[field] ?? ref?.[field]), "string", `${path} has no ${field}`);
    }
    count++;
  }
  assert.ok(count > 40, `only ${count} properties`);
  // Every mapping is closed, except method and task entries whose extra keys are their options.
  const open: string[] = [];
  (function walk(node: unknown, path: string) {
    if (typeof node !== "object" || node === null) return;
    const record = node as Record<string, unknown>;
    if (record.type === "object" && record.additionalProperties === true) open.push(path);
    if (record.type === "object" && record.additionalProperties === undefined) {
      assert.fail(`${path} does not say whether it allows other keys`);
    }
    for (const [key, value] of Object.entries(record)) walk(value, `${path}/${key}`);
  })(schema, "#");
  assert.deepEqual(open, ["#/$defs/methodEntry/anyOf/1", "#/$defs/taskEntry/anyOf/1"]);
});
