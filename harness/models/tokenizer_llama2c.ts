/**
 * llama2.c's tokenizer (`tokenizer.bin` / `tok512.bin`): a SentencePiece-style BPE vocabulary with
 * merge scores and byte fallback, encoded exactly as llama2.c's `encode` does it.
 *
 * File: int32 max_token_length, then per token: float32 score, int32 byte length, bytes.
 *
 * @module
 */
import type { Tokenizer } from "../../core/model.ts";
import { Llama2cFormatError } from "./llama2c_error.ts";

const BOS = 1;
const EOS = 2;
/** Ids 3..258 are the byte-fallback tokens `<0x00>`..`<0xFF>`. */
const BYTE_OFFSET = 3;

/**
 * Parses a llama2.c tokenizer for a model with `vocabSize` tokens.
 *
 * @example
 * ```ts
 * const tok = loadLlama2cTokenizer(await Deno.readFile("tok512.bin"), "tok512.bin", 512);
 * tok.encode("Once upon a time"); // [ids...] (no BOS)
 * ```
 */
export function loadLlama2cTokenizer(
  bytes: Uint8Array,
  file: string,
  vocabSize: number,
): Tokenizer {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder("utf-8", { fatal: false });
  const pieces: Uint8Array[] = [];
  const scores = new Float32Array(vocabSize);
  let offset = 4;
  for (let i = 0; i < vocabSize; i++) {
    if (offset + 8 > bytes.byteLength) {
      throw new Llama2cFormatError(file, `tokenizer ends after ${i} of ${vocabSize} tokens`);
    }
    scores[i] = view.getFloat32(offset, true);
    const len = view.getInt32(offset + 4, true);
    offset += 8;
    if (len < 0 || offset + len > bytes.byteLength) {
      throw new Llama2cFormatError(file, `token ${i} has length ${len} beyond the end of the file`);
    }
    pieces.push(bytes.slice(offset, offset + len));
    offset += len;
  }
  const strings = pieces.map((p) => decoder.decode(p));
  const lookup = new Map<string, number>();
  strings.forEach((s, i) => {
    if (!lookup.has(s)) lookup.set(s, i);
  });
  return new Llama2cTokenizer(pieces, strings, scores, lookup);
}

class Llama2cTokenizer implements Tokenizer {
  readonly bosId = BOS;
  readonly eosId = EOS;
  constructor(
    readonly pieces: Uint8Array[],
    readonly strings: string[],
    readonly scores: Float32Array,
    readonly lookup: Map<string, number>,
  ) {}

  get vocabSize(): number {
    return this.pieces.length;
  }

  encode(text: string): number[] {
    if (text.length === 0) return [];
    // Dummy prefix, then one symbol per code point (byte fallback for unknown ones).
    const symbols: number[] = [];
    const space = this.lookup.get(" ");
    if (space !== undefined) symbols.push(space);
    for (const ch of text) {
      const id = this.lookup.get(ch);
      if (id !== undefined) {
        symbols.push(id);
      } else {
        for (const b of new TextEncoder().encode(ch)) symbols.push(b + BYTE_OFFSET);
      }
    }
    return this.merge(symbols);
  }

  /**
   * Repeatedly merges the adjacent pair with the highest score (leftmost on ties), as llama2.c's
   * quadratic loop does, but with a heap and a linked list so long texts stay fast.
   */
  private merge(ids: number[]): number[] {
    const n = ids.length;
    const tok = Int32Array.from(ids);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap();
    const consider = (left: number) => {
      const right = next[left]!;
      if (right < 0) return;
      const merged = this.lookup.get(this.strings[tok[left]!]! + this.strings[tok[right]!]!);
      if (merged !== undefined) heap.push(this.scores[merged]!, left, right, merged);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.size > 0) {
      const top = heap.pop();
      const { left, right, merged } = top;
      // Skip stale entries: either side changed since the pair was pushed.
      if (!alive[left] || !alive[right] || next[left] !== right) continue;
      if (this.lookup.get(this.strings[tok[left]!]! + this.strings[tok[right]!]!) !== merged) {
        continue;
      }
      tok[left] = merged;
      alive[right] = 0;
      const after = next[right]!;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      if (prev[left]! >= 0) consider(prev[left]!);
      consider(left);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0 && i < n; i = next[i]!) out.push(tok[i]!);
    return out;
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    let prev = -1;
    for (const id of ids) {
      if (id === BOS || id === EOS) {
        prev = id;
        continue;
      }
      let piece = this.pieces[id];
      if (piece === undefined) throw new RangeError(`Token id ${id} is outside the vocabulary`);
      if (prev === BOS && piece[0] === 0x20) piece = piece.subarray(1);
      const s = this.strings[id]!;
      const m = /^<0x([0-9A-F]{2})>$/.exec(s);
      if (m) bytes.push(parseInt(m[1]!, 16));
      else bytes.push(...piece);
      prev = id;
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  }
}

interface PairEntry {
  score: number;
  left: number;
  right: number;
  merged: number;
}

/** Max-heap on score, then min on left position (llama2.c keeps the first best pair it sees). */
class PairHeap {
  readonly #items: PairEntry[] = [];

  get size(): number {
    return this.#items.length;
  }

  push(score: number, left: number, right: number, merged: number): void {
    const items = this.#items;
    items.push({ score, left, right, merged });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): PairEntry {
    const items = this.#items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
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

  #before(a: PairEntry, b: PairEntry): boolean {
    return a.score > b.score || (a.score === b.score && a.left < b.left);
  }
}
