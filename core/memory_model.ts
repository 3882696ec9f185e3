/**
 * The memory model of `recommend`: the bytes a cell needs for its weights, its KV cache at a
 * context and batch, and an activation workspace. `runtime` counts what quantbench's CPU runtime
 * holds (weights as held in memory, a float32 KV cache — and a second, dequantized float32 copy
 * when the cell quantizes its KV cache, as `kernels/cpu/kv_cache.ts` keeps it); `deployment` counts
 * what a deployment stores (weights as stored: codes at their bits, scales, codebooks; an f16 KV
 * cache, or the KV format's bits plus one f16 scale per group).
 *
 * @module
 */
import type { ResultRow } from "./row.ts";

/** What the runner records about a cell's model (row `extra`). */
export interface CellFacts {
  /** Bytes of the weights as stored (codes at their bits, scales, codebooks). */
  weight_bytes: number;
  /** Bytes of the weights as quantbench holds them in memory (one byte per integer code). */
  weight_bytes_held: number;
  layers: number;
  kv_heads: number;
  head_dim: number;
  dim: number;
  hidden_dim: number;
  vocab: number;
  max_seq_len: number;
  kv_format: string;
  kv_group: number;
}

/** The memory one cell needs. */
export interface MemoryEstimate {
  weights: number;
  kv: number;
  workspace: number;
  total: number;
  context: number;
  batch: number;
}

/** The facts the runner recorded for a cell, from any of its rows; null when absent. */
export function cellFacts(rows: readonly ResultRow[]): CellFacts | null {
  for (const r of rows) {
    const e = r.extra;
    if (e && typeof e.weight_bytes === "number" && typeof e.arch_layers === "number") {
      const n = (k: string) => Number(e[k]);
      return {
        weight_bytes: n("weight_bytes"),
        weight_bytes_held: Number(e.weight_bytes_held ?? e.weight_bytes),
        layers: n("arch_layers"),
        kv_heads: n("arch_kv_heads"),
        head_dim: n("arch_head_dim"),
        dim: n("arch_dim"),
        hidden_dim: n("arch_hidden_dim"),
        vocab: n("arch_vocab"),
        max_seq_len: n("arch_max_seq_len"),
        kv_format: String(e.kv_format ?? "f32"),
        kv_group: n("kv_group") || 0,
      };
    }
  }
  return null;
}

const KV_BITS: Record<string, number> = { int8: 8, int4: 4, int3: 3, int2: 2, fp8: 8, fp8_e5m2: 8 };

/** KV-cache bytes of a cell at `context` tokens × `batch` sequences. */
export function kvCacheBytes(
  f: CellFacts,
  context: number,
  batch: number,
  kvModel: "runtime" | "deployment",
): number {
  const elements = 2 * f.layers * context * f.kv_heads * f.head_dim * batch;
  const quantized = f.kv_format !== "f32";
  if (kvModel === "runtime") return elements * 4 * (quantized ? 2 : 1);
  if (!quantized) return elements * 2;
  const bits = KV_BITS[f.kv_format] ?? 8;
  const group = f.kv_group > 0 ? f.kv_group : f.head_dim;
  return elements * bits / 8 + (elements / group) * 2;
}

/** The memory model of one cell (see the module doc). */
export function memoryEstimate(
  f: CellFacts,
  context: number,
  batch: number,
  kvModel: "runtime" | "deployment" = "deployment",
): MemoryEstimate {
  const kv = kvCacheBytes(f, context, batch, kvModel);
  const weights = kvModel === "runtime" ? f.weight_bytes_held : f.weight_bytes;
  const workspace = 4 * batch * (4 * f.dim + 3 * f.hidden_dim + f.vocab + context);
  return {
    weights,
    kv,
    workspace,
    total: weights + kv + workspace,
    context,
    batch,
  };
}
