/**
 * `deno task inspect MODEL [--json]`: what a model file or folder holds — architecture and
 * hyper-parameters, parameter count, every tensor (name, shape, stored type, bytes), bits per
 * weight of the transformer linear layers and of the whole file, and the tokenizer. Reads headers
 * and tokenizers only; no weights are decoded (except for llama2.c checkpoints, which have no
 * header to read them from).
 *
 * Any GGUF file or Hugging Face folder is described, whether or not quantbench can run it: the
 * file's own metadata (GGUF key–value pairs, `config.json`), its tensors and its tokenizer, and a
 * `runs` line that says whether the architecture runs here and, if not, why (an architecture
 * quantbench does not implement, a vocab-only GGUF such as llama.cpp's `ggml-vocab-*.gguf`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import type { LlamaConfig, Tokenizer } from "../../core/model.ts";
import { LINEAR_NAMES } from "../../core/model.ts";
import { loadModelPath, modelFormat, ModelLoadError } from "./load.ts";
import { GgufError, openGguf } from "./gguf/reader.ts";
import { ggufConfig } from "./gguf_model.ts";
import { ggufTokenizer } from "./tokenizer_gguf.ts";
import { readHfConfig, weightFileNames } from "./hf/load.ts";
import { loadHfTokenizer } from "./tokenizer_hf.ts";
import { openSafetensors } from "./safetensors.ts";
import { ModelFileError } from "./errors.ts";
import { Llama2cFormatError } from "./llama2c.ts";
import { matrixBits } from "../../kernels/formats/matrix.ts";

/** One stored tensor. */
export interface TensorRow {
  name: string;
  /** Row-major shape (the last dimension contiguous), whatever the file's own convention. */
  shape: number[];
  /** The stored element or block type (`F32`, `BF16`, `Q4_K`, …). */
  type: string;
  bytes: number;
  /** Whether it is a transformer linear weight (what bits per weight are quoted over). */
  linear: boolean;
}

/** Everything `inspect` reports. */
export interface Inspection {
  path: string;
  format: "Hugging Face folder" | "GGUF" | "llama2.c checkpoint";
  /** The architecture the file names (`general.architecture`, `model_type`). */
  architecture: string;
  /** Whether quantbench can run the model, and why not. */
  runs: { ok: true } | { ok: false; reason: string };
  /** The hyper-parameters quantbench reads; absent when the architecture does not run here. */
  config?: LlamaConfig;
  /** The file's own metadata, values shortened for display (long arrays as their length). */
  metadata: Record<string, string>;
  parameters: number;
  tensors: TensorRow[];
  /** Bits per weight of the linear layers, scales included. */
  linearBitsPerWeight: number;
  /** Bits per parameter over every tensor. */
  bitsPerParameter: number;
  /** The tokenizer, or why it could not be read. */
  tokenizer: {
    kind: string;
    vocabSize: number;
    bos: string;
    eos: string;
    addBos: boolean | undefined;
    addEos: boolean | undefined;
    chatTemplate: boolean;
  } | { error: string };
}

/** Errors that describe the file rather than a bug: reported in the inspection, not thrown. */
function fileProblem(e: unknown): string {
  const known = e instanceof ModelFileError || e instanceof GgufError ||
    e instanceof ModelLoadError || e instanceof Llama2cFormatError;
  if (!known) throw e;
  return (e as Error).message;
}

function display(v: unknown): string {
  if (Array.isArray(v)) {
    return v.length > 8
      ? `[${v.length} items]`
      : JSON.stringify(v, (_, x) => typeof x === "bigint" ? Number(x) : x);
  }
  const text = typeof v === "string"
    ? JSON.stringify(v)
    : typeof v === "object" && v !== null
    ? JSON.stringify(v)
    : String(v);
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

const HF_LINEAR = /^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/;
const GGUF_LINEAR = /^blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$/;

function describeTokenizer(tok: Tokenizer, kind: string): Inspection["tokenizer"] {
  const name = (id: number) => {
    const token = tok.vocab?.tokens[id];
    return token === undefined ? `${id}` : `${JSON.stringify(token)} (${id})`;
  };
  return {
    kind,
    vocabSize: tok.vocabSize,
    bos: name(tok.bosId),
    eos: name(tok.eosId),
    addBos: tok.addBos,
    addEos: tok.addEos,
    chatTemplate: tok.chat !== undefined,
  };
}

function summarize(
  base: Omit<Inspection, "parameters" | "linearBitsPerWeight" | "bitsPerParameter">,
): Inspection {
  const count = (t: TensorRow) => t.shape.reduce((a, b) => a * b, 1);
  let params = 0;
  let bits = 0;
  let linearCount = 0;
  let linearBits = 0;
  for (const t of base.tensors) {
    params += count(t);
    bits += 8 * t.bytes;
    if (t.linear) {
      linearCount += count(t);
      linearBits += 8 * t.bytes;
    }
  }
  return {
    ...base,
    parameters: params,
    linearBitsPerWeight: linearCount === 0 ? 0 : linearBits / linearCount,
    bitsPerParameter: params === 0 ? 0 : bits / params,
  };
}

async function inspectHf(dir: string): Promise<Inspection> {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  } catch (e) {
    throw new ModelLoadError(`Cannot inspect ${dir}: config.json is unreadable or not JSON`, {
      cause: e,
    });
  }
  let config: LlamaConfig | undefined;
  let runs: Inspection["runs"] = { ok: true };
  try {
    config = (await readHfConfig(dir)).parsed.config;
  } catch (e) {
    runs = { ok: false, reason: fileProblem(e) };
  }
  const tensors: TensorRow[] = [];
  try {
    for (const f of await weightFileNames(dir)) {
      using st = await openSafetensors(join(dir, f));
      for (const t of st.tensors) {
        tensors.push({
          name: t.name,
          shape: [...t.shape],
          type: t.dtype,
          bytes: t.byteLength,
          linear: HF_LINEAR.test(t.name),
        });
      }
    }
  } catch (e) {
    const reason = fileProblem(e);
    if (runs.ok) runs = { ok: false, reason };
  }
  let tokenizer: Inspection["tokenizer"];
  try {
    const tok = await loadHfTokenizer(dir);
    const model = tok.files.tokenizer.model as { type?: string } | undefined;
    tokenizer = describeTokenizer(tok, `tokenizer.json (${model?.type ?? "unknown"})`);
  } catch (e) {
    tokenizer = { error: fileProblem(e) };
  }
  return summarize({
    path: dir,
    format: "Hugging Face folder",
    architecture: String(
      raw.model_type ?? (raw.architectures as unknown[] | undefined)?.[0] ?? "unknown",
    ),
    runs,
    ...(config ? { config } : {}),
    metadata: Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, display(v)])),
    tensors,
    tokenizer,
  });
}

async function inspectGguf(path: string): Promise<Inspection> {
  using gguf = await openGguf(path);
  const architecture = gguf.metadata.has("general.architecture")
    ? String(gguf.metadata.get("general.architecture"))
    : "unknown";
  let config: LlamaConfig | undefined;
  let runs: Inspection["runs"] = { ok: true };
  if (gguf.tensors.length === 0) {
    runs = { ok: false, reason: "vocab-only file: it holds a tokenizer and no weights" };
  } else {
    try {
      config = ggufConfig(gguf);
    } catch (e) {
      runs = { ok: false, reason: fileProblem(e) };
    }
  }
  const tensors = gguf.tensors.map((t) => ({
    name: t.name,
    shape: [...t.shape].reverse(),
    type: t.typeName,
    bytes: t.byteSize,
    linear: GGUF_LINEAR.test(t.name),
  }));
  let tokenizer: Inspection["tokenizer"];
  try {
    const tok = ggufTokenizer(gguf);
    const pre = tok.vocab?.pre === undefined ? "" : `, pre ${tok.vocab.pre}`;
    tokenizer = describeTokenizer(tok, `GGUF ${tok.vocab?.model}${pre}`);
  } catch (e) {
    tokenizer = { error: fileProblem(e) };
  }
  return summarize({
    path,
    format: "GGUF",
    architecture,
    runs,
    ...(config ? { config } : {}),
    metadata: Object.fromEntries([...gguf.metadata].map(([k, v]) => [k, display(v)])),
    tensors,
    tokenizer,
  });
}

async function inspectLlama2c(path: string): Promise<Inspection> {
  const model = await loadModelPath(path);
  const w = model.weights;
  const tensors: TensorRow[] = [];
  const vector = (name: string, v: Float32Array) =>
    tensors.push({ name, shape: [v.length], type: "F32", bytes: 4 * v.length, linear: false });
  tensors.push({
    name: "token_embedding",
    shape: [model.config.vocabSize, model.config.dim],
    type: "F32",
    bytes: 4 * w.tokenEmbedding.length,
    linear: false,
  });
  w.layers.forEach((layer, l) => {
    vector(`layers.${l}.rms_att`, layer.attnNorm);
    vector(`layers.${l}.rms_ffn`, layer.ffnNorm);
    for (const n of LINEAR_NAMES) {
      const m = layer[n];
      tensors.push({
        name: `layers.${l}.${n}`,
        shape: [m.rows, m.cols],
        type: "F32",
        bytes: matrixBits(m) / 8,
        linear: true,
      });
    }
  });
  vector("rms_final", w.finalNorm);
  if (!w.tiedEmbeddings) {
    tensors.push({
      name: "classifier",
      shape: [w.output.rows, w.output.cols],
      type: "F32",
      bytes: matrixBits(w.output) / 8,
      linear: false,
    });
  }
  return summarize({
    path,
    format: "llama2.c checkpoint",
    architecture: "llama",
    runs: { ok: true },
    config: model.config,
    metadata: {},
    tensors,
    tokenizer: describeTokenizer(model.tokenizer, "llama2.c tokenizer (SentencePiece BPE)"),
  });
}

/** Inspects a model file or folder. */
export function inspectModel(path: string): Promise<Inspection> {
  switch (modelFormat(path)) {
    case "hf":
      return inspectHf(path);
    case "gguf":
      return inspectGguf(path);
    case "llama2c":
      return inspectLlama2c(path);
    case undefined:
      return Promise.reject(
        new ModelLoadError(
          `Cannot inspect ${path}: not a Hugging Face folder (config.json), .gguf or .bin file`,
        ),
      );
  }
}

function table(rows: string[][], alignLast = true): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r.map((cell, i) =>
      i === r.length - 1 ? (alignLast ? cell.padStart(widths[i]!) : cell) : cell.padEnd(widths[i]!)
    ).join("  ")
  ).join("\n");
}

/** The human-readable report. */
export function formatInspection(x: Inspection): string {
  const c = x.config;
  const t = x.tokenizer;
  const lines = [`${x.path} (${x.format})`];
  lines.push(`runs          ${x.runs.ok ? "yes" : `no: ${x.runs.reason}`}`);
  if (c) {
    const scaling = c.ropeScaling === undefined
      ? "none"
      : c.ropeScaling.type === "factors"
      ? "per-frequency factors"
      : `${c.ropeScaling.type} ×${c.ropeScaling.factor}`;
    lines.push(
      `architecture  ${c.architecture ?? "llama"}: dim ${c.dim}, ffn ${c.hiddenDim}, ` +
        `layers ${c.nLayers}, heads ${c.nHeads} (kv ${c.nKvHeads}), head_dim ${c.headDim}, ` +
        `vocab ${c.vocabSize}, context ${c.maxSeqLen}`,
      `rope          θ ${c.ropeTheta}, ${c.ropeStyle} pairs, scaling ${scaling}; ` +
        `rms_norm_eps ${c.normEps}`,
    );
  } else {
    lines.push(`architecture  ${x.architecture}`);
  }
  lines.push(
    `parameters    ${x.parameters.toLocaleString("en-US")}`,
    `bits/weight   ${x.linearBitsPerWeight.toFixed(4)} (linear layers), ` +
      `${x.bitsPerParameter.toFixed(4)} (all tensors)`,
    "error" in t
      ? `tokenizer     not readable: ${t.error}`
      : `tokenizer     ${t.kind}, ${t.vocabSize} tokens, BOS ${t.bos}, EOS ${t.eos}, ` +
        `add BOS ${t.addBos ?? "?"}, add EOS ${t.addEos ?? "?"}, ` +
        `chat template ${t.chatTemplate ? "yes" : "no"}`,
  );
  const meta = Object.entries(x.metadata);
  if (meta.length > 0) {
    lines.push("", table([["metadata", "value"], ...meta.map(([k, v]) => [k, v])], false));
  }
  lines.push(
    "",
    x.tensors.length === 0 ? "no tensors" : table([
      ["tensor", "shape", "type", "bytes"],
      ...x.tensors.map((r) => [r.name, `[${r.shape.join(", ")}]`, r.type, `${r.bytes}`]),
    ]),
  );
  return lines.join("\n") + "\n";
}

const USAGE =
  "usage: deno task inspect MODEL [--json]   (MODEL: HF folder, .gguf or llama2.c .bin)";

/** The `inspect` command: prints the report (or JSON) and returns the exit code. */
export async function runInspect(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { json: { type: "boolean" } }, allowPositionals: true });
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (parsed.positionals.length !== 1) {
    console.error(USAGE);
    return 2;
  }
  try {
    const x = await inspectModel(parsed.positionals[0]!);
    const text = parsed.values.json
      ? JSON.stringify(x, (_, v) => (v instanceof Float32Array ? [...v] : v), 2) + "\n"
      : formatInspection(x);
    Deno.stdout.writeSync(new TextEncoder().encode(text));
    return 0;
  } catch (e) {
    const known = e instanceof ModelFileError || e instanceof GgufError ||
      e instanceof ModelLoadError || e instanceof Llama2cFormatError;
    if (!known) throw e;
    console.error((e as Error).message);
    return 2;
  }
}
