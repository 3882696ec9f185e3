/**
 * Row-stacking of weight matrices that read the same input (a block's q/k/v projections, its
 * gate/up pair), so that one matmul dispatch computes them all: on a GPU each dispatch of a
 * decode step costs a launch and a barrier whatever its size, and the small ones (a GQA key
 * projection is 256 × 2048 at TinyLlama's shape) are nearly all that cost.
 *
 * Stacking changes no weight: row `r` of the result is row `r − offset` of the matrix it came
 * from, decoded exactly as before. It applies only where the rows alone carry everything a row
 * decodes with: the same kind, element format, group size and per-tensor scale, and no side
 * tensors (a permutation or codebook belongs to one matrix).
 *
 * @example
 * ```ts
 * import { stackRows } from "./stack_rows.ts";
 * const a = { kind: "dense", rows: 1, cols: 2, data: Float32Array.of(1, 2) } as const;
 * const b = { kind: "dense", rows: 1, cols: 2, data: Float32Array.of(3, 4) } as const;
 * stackRows([a, b]); // { kind: "dense", rows: 2, cols: 2, data: [1, 2, 3, 4] }
 * ```
 *
 * @module
 */
import type { CodedMatrix } from "../../core/coded.ts";
import type { DenseMatrix, Matrix, QuantizedMatrix } from "../../core/model.ts";

/** Concatenates typed arrays of one kind. */
function concat<T extends Float32Array | Uint8Array>(
  parts: readonly T[],
  make: (n: number) => T,
): T {
  const out = make(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The matrices `ms` stacked by rows (same column count), or undefined where their rows do not
 * decode alike on their own (see the module doc).
 */
export function stackRows(ms: readonly Matrix[]): Matrix | undefined {
  const first = ms[0];
  if (first === undefined) return undefined;
  if (!ms.every((m) => m.kind === first.kind && m.cols === first.cols)) return undefined;
  const rows = ms.reduce((n, m) => n + m.rows, 0);
  switch (first.kind) {
    case "dense": {
      const dense = ms as readonly DenseMatrix[];
      return {
        kind: "dense",
        rows,
        cols: first.cols,
        data: concat(dense.map((m) => m.data), (n) => new Float32Array(n)),
      };
    }
    case "int": {
      const ints = ms as readonly QuantizedMatrix[];
      const alike = ints.every((m) =>
        m.sides === undefined && !m.perTensor && m.bits === first.bits &&
        m.groupSize === first.groupSize && m.symmetric === first.symmetric &&
        (m.scaleDtype ?? "f16") === (first.scaleDtype ?? "f16")
      );
      const zeros = ints.map((m) => m.zeros);
      const withZeros = zeros.filter((z) => z !== null).length;
      if (!alike || (withZeros > 0 && withZeros < zeros.length)) return undefined;
      return {
        kind: "int",
        rows,
        cols: first.cols,
        bits: first.bits,
        groupSize: first.groupSize,
        symmetric: first.symmetric,
        codes: concat(ints.map((m) => m.codes), (n) => new Uint8Array(n)),
        scales: concat(ints.map((m) => m.scales), (n) => new Float32Array(n)),
        zeros: withZeros > 0 ? concat(zeros as Uint8Array[], (n) => new Uint8Array(n)) : null,
        ...(first.scaleDtype === undefined ? {} : { scaleDtype: first.scaleDtype }),
      };
    }
    case "coded": {
      const coded = ms as readonly CodedMatrix[];
      const alike = coded.every((m) =>
        m.sides === undefined && m.codec === first.codec && m.rowBytes === first.rowBytes &&
        m.tensorScale === first.tensorScale
      );
      if (!alike) return undefined;
      return {
        kind: "coded",
        codec: first.codec,
        rows,
        cols: first.cols,
        rowBytes: first.rowBytes,
        data: concat(coded.map((m) => m.data), (n) => new Uint8Array(n)),
        tensorScale: first.tensorScale,
      };
    }
  }
}
