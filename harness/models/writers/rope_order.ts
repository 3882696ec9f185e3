/**
 * Reorders q/k projection rows between the two RoPE pairings. Within each head of `d` rows,
 * `interleaved` rotates rows (2i, 2i+1) together (llama2.c, llama.cpp's `llama` files) and `half`
 * rotates rows (i, i + d/2) (Hugging Face checkpoints); the same model in the other pairing has
 * its rows permuted so that row `2i + j` of one is row `j·d/2 + i` of the other — the permutation
 * llama.cpp's `convert_hf_to_gguf.py` applies to q and k.
 *
 * @module
 */
import type { Matrix } from "../../../core/model.ts";

/** For each target row, the source row it takes (per head of `headDim` rows). */
function rowSources(
  nHeads: number,
  headDim: number,
  from: "interleaved" | "half",
  to: "interleaved" | "half",
): Int32Array {
  const half = headDim / 2;
  const src = new Int32Array(nHeads * headDim);
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const interleaved = h * headDim + 2 * i + j;
        const halfSplit = h * headDim + j * half + i;
        if (from === to) src[interleaved] = interleaved;
        else if (to === "half") src[halfSplit] = interleaved;
        else src[interleaved] = halfSplit;
      }
    }
  }
  return src;
}

/** `v` (length `nHeads × headDim`, e.g. a q bias) in the `to` pairing. */
export function reorderVector(
  v: Float32Array,
  nHeads: number,
  headDim: number,
  from: "interleaved" | "half",
  to: "interleaved" | "half",
): Float32Array {
  if (from === to) return v;
  const src = rowSources(nHeads, headDim, from, to);
  return Float32Array.from(src, (s) => v[s]!);
}

/** A dense, block-coded or integer-coded q/k matrix with its rows in the `to` pairing. */
export function reorderRows(
  m: Matrix,
  nHeads: number,
  headDim: number,
  from: "interleaved" | "half",
  to: "interleaved" | "half",
): Matrix {
  if (from === to) return m;
  if (m.rows !== nHeads * headDim) {
    throw new RangeError(`Matrix has ${m.rows} rows, not ${nHeads} heads × ${headDim}`);
  }
  const src = rowSources(nHeads, headDim, from, to);
  switch (m.kind) {
    case "dense": {
      const data = new Float32Array(m.data.length);
      src.forEach((s, r) => data.set(m.data.subarray(s * m.cols, (s + 1) * m.cols), r * m.cols));
      return { ...m, data };
    }
    case "coded": {
      const data = new Uint8Array(m.data.length);
      const n = m.rowBytes;
      src.forEach((s, r) => data.set(m.data.subarray(s * n, (s + 1) * n), r * n));
      return { ...m, data };
    }
    case "int": {
      // Groups run along a row, so a row takes its codes, scales and zero points with it.
      const groups = m.scales.length / m.rows;
      const codes = new Uint8Array(m.codes.length);
      const scales = new Float32Array(m.scales.length);
      const zeros = m.zeros ? new Uint8Array(m.zeros.length) : null;
      src.forEach((s, r) => {
        codes.set(m.codes.subarray(s * m.cols, (s + 1) * m.cols), r * m.cols);
        scales.set(m.scales.subarray(s * groups, (s + 1) * groups), r * groups);
        zeros?.set(m.zeros!.subarray(s * groups, (s + 1) * groups), r * groups);
      });
      return { ...m, codes, scales, zeros };
    }
  }
}
