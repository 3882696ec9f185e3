/**
 * A name → implementation map with helpful errors for unknown names, in the manner of
 * lm-evaluation-harness's task registry.
 *
 * @example
 * ```ts
 * const colors = new Registry<number>("color", [["red", 1], ["green", 2]]);
 * colors.get("red"); // 1
 * colors.get("reed"); // throws UnknownNameError: Unknown color "reed"; did you mean "red"? ...
 * ```
 */
export class Registry<T> {
  readonly #items = new Map<string, T>();

  /** Creates a registry for things of the given kind (used in error messages). */
  constructor(readonly kind: string, entries: Iterable<readonly [string, T]> = []) {
    for (const [name, item] of entries) this.register(name, item);
  }

  /** Adds an implementation; registering a name twice is a programming error. */
  register(name: string, item: T): void {
    if (this.#items.has(name)) throw new Error(`Duplicate ${this.kind} "${name}" in the registry`);
    this.#items.set(name, item);
  }

  /** Whether the name is registered. */
  has(name: string): boolean {
    return this.#items.has(name);
  }

  /** The implementation for a name, or an {@linkcode UnknownNameError} listing the known names. */
  get(name: string): T {
    const item = this.#items.get(name);
    if (item === undefined) throw new UnknownNameError(this.kind, name, this.names());
    return item;
  }

  /** All registered names, sorted. */
  names(): string[] {
    return [...this.#items.keys()].sort();
  }
}

/** Thrown for a name that is not in a registry; the message suggests the closest known name. */
export class UnknownNameError extends Error {
  override name = "UnknownNameError";
  /** The closest known name, when one is close enough to be a likely typo. */
  readonly suggestion: string | undefined;

  constructor(
    readonly kind: string,
    readonly unknown: string,
    readonly known: readonly string[],
  ) {
    const suggestion = didYouMean(unknown, known);
    const hint = suggestion === undefined ? "" : `; did you mean "${suggestion}"?`;
    super(`Unknown ${kind} "${unknown}"${hint} (known: ${known.join(", ")})`);
    this.suggestion = suggestion;
  }
}

/**
 * The known name closest to `name` by edit distance, if it is within a third of the name's length
 * (at least 2 edits), otherwise undefined.
 */
export function didYouMean(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const limit = Math.max(2, Math.floor(name.length / 3));
  return bestDistance <= limit ? best : undefined;
}

/** Levenshtein distance with adjacent transpositions counted as one edit. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d = new Array<number>(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(
        d[(i - 1) * cols + j]! + 1,
        d[i * cols + j - 1]! + 1,
        d[(i - 1) * cols + j - 1]! + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[(i - 2) * cols + j - 2]! + 1);
      }
      d[i * cols + j] = v;
    }
  }
  return d[rows * cols - 1]!;
}
