/**
 * QuIP#'s E8P12 codebook (Tseng et al., 2024): 2^16 points of the E8 lattice shifted by ±1/4,
 * each coding 8 weights in 16 bits (2 bits per weight). It is built from its definition:
 *
 * - 256 *absolute patterns*: the 227 distinct absolute values of the points of D8 + 1/2 with
 *   squared norm ≤ 10 (coordinates in {1/2, 3/2, 5/2, 7/2}, every such vector is the absolute
 *   value of an even-sum point), in lexicographic order, then 29 fixed vectors of squared norm 12;
 * - a 16-bit code `c`: pattern `c >> 8`; sign byte `s = c & 255` with parity `p`; `s ^= p`;
 *   coordinate `i` is the pattern's value negated when bit `SLOT[i]` of `s` is set, and the last
 *   coordinate negated once more when the pattern's coordinate sum is odd; then `−1/4` is added
 *   when `p = 1`, `+1/4` when `p = 0`.
 *
 * So a codeword is `v ± 1/4` with `|v|` a pattern and an even (odd) number of negative
 * coordinates when the pattern's sum is even (odd). {@linkcode e8pNearest} finds the nearest
 * codeword from that structure (both shifts, every pattern, signs of the target, the cheapest
 * flip when the sign parity is wrong) — exactly, as `e8p_codebook_test.ts` checks against a
 * search over all 2^16 entries; the same test compares the whole table with the published one
 * (`fixtures/methods/quip_e8p12.py`, from quip-sharp's `latticee8_padded12.py`).
 *
 * The 3- and 4-bit variants are residual: a vector is coded by its nearest E8P12 codeword `c₁`,
 * then the residual times a fixed scale `ρ` by a second codebook, `v = c₁ + c₂ / ρ`
 * ({@linkcode E8P_RVQ}): for 3 bits the 8-bit E81B codebook ({@linkcode E81B_GRID}: the 241
 * points of E8 with squared norm ≤ 2 and 15 of the 16 points `±2eᵢ`, quip-sharp's
 * `latticee8_padded12_rvq3bit.py`), for 4 bits E8P12 again (`latticee8_padded12_rvq4bit.py`).
 *
 * @module
 */

/** The 29 absolute patterns of squared norm 12, times 2 (quip-sharp's order). */
const NORM12: readonly string[] = [
  "31113333",
  "13113333",
  "11313333",
  "11133333",
  "33313311",
  "33313131",
  "33311331",
  "33313113",
  "33311313",
  "33311133",
  "33133311",
  "33133131",
  "33131331",
  "33133113",
  "33131313",
  "33131133",
  "31333311",
  "31333131",
  "31331331",
  "31333113",
  "31331313",
  "13331133",
  "13333311",
  "13333131",
  "13331331",
  "13333113",
  "13331313",
  "11331333",
  "33113331",
];

/** Which bit of the sign byte negates coordinate `i`. */
const SLOT = [0, 4, 1, 5, 2, 6, 3, 7] as const;

/** Number of absolute patterns and of codewords. */
export const E8P_PATTERNS = 256;
export const E8P_CODES = 1 << 16;

/** The 256 absolute patterns (`256 × 8`, natural coordinate order). */
export const E8P_ABS: Float32Array = (() => {
  const out = new Float32Array(E8P_PATTERNS * 8);
  let n = 0;
  const v = new Array<number>(8).fill(0);
  // Coordinates 0..7, each in {1/2, 3/2, 5/2, 7/2}, lexicographic (coordinate 0 most significant).
  for (let code = 0; code < 1 << 16; code++) {
    let norm = 0;
    for (let i = 0; i < 8; i++) {
      v[i] = ((code >> (2 * (7 - i))) & 3) + 0.5;
      norm += v[i]! * v[i]!;
    }
    if (norm > 10) continue;
    out.set(v, 8 * n++);
  }
  for (const row of NORM12) {
    for (let i = 0; i < 8; i++) out[8 * n + i] = Number(row[i]) / 2;
    n++;
  }
  if (n !== E8P_PATTERNS) throw new Error(`E8P12 has ${n} absolute patterns, not 256`);
  return out;
})();

/** Whether pattern `k`'s coordinate sum is odd (its codewords have an odd number of negatives). */
const ODD: Uint8Array = Uint8Array.from({ length: E8P_PATTERNS }, (_, k) => {
  let s = 0;
  for (let i = 0; i < 8; i++) s += E8P_ABS[8 * k + i]!;
  return s % 2;
});

/** Squared norm of every pattern. */
const NORM: Float64Array = Float64Array.from({ length: E8P_PATTERNS }, (_, k) => {
  let s = 0;
  for (let i = 0; i < 8; i++) s += E8P_ABS[8 * k + i]! ** 2;
  return s;
});

/**
 * The patterns as quip-sharp packs them for its kernels (and its published table): 8 nibbles
 * `2·v + 8`, coordinates in the order 0 2 4 6 1 3 5 7, the last negated for odd sums.
 */
export const E8P_ABS_WORDS: Uint32Array = Uint32Array.from({ length: E8P_PATTERNS }, (_, k) => {
  const order = [0, 2, 4, 6, 1, 3, 5, 7];
  let word = 0;
  for (let slot = 0; slot < 8; slot++) {
    let v = E8P_ABS[8 * k + order[slot]!]!;
    if (slot === 7 && ODD[k]) v = -v;
    word += (2 * v + 8) * 2 ** (4 * slot);
  }
  return word;
});

/** Decodes codeword `code` into `out[at .. at + 8)`. */
export function e8pDecode(code: number, out: Float32Array | Float64Array, at = 0): void {
  const k = code >> 8;
  let s = code & 255;
  let p = s;
  p ^= p >> 4;
  p ^= p >> 2;
  p = (p ^ (p >> 1)) & 1;
  s ^= p;
  const shift = p ? -0.25 : 0.25;
  for (let i = 0; i < 8; i++) {
    let v = E8P_ABS[8 * k + i]!;
    if (i === 7 && ODD[k]) v = -v;
    if ((s >> SLOT[i]!) & 1) v = -v;
    out[at + i] = v + shift;
  }
}

/** The whole table, `65536 × 8` (code-major), for kernels that read it. */
export const E8P_GRID: Float32Array = (() => {
  const grid = new Float32Array(E8P_CODES * 8);
  for (let c = 0; c < E8P_CODES; c++) e8pDecode(c, grid, 8 * c);
  return grid;
})();

/** Scratch of {@linkcode e8pNearest} (it runs once per 8 weights per LDLQ pass). */
const Y = new Float64Array(8);
const AY = new Float64Array(8);

/**
 * The code of the codeword nearest to `x[at .. at + 8)` (squared distance; ties to the lower
 * pattern, then the `+1/4` shift).
 */
export function e8pNearest(x: Float32Array | Float64Array, at = 0): number {
  let best = Infinity;
  let bestCode = 0;
  const y = Y;
  const ay = AY;
  for (let p = 0; p < 2; p++) {
    const shift = p ? -0.25 : 0.25;
    let negatives = 0;
    let norm = 0;
    for (let i = 0; i < 8; i++) {
      y[i] = x[at + i]! - shift;
      ay[i] = Math.abs(y[i]!);
      norm += y[i]! * y[i]!;
      if (y[i]! < 0) negatives++;
    }
    for (let k = 0; k < E8P_PATTERNS; k++) {
      let dot = 0;
      let minTerm = Infinity;
      let minAt = 0;
      for (let i = 0; i < 8; i++) {
        const t = E8P_ABS[8 * k + i]! * ay[i]!;
        dot += t;
        if (t < minTerm) [minTerm, minAt] = [t, i];
      }
      const flip = (negatives & 1) !== ODD[k];
      const d = norm + NORM[k]! - 2 * dot + (flip ? 4 * minTerm : 0);
      if (d < best) {
        best = d;
        bestCode = encode(k, y, flip ? minAt : -1, p);
      }
    }
  }
  return bestCode;
}

/** The code of pattern `k` with the signs of `y` (coordinate `flipAt` flipped) and parity `p`. */
function encode(k: number, y: Float64Array, flipAt: number, p: number): number {
  let s = 0;
  for (let i = 0; i < 8; i++) {
    let negative = y[i]! < 0;
    if (i === flipAt) negative = !negative;
    if (i === 7 && ODD[k]) negative = !negative;
    if (negative) s |= 1 << SLOT[i]!;
  }
  return (k << 8) | (s ^ p);
}

/**
 * The E81B codebook (`256 × 8`, in quip-sharp's order): the integer points of E8 with squared norm
 * ≤ 2 (even coordinate sum) in lexicographic order, then the half-integer ones (all ±1/2, an even
 * number of −1/2), then `2eᵢ` for i = 0..7 and `−2eᵢ` for i = 0..6.
 */
export const E81B_GRID: Float32Array = (() => {
  const out = new Float32Array(256 * 8);
  let n = 0;
  const v = new Array<number>(8).fill(0);
  // Integer points: coordinates in {−1, 0, 1} (lexicographic, coordinate 0 most significant).
  for (let code = 0; code < 3 ** 8; code++) {
    let [rest, sum, norm] = [code, 0, 0];
    for (let i = 7; i >= 0; i--) {
      v[i] = (rest % 3) - 1;
      rest = Math.floor(rest / 3);
      sum += v[i]!;
      norm += v[i]! * v[i]!;
    }
    if (sum % 2 === 0 && norm <= 2) out.set(v, 8 * n++);
  }
  for (let code = 0; code < 256; code++) {
    let negatives = 0;
    for (let i = 0; i < 8; i++) {
      // A clear bit is −1/2, so that counting up is lexicographic order.
      const negative = 1 - ((code >> (7 - i)) & 1);
      negatives += negative;
      v[i] = negative ? -0.5 : 0.5;
    }
    if (negatives % 2 === 0) out.set(v, 8 * n++);
  }
  for (let i = 0; i < 15; i++) out[8 * n++ + (i % 8)] = i < 8 ? 2 : -2;
  if (n !== 256) throw new Error(`E81B has ${n} points, not 256`);
  return out;
})();

/** The index of the point of `grid` (`count × 8`) nearest to `x[at .. at + 8)` (first on ties). */
export function nearestOf(
  grid: Float32Array,
  count: number,
  x: Float32Array | Float64Array,
  at = 0,
): number {
  let best = Infinity;
  let index = 0;
  for (let k = 0; k < count; k++) {
    let d = 0;
    for (let i = 0; i < 8; i++) d += (x[at + i]! - grid[8 * k + i]!) ** 2;
    if (d < best) [best, index] = [d, k];
  }
  return index;
}

/** A residual E8P variant: its second codebook, residual scale and weight scale. */
export interface E8pRvq {
  /** The second stage's codebook: E81B (8-bit codes) or E8P12 (16-bit codes). */
  second: "e81b" | "e8p12";
  /** Bits of a second-stage code. */
  secondBits: number;
  /** The residual scale ρ (`opt_resid_scale`). */
  residScale: number;
  /** The RMS the scaled weights are given (`opt_scale`). */
  optScale: number;
}

/** The residual variants by total bits per weight (quip-sharp's `opt_*` constants). */
export const E8P_RVQ: Readonly<Record<3 | 4, E8pRvq>> = {
  3: { second: "e81b", secondBits: 8, residScale: 2.04, optScale: 0.98 },
  4: { second: "e8p12", secondBits: 16, residScale: 3.45, optScale: 1.03 },
};

/** Decodes a second-stage code of `rvq` into `out[at .. at + 8)`. */
export function secondDecode(
  rvq: E8pRvq,
  code: number,
  out: Float32Array | Float64Array,
  at = 0,
): void {
  if (rvq.second === "e8p12") e8pDecode(code, out, at);
  else for (let i = 0; i < 8; i++) out[at + i] = E81B_GRID[8 * code + i]!;
}

/** The nearest second-stage code of `rvq` to `x[at .. at + 8)`. */
export function secondNearest(rvq: E8pRvq, x: Float32Array | Float64Array, at = 0): number {
  return rvq.second === "e8p12" ? e8pNearest(x, at) : nearestOf(E81B_GRID, 256, x, at);
}
