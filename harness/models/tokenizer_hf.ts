/**
 * Hugging Face tokenizers: `tokenizer.json` run by `@huggingface/tokenizers` (a faithful port of
 * the Rust `tokenizers` pipeline), with `tokenizer_config.json` for special tokens and the chat
 * template. Whether BOS/EOS start or end a sequence is read off the tokenizer's own
 * post-processor, as transformers applies it with `add_special_tokens=True`.
 *
 * @module
 */
import { Tokenizer as HfTokenizerImpl } from "@huggingface/tokenizers";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ChatTemplate, Tokenizer, Vocabulary } from "../../core/model.ts";
import { type ChatSpecialTokens, JinjaChatTemplate } from "./chat.ts";
import {
  MissingTokenizerError,
  ModelFileError,
  ModelIoError,
  TokenizerFormatError,
  UnsupportedModelError,
} from "./errors.ts";

/** The source files of a Hugging Face tokenizer, kept so writers can copy them verbatim. */
export interface HfTokenizerFiles {
  /** Parsed `tokenizer.json`. */
  tokenizer: Record<string, unknown>;
  /** Parsed `tokenizer_config.json` (empty when the folder has none). */
  config: Record<string, unknown>;
  /** `chat_template.jinja`, when the folder has one (it overrides the config's template). */
  chatTemplate?: string;
}

/** Ids that `config.json` gives, used when `tokenizer_config.json` names no BOS/EOS token. */
export interface SpecialIdHints {
  bosId?: number;
  eosId?: number;
}

/** The Qwen2 pre-tokenizer split pattern, to name the `gpt2`-vocabulary pre-tokenizer `qwen2`. */
const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A special token in `tokenizer_config.json`: a string or an AddedToken object. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isObject(v) && typeof v.content === "string") return v.content;
  return undefined;
}

/** A tokenizer backed by `tokenizer.json`. */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly chat: ChatTemplate | undefined;
  readonly #impl: HfTokenizerImpl;
  #vocab: Vocabulary | undefined | null = null;

  constructor(readonly files: HfTokenizerFiles, readonly file: string, hints: SpecialIdHints = {}) {
    try {
      this.#impl = new HfTokenizerImpl(files.tokenizer, files.config);
    } catch (e) {
      throw new TokenizerFormatError(file, `cannot build the tokenizer: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const vocab = this.#impl.get_vocab(true);
    let size = 0;
    for (const id of vocab.values()) size = Math.max(size, id + 1);
    this.vocabSize = size;
    const special: ChatSpecialTokens = {};
    for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"] as const) {
      const s = tokenString(files.config[key]);
      if (s !== undefined) special[key] = s;
    }
    const idOf = (s: string | undefined) => s === undefined ? undefined : this.#impl.token_to_id(s);
    const eos = idOf(special.eos_token) ?? hints.eosId;
    if (eos === undefined) {
      throw new TokenizerFormatError(
        file,
        "no EOS token: set eos_token in tokenizer_config.json or eos_token_id in config.json",
      );
    }
    this.eosId = eos;
    const bos = idOf(special.bos_token) ?? hints.bosId;
    // Models without BOS (Qwen) separate documents with EOS, as llama.cpp's converter records.
    this.bosId = bos ?? eos;
    const plain = this.#encode("a", false);
    const marked = this.#encode("a", true);
    this.addBos = bos !== undefined && marked[0] === bos && plain[0] !== bos;
    this.addEos = marked.at(-1) === eos && plain.at(-1) !== eos;
    const template = files.chatTemplate ?? chatTemplateSource(files.config);
    this.chat = template === undefined ? undefined : new JinjaChatTemplate(template, special, file);
  }

  #encode(text: string, special: boolean): number[] {
    return this.#impl.encode(text, { add_special_tokens: special }).ids;
  }

  /** Encodes text without BOS/EOS (added tokens in the text still match, as in transformers). */
  encode(text: string): number[] {
    return this.#encode(text, false);
  }

  /** Encodes text as transformers does with `add_special_tokens=True`. */
  encodeWithSpecialTokens(text: string): number[] {
    return this.#encode(text, true);
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return "";
    return this.#impl.decode([...ids], { skip_special_tokens: true });
  }

  /** The id of a token string, if the vocabulary has it. */
  tokenToId(token: string): number | undefined {
    return this.#impl.token_to_id(token);
  }

  /**
   * The vocabulary in GGUF terms, for BPE tokenizers: byte-level ones become `gpt2` vocabularies
   * with their merges; byte-fallback ones (SentencePiece converted to BPE) become `llama`
   * vocabularies scored by rank. Other models (Unigram, WordPiece) have none.
   */
  get vocab(): Vocabulary | undefined {
    if (this.#vocab === null) this.#vocab = this.#toVocabulary();
    return this.#vocab;
  }

  #toVocabulary(): Vocabulary | undefined {
    const model = this.files.tokenizer.model;
    if (!isObject(model) || model.type !== "BPE") return undefined;
    const tokens: string[] = new Array(this.vocabSize).fill("");
    for (const [token, id] of this.#impl.get_vocab(true)) tokens[id] = token;
    const tokenTypes = tokens.map(() => 1);
    for (const [id, added] of this.#impl.get_added_tokens_decoder()) {
      tokenTypes[id] = added.special ? 3 : 4;
    }
    const byteLevel = JSON.stringify(this.files.tokenizer.pre_tokenizer ?? null).includes(
      '"ByteLevel"',
    );
    const merges = Array.isArray(model.merges)
      ? model.merges.map((m) => Array.isArray(m) ? m.join(" ") : String(m))
      : [];
    const common = {
      tokens,
      tokenTypes,
      bosId: this.bosId,
      eosId: this.eosId,
      addBos: this.addBos,
      addEos: this.addEos,
      chatTemplate: this.chat?.source,
    };
    if (byteLevel) {
      const pre = JSON.stringify(this.files.tokenizer.pre_tokenizer).includes(
          JSON.stringify(QWEN2_PATTERN),
        )
        ? "qwen2"
        : "gpt-2";
      return { model: "gpt2", pre, merges, ...common };
    }
    if (model.byte_fallback !== true) return undefined;
    const unk = typeof model.unk_token === "string"
      ? this.#impl.token_to_id(model.unk_token)
      : undefined;
    tokens.forEach((t, i) => {
      if (/^<0x[0-9A-F]{2}>$/.test(t)) tokenTypes[i] = 6;
    });
    if (unk !== undefined) tokenTypes[unk] = 2;
    // SentencePiece merges the best-scored piece first; a BPE vocabulary is in merge order.
    return { model: "llama", scores: tokens.map((_, i) => -i), unknownId: unk, ...common };
  }
}

function chatTemplateSource(config: Record<string, unknown>): string | undefined {
  const t = config.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    // Several named templates: transformers uses "default" unless asked for another.
    const entry = t.find((e) => isObject(e) && e.name === "default") ?? t[0];
    if (isObject(entry) && typeof entry.template === "string") return entry.template;
  }
  return undefined;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ModelIoError(path, `cannot read: ${(e as Error).message}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TokenizerFormatError(path, `not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (!isObject(json)) throw new TokenizerFormatError(path, "not a JSON object");
  return json;
}

/**
 * Loads the tokenizer of a Hugging Face model folder (`tokenizer.json`, optional
 * `tokenizer_config.json` and `chat_template.jinja`).
 */
export async function loadHfTokenizer(dir: string, hints?: SpecialIdHints): Promise<HfTokenizer> {
  const path = join(dir, "tokenizer.json");
  if (!existsSync(path)) {
    if (existsSync(join(dir, "tokenizer.model"))) {
      throw new UnsupportedModelError(
        join(dir, "tokenizer.model"),
        "only a SentencePiece tokenizer.model is present; quantbench reads tokenizer.json " +
          "(save one with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))",
      );
    }
    throw new MissingTokenizerError(dir, "no tokenizer.json in the model folder");
  }
  const tokenizer = await readJson(path);
  const configPath = join(dir, "tokenizer_config.json");
  const config = existsSync(configPath) ? await readJson(configPath) : {};
  const jinjaPath = join(dir, "chat_template.jinja");
  const files: HfTokenizerFiles = { tokenizer, config };
  if (existsSync(jinjaPath)) files.chatTemplate = await Deno.readTextFile(jinjaPath);
  try {
    return new HfTokenizer(files, path, hints);
  } catch (e) {
    if (e instanceof ModelFileError) throw e;
    throw new TokenizerFormatError(path, `cannot use the tokenizer: ${(e as Error).message}`, {
      cause: e,
    });
  }
}
