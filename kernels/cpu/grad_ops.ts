/**
 * The decoder's operations in float64 with their vector-Jacobian products, for the backward pass
 * (`backward.ts`). Each forward function returns its output and what its backward needs; each
 * backward function takes the gradient of the loss w.r.t. the output (`dy`) and returns, or adds
 * into given arrays, the gradients w.r.t. the inputs and parameters. Matrices are row-major
 * `Float64Array`s; activations hold `T` rows.
 *
 * The forward semantics are those of `core/graph.ts` (and `ops.ts`), in float64 so that the
 * gradients can be checked against central finite differences to ~1e-8.
 *
 * @module
 */

/** Thrown when an operation is given arrays of inconsistent sizes. */
export class GradShapeError extends RangeError {
  override name = "GradShapeError";
}

/** RMSNorm of each `weight.length`-row: `y = x · r · weight`, `r = 1 / sqrt(mean(x²) + eps)`. */
export function rmsnormForward(
  x: Float64Array,
  weight: Float64Array,
  eps: number,
): { y: Float64Array; inv: Float64Array } {
  const dim = weight.length;
  const rows = x.length / dim;
  const y = new Float64Array(x.length);
  const inv = new Float64Array(rows);
  for (let t = 0; t < rows; t++) {
    const base = t * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[base + i]! * x[base + i]!;
    const r = 1 / Math.sqrt(ss / dim + eps);
    inv[t] = r;
    for (let i = 0; i < dim; i++) y[base + i] = x[base + i]! * r * weight[i]!;
  }
  return { y, inv };
}

/**
 * Backward of {@linkcode rmsnormForward}: returns `dx` and adds `dweight`. With `g = dy · weight`,
 * `dx = r · g − x · r³ · Σ(g · x) / dim` and `dweight += Σ_t dy · x · r`.
 */
export function rmsnormBackward(
  dy: Float64Array,
  x: Float64Array,
  weight: Float64Array,
  inv: Float64Array,
  dweight: Float64Array,
): Float64Array {
  const dim = weight.length;
  const dx = new Float64Array(x.length);
  for (let t = 0; t < inv.length; t++) {
    const base = t * dim;
    const r = inv[t]!;
    let dot = 0;
    for (let i = 0; i < dim; i++) {
      dot += dy[base + i]! * weight[i]! * x[base + i]!;
      dweight[i]! += dy[base + i]! * x[base + i]! * r;
    }
    const k = (r * r * r * dot) / dim;
    for (let i = 0; i < dim; i++) dx[base + i] = r * weight[i]! * dy[base + i]! - k * x[base + i]!;
  }
  return dx;
}

/** `y[t][r] = Σ_c x[t][c] · w[r][c] (+ bias[r])` for a `[rows][cols]` matrix `w`. */
export function linearForward(
  x: Float64Array,
  w: Float64Array,
  rows: number,
  cols: number,
  bias?: Float64Array,
): Float64Array {
  if (w.length !== rows * cols || x.length % cols !== 0) {
    throw new GradShapeError(`Linear of ${x.length} inputs by a ${rows}×${cols} matrix`);
  }
  const T = x.length / cols;
  const y = new Float64Array(T * rows);
  for (let t = 0; t < T; t++) {
    const xb = t * cols;
    for (let r = 0; r < rows; r++) {
      const wb = r * cols;
      let s = 0;
      for (let c = 0; c < cols; c++) s += x[xb + c]! * w[wb + c]!;
      y[t * rows + r] = bias ? s + bias[r]! : s;
    }
  }
  return y;
}

/**
 * Backward of {@linkcode linearForward}: returns `dx = dy · w`, adds `dw += dyᵀ · x` and
 * `dbias += Σ_t dy` (each when given).
 */
export function linearBackward(
  dy: Float64Array,
  x: Float64Array,
  w: Float64Array,
  rows: number,
  cols: number,
  dw?: Float64Array,
  dbias?: Float64Array,
): Float64Array {
  const T = x.length / cols;
  const dx = new Float64Array(x.length);
  for (let t = 0; t < T; t++) {
    const xb = t * cols;
    for (let r = 0; r < rows; r++) {
      const g = dy[t * rows + r]!;
      if (g === 0) continue;
      const wb = r * cols;
      for (let c = 0; c < cols; c++) dx[xb + c]! += g * w[wb + c]!;
      if (dw) { for (let c = 0; c < cols; c++) dw[wb + c]! += g * x[xb + c]!; }
      if (dbias) dbias[r]! += g;
    }
  }
  return dx;
}

/** `cos` and `sin` of RoPE pair `i` at row `t`, at `t · headDim/2 + i`. */
export interface Rotation {
  cos: Float64Array;
  sin: Float64Array;
}

/** The rotation angles `t · invFreq[i]` of rows `0 .. T−1`. */
export function ropeRotation(T: number, invFreq: ArrayLike<number>): Rotation {
  const half = invFreq.length;
  const cos = new Float64Array(T * half);
  const sin = new Float64Array(T * half);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      cos[t * half + i] = Math.cos(t * invFreq[i]!);
      sin[t * half + i] = Math.sin(t * invFreq[i]!);
    }
  }
  return { cos, sin };
}

/**
 * RoPE over rows of `nHeads × headDim` (row `t` at position `t`): pair `(a, b)` becomes
 * `(a·cos − b·sin, a·sin + b·cos)`, pairs `(x[2i], x[2i+1])` (`interleaved`) or
 * `(x[i], x[i + headDim/2])` (`half`). A rotation is orthogonal, so the backward is the same
 * function with `inverse` (the angle negated) applied to `dy`.
 */
export function ropeApply(
  x: Float64Array,
  nHeads: number,
  headDim: number,
  style: "interleaved" | "half",
  rotation: Rotation,
  inverse = false,
): Float64Array {
  const width = nHeads * headDim;
  const half = headDim / 2;
  const T = x.length / width;
  const y = new Float64Array(x.length);
  const sign = inverse ? -1 : 1;
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const c = rotation.cos[t * half + i]!;
      const s = sign * rotation.sin[t * half + i]!;
      for (let h = 0; h < nHeads; h++) {
        const base = t * width + h * headDim;
        const a = style === "interleaved" ? base + 2 * i : base + i;
        const b = style === "interleaved" ? a + 1 : a + half;
        y[a] = x[a]! * c - x[b]! * s;
        y[b] = x[a]! * s + x[b]! * c;
      }
    }
  }
  return y;
}

/** Shape of causal grouped-query attention: query head `h` reads key/value head `h / group`. */
export interface AttentionShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

/**
 * Causal GQA of `T` query rows at positions `0 .. T−1` over keys and values of the same positions:
 * `out[t,h] = Σ_{s≤t} softmax_s(q[t,h] · k[s,h/g] / sqrt(headDim)) · v[s,h/g]`. Returns the
 * output and the probabilities `p[(t·nHeads + h)·T + s]` its backward needs.
 */
export function attentionForward(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  shape: AttentionShape,
): { out: Float64Array; p: Float64Array } {
  const { nHeads, nKvHeads, headDim } = shape;
  const T = q.length / (nHeads * headDim);
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const out = new Float64Array(q.length);
  const p = new Float64Array(T * nHeads * T);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const qb = (t * nHeads + h) * headDim;
      const kvOff = Math.floor(h / group) * headDim;
      const pb = (t * nHeads + h) * T;
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[qb + d]! * k[s * kvDim + kvOff + d]!;
        p[pb + s] = dot * scale;
        if (dot * scale > max) max = dot * scale;
      }
      let sum = 0;
      for (let s = 0; s <= t; s++) {
        const e = Math.exp(p[pb + s]! - max);
        p[pb + s] = e;
        sum += e;
      }
      for (let s = 0; s <= t; s++) {
        const w = p[pb + s]! / sum;
        p[pb + s] = w;
        for (let d = 0; d < headDim; d++) out[qb + d]! += w * v[s * kvDim + kvOff + d]!;
      }
    }
  }
  return { out, p };
}

/**
 * Backward of {@linkcode attentionForward}: `dp = dout · v`, `dscore = p · (dp − Σ p · dp)`,
 * `dq = dscore · k / sqrt(d)`, `dk += dscoreᵀ · q / sqrt(d)`, `dv += pᵀ · dout`, the key/value
 * gradients summed over the query heads of a group.
 */
export function attentionBackward(
  dout: Float64Array,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  p: Float64Array,
  shape: AttentionShape,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { nHeads, nKvHeads, headDim } = shape;
  const T = q.length / (nHeads * headDim);
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const dp = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const qb = (t * nHeads + h) * headDim;
      const kvOff = Math.floor(h / group) * headDim;
      const pb = (t * nHeads + h) * T;
      let dot = 0;
      for (let s = 0; s <= t; s++) {
        const vb = s * kvDim + kvOff;
        const w = p[pb + s]!;
        let g = 0;
        for (let d = 0; d < headDim; d++) {
          g += dout[qb + d]! * v[vb + d]!;
          dv[vb + d]! += w * dout[qb + d]!;
        }
        dp[s] = g;
        dot += w * g;
      }
      for (let s = 0; s <= t; s++) {
        const ds = p[pb + s]! * (dp[s]! - dot) * scale;
        const kb = s * kvDim + kvOff;
        for (let d = 0; d < headDim; d++) {
          dq[qb + d]! += ds * k[kb + d]!;
          dk[kb + d]! += ds * q[qb + d]!;
        }
      }
    }
  }
  return { dq, dk, dv };
}

/** `silu(gate) · up`, elementwise. */
export function swigluForward(gate: Float64Array, up: Float64Array): Float64Array {
  return gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
}

/**
 * Backward of {@linkcode swigluForward}: `dgate = dy · up · σ(g)·(1 + g·(1 − σ(g)))`,
 * `dup = dy · silu(g)`.
 */
export function swigluBackward(
  dy: Float64Array,
  gate: Float64Array,
  up: Float64Array,
): { dgate: Float64Array; dup: Float64Array } {
  const dgate = new Float64Array(gate.length);
  const dup = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i]!;
    const sig = 1 / (1 + Math.exp(-g));
    dgate[i] = dy[i]! * up[i]! * sig * (1 + g * (1 - sig));
    dup[i] = dy[i]! * g * sig;
  }
  return { dgate, dup };
}

/** Rows `table[id]` of a `[vocab][dim]` table for each token. */
export function embeddingForward(
  table: Float64Array,
  dim: number,
  tokens: ArrayLike<number>,
): Float64Array {
  const vocab = table.length / dim;
  const x = new Float64Array(tokens.length * dim);
  for (let t = 0; t < tokens.length; t++) {
    const id = tokens[t]!;
    if (!(Number.isInteger(id) && id >= 0 && id < vocab)) {
      throw new GradShapeError(`Token id ${id} is out of range 0..${vocab - 1}`);
    }
    x.set(table.subarray(id * dim, (id + 1) * dim), t * dim);
  }
  return x;
}

/** Backward of {@linkcode embeddingForward}: `dtable[id] += dx[t]` (scatter-add). */
export function embeddingBackward(
  dx: Float64Array,
  dim: number,
  tokens: ArrayLike<number>,
  dtable: Float64Array,
): void {
  for (let t = 0; t < tokens.length; t++) {
    const base = tokens[t]! * dim;
    for (let i = 0; i < dim; i++) dtable[base + i]! += dx[t * dim + i]!;
  }
}

/** Log-softmax of each `vocab`-row. */
function logSoftmax(logits: Float64Array, vocab: number): Float64Array {
  const out = new Float64Array(logits.length);
  for (let base = 0; base < logits.length; base += vocab) {
    let max = -Infinity;
    for (let i = 0; i < vocab; i++) max = Math.max(max, logits[base + i]!);
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(logits[base + i]! - max);
    const lse = max + Math.log(sum);
    for (let i = 0; i < vocab; i++) out[base + i] = logits[base + i]! - lse;
  }
  return out;
}

/** A loss's value and its gradient w.r.t. the logits. */
export interface LossGrad {
  loss: number;
  dlogits: Float64Array;
}

/**
 * Mean cross-entropy `−log softmax(logits[t])[targets[t]]` over the rows whose target is not
 * negative (a negative target ignores its row); `dlogits = (softmax − onehot) / N`.
 */
export function crossEntropy(
  logits: Float64Array,
  vocab: number,
  targets: ArrayLike<number>,
): LossGrad {
  const rows = logits.length / vocab;
  if (targets.length !== rows) {
    throw new GradShapeError(`${targets.length} targets for ${rows} rows of logits`);
  }
  const logp = logSoftmax(logits, vocab);
  const dlogits = new Float64Array(logits.length);
  let n = 0;
  for (let t = 0; t < rows; t++) if (targets[t]! >= 0) n++;
  if (n === 0) return { loss: 0, dlogits };
  let loss = 0;
  for (let t = 0; t < rows; t++) {
    const target = targets[t]!;
    if (target < 0) continue;
    if (!(target < vocab)) throw new GradShapeError(`Target ${target} is out of range`);
    const base = t * vocab;
    loss -= logp[base + target]!;
    for (let i = 0; i < vocab; i++) dlogits[base + i] = Math.exp(logp[base + i]!) / n;
    dlogits[base + target]! -= 1 / n;
  }
  return { loss: loss / n, dlogits };
}

/**
 * Mean over rows of `KL(teacher ‖ student) = Σ p_teacher · (log p_teacher − log p_student)`,
 * both distributions the softmax of their logits; `dlogits = (p_student − p_teacher) / rows`.
 */
export function klToTeacher(
  logits: Float64Array,
  teacher: ArrayLike<number>,
  vocab: number,
): LossGrad {
  if (teacher.length !== logits.length) {
    throw new GradShapeError(`Teacher logits ${teacher.length} for ${logits.length} logits`);
  }
  const rows = logits.length / vocab;
  const logp = logSoftmax(logits, vocab);
  const logt = logSoftmax(Float64Array.from(teacher), vocab);
  const dlogits = new Float64Array(logits.length);
  let loss = 0;
  for (let i = 0; i < logits.length; i++) {
    const pt = Math.exp(logt[i]!);
    loss += pt * (logt[i]! - logp[i]!);
    dlogits[i] = (Math.exp(logp[i]!) - pt) / rows;
  }
  return { loss: loss / rows, dlogits };
}
