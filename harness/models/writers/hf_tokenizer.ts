/**
 * Hugging Face `tokenizer.json` + `tokenizer_config.json` for a GGUF-style
 * {@linkcode Vocabulary}, in the layouts transformers' own converters write:
 *
 * - `llama` (SentencePiece) becomes the Llama-2 layout: a BPE model with byte fallback whose merges
 *   are derived from the piece scores (every split of a piece into two pieces of the vocabulary,
 *   ordered by the piece's score, as `SentencePieceExtractor` does), a `Prepend("▁")` +
 *   `Replace(" ", "▁")` normalizer, and a decoder that undoes them;
 * - `gpt2` (byte-level BPE) becomes a BPE model with the merges and a ByteLevel pre-tokenizer, or
 *   the regex `Split` + ByteLevel pair for `qwen2` and `llama-bpe`.
 *
 * Control tokens become special added tokens and user-defined ones plain added tokens.
 *
 * @module
 */
import type { Vocabulary } from "../../../core/model.ts";
import type { HfTokenizerFiles } from "../tokenizer_hf.ts";
import { TOKEN_TYPE } from "../tokenizer_gguf.ts";
import { UnsupportedModelError } from "../errors.ts";

/** Split patterns of the regex pre-tokenizers, as their `tokenizer.json` files spell them. */
const SPLIT_PATTERNS: Readonly<Record<string, string>> = {
  "qwen2":
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  "llama-bpe":
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

/** Merges of a SentencePiece vocabulary, best-scored resulting piece first. */
export function sentencePieceMerges(vocab: Vocabulary): [string, string][] {
  const ids = new Map<string, number>();
  vocab.tokens.forEach((t, i) => {
    if (!ids.has(t)) ids.set(t, i);
  });
  const scores = vocab.scores ?? vocab.tokens.map(() => 0);
  const found: { left: string; right: string; score: number; l: number; r: number }[] = [];
  vocab.tokens.forEach((piece, i) => {
    if (vocab.tokenTypes[i] !== TOKEN_TYPE.normal) return;
    const chars = [...piece];
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join("");
      const right = chars.slice(k).join("");
      const l = ids.get(left);
      const r = ids.get(right);
      if (l !== undefined && r !== undefined) found.push({ left, right, score: scores[i]!, l, r });
    }
  });
  // Best score first; within a score, by the ids of the two halves (a stable order).
  found.sort((a, b) => b.score - a.score || a.l - b.l || a.r - b.r);
  return found.map((m) => [m.left, m.right]);
}

function templateProcessor(vocab: Vocabulary): Record<string, unknown> | null {
  const bos = vocab.addBos && vocab.bosId !== undefined ? vocab.tokens[vocab.bosId] : undefined;
  const eos = vocab.addEos && vocab.eosId !== undefined ? vocab.tokens[vocab.eosId] : undefined;
  if (bos === undefined && eos === undefined) return null;
  const special = (id: string) => ({ SpecialToken: { id, type_id: 0 } });
  const seq = (id: string) => ({ Sequence: { id, type_id: 0 } });
  const wrap = (s: string) => [
    ...(bos === undefined ? [] : [special(bos)]),
    seq(s),
    ...(eos === undefined ? [] : [special(eos)]),
  ];
  const specialTokens: Record<string, unknown> = {};
  for (const [t, id] of [[bos, vocab.bosId], [eos, vocab.eosId]] as const) {
    if (t !== undefined) specialTokens[t] = { id: t, ids: [id], tokens: [t] };
  }
  return {
    type: "TemplateProcessing",
    single: wrap("A"),
    pair: [...wrap("A"), ...wrap("B")],
    special_tokens: specialTokens,
  };
}

/** The tokenizer files for a vocabulary; `file` names the source in errors. */
export function hfTokenizerFiles(vocab: Vocabulary, file: string): HfTokenizerFiles {
  const vocabMap: Record<string, number> = {};
  vocab.tokens.forEach((t, i) => {
    if (!(t in vocabMap)) vocabMap[t] = i;
  });
  const added = vocab.tokens.flatMap((content, id) => {
    const type = vocab.tokenTypes[id];
    const special = type === TOKEN_TYPE.control || type === TOKEN_TYPE.unknown;
    if (!special && type !== TOKEN_TYPE.userDefined) return [];
    return [{
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: !special,
      special,
    }];
  });
  let tokenizer: Record<string, unknown>;
  if (vocab.model === "llama") {
    const unk = vocab.unknownId === undefined ? null : vocab.tokens[vocab.unknownId];
    tokenizer = {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: {
        type: "Sequence",
        normalizers: vocab.addSpacePrefix === false
          ? [{ type: "Replace", pattern: { String: " " }, content: "▁" }]
          : [
            { type: "Prepend", prepend: "▁" },
            { type: "Replace", pattern: { String: " " }, content: "▁" },
          ],
      },
      pre_tokenizer: null,
      post_processor: templateProcessor(vocab),
      decoder: {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: "▁" }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
          ...(vocab.addSpacePrefix === false
            ? []
            : [{ type: "Strip", content: " ", start: 1, stop: 0 }]),
        ],
      },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: unk,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab: vocabMap,
        merges: sentencePieceMerges(vocab),
      },
    };
  } else {
    const pre = vocab.pre ?? "gpt-2";
    const pattern = SPLIT_PATTERNS[pre];
    if (pattern === undefined && pre !== "gpt-2") {
      throw new UnsupportedModelError(
        file,
        `pre-tokenizer "${pre}" has no tokenizer.json form here (gpt-2, qwen2, llama-bpe)`,
      );
    }
    const byteLevel = (useRegex: boolean) => ({
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: useRegex,
    });
    tokenizer = {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: pattern === undefined ? byteLevel(true) : {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: pattern }, behavior: "Isolated", invert: false },
          byteLevel(false),
        ],
      },
      post_processor: templateProcessor(vocab) ?? byteLevel(false),
      decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: pre === "llama-bpe",
        vocab: vocabMap,
        merges: (vocab.merges ?? []).map((m) => {
          const space = m.indexOf(" ", 1);
          return [m.slice(0, space), m.slice(space + 1)];
        }),
      },
    };
  }
  const config: Record<string, unknown> = {
    tokenizer_class: "PreTrainedTokenizerFast",
    clean_up_tokenization_spaces: false,
    add_bos_token: vocab.addBos ?? false,
    add_eos_token: vocab.addEos ?? false,
  };
  const name = (id: number | undefined) => id === undefined ? undefined : vocab.tokens[id];
  const specials = {
    bos_token: name(vocab.bosId),
    eos_token: name(vocab.eosId),
    unk_token: name(vocab.unknownId),
    pad_token: name(vocab.paddingId),
  };
  for (const [key, value] of Object.entries(specials)) if (value !== undefined) config[key] = value;
  if (vocab.chatTemplate !== undefined) config.chat_template = vocab.chatTemplate;
  return { tokenizer, config };
}
