/**
 * Tokenizers embedded in GGUF files (`tokenizer.ggml.*`), encoding as llama.cpp does
 * (`llama-vocab.cpp`) with special tokens not parsed:
 *
 * - `llama` (SentencePiece): spaces become `▁`, a space is prefixed to text at the start and
 *   after a special token (`add_space_prefix`), adjacent pieces merge best-score first (ties: the
 *   leftmost pair), and characters missing from the vocabulary fall back to `<0xAB>` byte pieces;
 * - `gpt2` (byte-level BPE): text is split by the pre-tokenizer's regex (`gpt-2`, `qwen2`,
 *   `llama-bpe`), each piece's UTF-8 bytes are mapped to GPT-2's printable characters, and pairs
 *   merge lowest merge rank first.
 *
 * User-defined tokens (type 4) are matched in the text before either algorithm runs, as llama.cpp
 * always does; control tokens are not.
 *
 * @module
 */
import type { GgufFile } from "./gguf/reader.ts";
import type { ChatTemplate, Tokenizer, Vocabulary } from "../../core/model.ts";
import { JinjaChatTemplate } from "./chat.ts";
import { MissingTokenizerError, TokenizerFormatError, UnsupportedModelError } from "./errors.ts";

/** GGUF token types (`llama_token_type`). */
export const TOKEN_TYPE = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

/** Unicode White_Space, the class llama.cpp's `\s` stands for. */
const WS =
  "\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const CONTRACTIONS_CI = "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]";

/** Pre-tokenizer regexes by `tokenizer.ggml.pre` (llama.cpp `llama_vocab_pre_type`). */
const PRE_TOKENIZERS: Readonly<Record<string, string>> = {
  "gpt-2":
    `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
  "qwen2":
    `(?:${CONTRACTIONS_CI})|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*|[${WS}]*[\\r\\n]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
  "llama-bpe":
    `(?:${CONTRACTIONS_CI})|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*|[${WS}]*[\\r\\n]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
};

/** Aliases llama.cpp maps to the same pre-tokenizer. */
const PRE_ALIASES: Readonly<Record<string, string>> = {
  "llama3": "llama-bpe",
  "smaug-bpe": "llama-bpe",
  "deepseek-r1-qwen": "qwen2",
};

/** Reads the `tokenizer.ggml.*` metadata of a GGUF file into a {@linkcode Vocabulary}. */
export function ggufVocabulary(gguf: GgufFile): Vocabulary {
  const file = gguf.path;
  if (!gguf.metadata.has("tokenizer.ggml.model")) {
    throw new MissingTokenizerError(file, "no tokenizer.ggml.model in the metadata");
  }
  const model = gguf.getString("tokenizer.ggml.model");
  if (model !== "llama" && model !== "gpt2") {
    throw new UnsupportedModelError(
      file,
      `tokenizer model "${model}" is not supported (llama, gpt2)`,
    );
  }
  if (!gguf.metadata.has("tokenizer.ggml.tokens")) {
    throw new MissingTokenizerError(file, "no tokenizer.ggml.tokens in the metadata");
  }
  const tokens = gguf.getStringArray("tokenizer.ggml.tokens");
  const n = tokens.length;
  if (n === 0) throw new TokenizerFormatError(file, "tokenizer.ggml.tokens is empty");
  const optionalArray = (key: string): number[] | undefined => {
    if (!gguf.metadata.has(key)) return undefined;
    const values = gguf.getNumberArray(key);
    if (values.length !== n) {
      throw new TokenizerFormatError(file, `${key} has ${values.length} entries for ${n} tokens`);
    }
    return values;
  };
  const scores = optionalArray("tokenizer.ggml.scores");
  const tokenTypes = optionalArray("tokenizer.ggml.token_type") ?? tokens.map(() => 1);
  const id = (key: string, fallback: number | undefined): number | undefined => {
    if (!gguf.metadata.has(key)) return fallback;
    const v = gguf.getNumber(key);
    // llama.cpp writes 0xFFFFFFFF (−1 as uint32) for "none".
    return Number.isInteger(v) && v >= 0 && v < n ? v : undefined;
  };
  const vocab: Vocabulary = {
    model,
    tokens,
    tokenTypes,
    bosId: id("tokenizer.ggml.bos_token_id", model === "llama" ? 1 : undefined),
    eosId: id("tokenizer.ggml.eos_token_id", model === "llama" ? 2 : undefined),
    unknownId: id("tokenizer.ggml.unknown_token_id", model === "llama" ? 0 : undefined),
    paddingId: id("tokenizer.ggml.padding_token_id", undefined),
    addBos: gguf.getBoolean("tokenizer.ggml.add_bos_token", model === "llama"),
    addEos: gguf.getBoolean("tokenizer.ggml.add_eos_token", false),
    addSpacePrefix: gguf.getBoolean("tokenizer.ggml.add_space_prefix", model === "llama"),
  };
  if (scores !== undefined) vocab.scores = scores;
  if (model === "gpt2") {
    if (!gguf.metadata.has("tokenizer.ggml.merges")) {
      throw new MissingTokenizerError(file, "a gpt2 tokenizer needs tokenizer.ggml.merges");
    }
    vocab.merges = gguf.getStringArray("tokenizer.ggml.merges");
    vocab.pre = gguf.getString("tokenizer.ggml.pre", "default");
  }
  if (gguf.metadata.has("tokenizer.chat_template")) {
    vocab.chatTemplate = gguf.getString("tokenizer.chat_template");
  }
  return vocab;
}

/** Builds the tokenizer a GGUF file embeds. */
export function ggufTokenizer(gguf: GgufFile): Tokenizer {
  return tokenizerFromVocabulary(ggufVocabulary(gguf), gguf.path);
}

/** Builds a tokenizer from a vocabulary; `file` names its source in errors. */
export function tokenizerFromVocabulary(vocab: Vocabulary, file: string): Tokenizer {
  if (vocab.tokenTypes.length !== vocab.tokens.length) {
    throw new TokenizerFormatError(
      file,
      `${vocab.tokenTypes.length} token types for ${vocab.tokens.length} tokens`,
    );
  }
  return vocab.model === "llama" ? new SpmTokenizer(vocab, file) : new Gpt2Tokenizer(vocab, file);
}

/** Splits text at user-defined tokens: strings stay text, numbers are token ids. */
function partition(text: string, special: readonly [string, number][]): (string | number)[] {
  let parts: (string | number)[] = [text];
  for (const [content, id] of special) {
    const next: (string | number)[] = [];
    for (const part of parts) {
      if (typeof part === "number" || !part.includes(content)) {
        next.push(part);
        continue;
      }
      const pieces = part.split(content);
      pieces.forEach((p, i) => {
        if (i > 0) next.push(id);
        if (p.length > 0) next.push(p);
      });
    }
    parts = next;
  }
  return parts;
}

/** Base of both GGUF tokenizers: ids, special tokens, chat template. */
abstract class GgufTokenizerBase implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly chat: ChatTemplate | undefined;
  protected readonly lookup = new Map<string, number>();
  /** User-defined tokens, longest first, as llama.cpp partitions them. */
  protected readonly userDefined: [string, number][];

  constructor(readonly vocab: Vocabulary, readonly file: string) {
    const { tokens } = vocab;
    this.vocabSize = tokens.length;
    tokens.forEach((t, i) => {
      if (!this.lookup.has(t)) this.lookup.set(t, i);
    });
    const eos = vocab.eosId ?? this.lookup.get("<|endoftext|>");
    if (eos === undefined || eos < 0 || eos >= tokens.length) {
      throw new TokenizerFormatError(file, `no valid EOS token id (got ${vocab.eosId})`);
    }
    this.eosId = eos;
    const bos = vocab.bosId ?? eos;
    if (bos < 0 || bos >= tokens.length) {
      throw new TokenizerFormatError(file, `BOS token id ${bos} is outside the vocabulary`);
    }
    this.bosId = bos;
    this.addBos = vocab.addBos ?? false;
    this.addEos = vocab.addEos ?? false;
    this.userDefined = tokens
      .map((t, i) => [t, i] as [string, number])
      .filter(([t, i]) => vocab.tokenTypes[i] === TOKEN_TYPE.userDefined && t.length > 0)
      .sort((a, b) => b[0].length - a[0].length);
    this.chat = vocab.chatTemplate === undefined ? undefined : new JinjaChatTemplate(
      vocab.chatTemplate,
      { bos_token: tokens[bos], eos_token: tokens[eos] },
      file,
    );
  }

  abstract encode(text: string): number[];
  abstract decode(ids: readonly number[]): string;

  protected isControl(id: number): boolean {
    const type = this.vocab.tokenTypes[id];
    return type === TOKEN_TYPE.control || type === TOKEN_TYPE.unknown ||
      type === TOKEN_TYPE.unused;
  }

  protected checkId(id: number): void {
    if (!(Number.isInteger(id) && id >= 0 && id < this.vocabSize)) {
      throw new RangeError(`Token id ${id} is outside the vocabulary of ${this.vocabSize}`);
    }
  }
}

/** A candidate merge of the symbols at `left` and `right`. */
interface Bigram {
  left: number;
  right: number;
  /** Higher merges first (SentencePiece score, or minus the BPE rank). */
  priority: number;
  /** Combined length when queued, to detect stale entries. */
  size: number;
}

/** Max-heap on priority, then the leftmost pair. */
class BigramQueue {
  readonly #items: Bigram[] = [];

  get size(): number {
    return this.#items.length;
  }

  #before(a: Bigram, b: Bigram): boolean {
    return a.priority > b.priority || (a.priority === b.priority && a.left < b.left);
  }

  push(item: Bigram): void {
    const items = this.#items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): Bigram {
    const items = this.#items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      for (let i = 0;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && this.#before(items[l]!, items[best]!)) best = l;
        if (r < items.length && this.#before(items[r]!, items[best]!)) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best]!, items[i]!];
        i = best;
      }
    }
    return top;
  }
}

/**
 * Merges adjacent symbols (strings) while `priority` gives a value for the joined pair, the
 * highest first; returns the final symbols in order.
 */
function mergeSymbols(
  symbols: string[],
  priority: (left: string, right: string) => number | undefined,
): string[] {
  const n = symbols.length;
  const text = symbols.slice();
  const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
  const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
  const queue = new BigramQueue();
  const consider = (left: number, right: number) => {
    if (left < 0 || right < 0) return;
    const p = priority(text[left]!, text[right]!);
    if (p !== undefined) {
      queue.push({ left, right, priority: p, size: text[left]!.length + text[right]!.length });
    }
  };
  for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
  while (queue.size > 0) {
    const { left, right, size } = queue.pop();
    // Stale: one side was merged away or grew since the pair was queued.
    const l = text[left]!;
    const r = text[right]!;
    if (l.length === 0 || r.length === 0 || l.length + r.length !== size) continue;
    if (next[left] !== right) continue;
    text[left] = l + r;
    text[right] = "";
    next[left] = next[right]!;
    if (next[right]! >= 0) prev[next[right]!] = left;
    consider(prev[left]!, left);
    consider(left, next[left]!);
  }
  const out: string[] = [];
  for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]!) out.push(text[i]!);
  return out;
}

const ENCODER = new TextEncoder();

/** SentencePiece (`llama`) vocabulary, as llama.cpp's `llm_tokenizer_spm`. */
class SpmTokenizer extends GgufTokenizerBase {
  readonly #scores: readonly number[];
  readonly #byteIds: Int32Array;
  readonly #addSpacePrefix: boolean;

  constructor(vocab: Vocabulary, file: string) {
    super(vocab, file);
    this.#scores = vocab.scores ?? vocab.tokens.map(() => 0);
    this.#addSpacePrefix = vocab.addSpacePrefix ?? true;
    this.#byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      const id = this.lookup.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
      if (id !== undefined) this.#byteIds[b] = id;
    }
  }

  encode(text: string): number[] {
    const out: number[] = [];
    let prevSpecial = true;
    for (const part of text.length === 0 ? [] : partition(text, this.userDefined)) {
      if (typeof part === "number") {
        out.push(part);
        prevSpecial = true;
        continue;
      }
      const prefixed = (this.#addSpacePrefix && prevSpecial ? " " : "") + part;
      this.#encodePiece(prefixed.replaceAll(" ", "▁"), out);
      prevSpecial = false;
    }
    return out;
  }

  #encodePiece(text: string, out: number[]): void {
    const merged = mergeSymbols([...text], (l, r) => {
      const id = this.lookup.get(l + r);
      return id === undefined ? undefined : this.#scores[id];
    });
    for (const symbol of merged) {
      const id = this.lookup.get(symbol);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      for (const byte of ENCODER.encode(symbol)) {
        const byteId = this.#byteIds[byte]!;
        if (byteId >= 0) out.push(byteId);
        else if (this.vocab.unknownId !== undefined) out.push(this.vocab.unknownId);
      }
    }
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    let first = true;
    for (const id of ids) {
      this.checkId(id);
      if (this.isControl(id)) continue;
      const type = this.vocab.tokenTypes[id];
      const token = this.vocab.tokens[id]!;
      if (type === TOKEN_TYPE.byte) {
        bytes.push(parseInt(token.slice(3, 5), 16));
      } else {
        let piece = type === TOKEN_TYPE.userDefined ? token : token.replaceAll("▁", " ");
        if (first && this.#addSpacePrefix && piece.startsWith(" ")) piece = piece.slice(1);
        bytes.push(...ENCODER.encode(piece));
      }
      first = false;
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  }
}

/** GPT-2's map from bytes to printable characters (`bytes_to_unicode`). */
function byteToUnicode(): string[] {
  const map: string[] = new Array(256);
  let extra = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    map[b] = String.fromCodePoint(printable ? b : extra++);
  }
  return map;
}

const BYTE_TO_UNICODE = byteToUnicode();
const UNICODE_TO_BYTE = new Map(BYTE_TO_UNICODE.map((c, b) => [c, b]));

/** Byte-level BPE (`gpt2`) vocabulary, as llama.cpp's `llm_tokenizer_bpe`. */
class Gpt2Tokenizer extends GgufTokenizerBase {
  readonly #ranks = new Map<string, number>();
  readonly #split: RegExp;
  /** llama-bpe keeps a whole pre-token that is in the vocabulary (`ignore_merges`). */
  readonly #ignoreMerges: boolean;

  constructor(vocab: Vocabulary, file: string) {
    super(vocab, file);
    const pre = PRE_ALIASES[vocab.pre ?? ""] ?? vocab.pre ?? "";
    const pattern = PRE_TOKENIZERS[pre];
    if (pattern === undefined) {
      throw new UnsupportedModelError(
        file,
        `tokenizer.ggml.pre "${vocab.pre}" is not supported ` +
          `(${[...Object.keys(PRE_TOKENIZERS), ...Object.keys(PRE_ALIASES)].join(", ")})`,
      );
    }
    this.#split = new RegExp(pattern, "gu");
    this.#ignoreMerges = pre === "llama-bpe";
    (vocab.merges ?? []).forEach((m, rank) => {
      const space = m.indexOf(" ", 1);
      if (space < 0) {
        throw new TokenizerFormatError(file, `merge ${rank} ${JSON.stringify(m)} has no space`);
      }
      const key = m.slice(0, space) + " " + m.slice(space + 1);
      if (!this.#ranks.has(key)) this.#ranks.set(key, rank);
    });
  }

  encode(text: string): number[] {
    const out: number[] = [];
    for (const part of text.length === 0 ? [] : partition(text, this.userDefined)) {
      if (typeof part === "number") {
        out.push(part);
        continue;
      }
      let last = 0;
      for (const m of part.matchAll(this.#split)) {
        // Every character matches some alternative; a gap would still be encoded.
        if (m.index > last) this.#encodeWord(part.slice(last, m.index), out);
        this.#encodeWord(m[0], out);
        last = m.index + m[0].length;
      }
      if (last < part.length) this.#encodeWord(part.slice(last), out);
    }
    return out;
  }

  #encodeWord(word: string, out: number[]): void {
    const mapped = [...ENCODER.encode(word)].map((b) => BYTE_TO_UNICODE[b]!);
    if (this.#ignoreMerges) {
      const whole = this.lookup.get(mapped.join(""));
      if (whole !== undefined) {
        out.push(whole);
        return;
      }
    }
    const merged = mergeSymbols(mapped, (l, r) => {
      const rank = this.#ranks.get(l + " " + r);
      return rank === undefined ? undefined : -rank;
    });
    for (const symbol of merged) {
      const id = this.lookup.get(symbol);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      for (const ch of symbol) {
        const single = this.lookup.get(ch);
        if (single !== undefined) out.push(single);
      }
    }
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      this.checkId(id);
      if (this.isControl(id)) continue;
      const token = this.vocab.tokens[id]!;
      if (this.vocab.tokenTypes[id] === TOKEN_TYPE.userDefined) {
        bytes.push(...ENCODER.encode(token));
        continue;
      }
      for (const ch of token) {
        const b = UNICODE_TO_BYTE.get(ch);
        if (b !== undefined) bytes.push(b);
        else bytes.push(...ENCODER.encode(ch));
      }
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  }
}
