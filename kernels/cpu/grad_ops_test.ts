import assert from "node:assert/strict";
import { ropeInverseFrequencies } from "../../core/rope.ts";
import { dot, gradError, randomValues } from "./grad_check.ts";
import {
  attentionBackward,
  attentionForward,
  crossEntropy,
  embeddingBackward,
  embeddingForward,
  klToTeacher,
  linearBackward,
  linearForward,
  rmsnormBackward,
  rmsnormForward,
  ropeApply,
  ropeRotation,
  swigluBackward,
  swigluForward,
} from "./grad_ops.ts";
import { attention, rope } from "./ops.ts";

/** Finite differences agree with these gradients to this relative error (float64, h = 1e-5). */
const TOLERANCE = 1e-6;

function assertGrad(
  what: string,
  f: () => number,
  x: Float64Array,
  analytic: ArrayLike<number>,
): void {
  const { relative, checked } = gradError(f, x, analytic);
  assert.ok(checked === x.length && relative < TOLERANCE, `${what}: relative error ${relative}`);
}

Deno.test("rmsnorm's gradients w.r.t. input and weight match finite differences", () => {
  const x = randomValues(3 * 8, 1);
  const w = randomValues(8, 2, 0.5, 1);
  const r = randomValues(3 * 8, 3);
  const loss = () => dot(rmsnormForward(x, w, 1e-5).y, r);
  const { inv } = rmsnormForward(x, w, 1e-5);
  const dw = new Float64Array(8);
  const dx = rmsnormBackward(r, x, w, inv, dw);
  assertGrad("dx", loss, x, dx);
  assertGrad("dweight", loss, w, dw);
});

Deno.test("linear's gradients w.r.t. input, weight and bias match finite differences", () => {
  const x = randomValues(3 * 5, 4);
  const w = randomValues(4 * 5, 5);
  const b = randomValues(4, 6);
  const r = randomValues(3 * 4, 7);
  const loss = () => dot(linearForward(x, w, 4, 5, b), r);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(4);
  const dx = linearBackward(r, x, w, 4, 5, dw, db);
  assertGrad("dx", loss, x, dx);
  assertGrad("dw", loss, w, dw);
  assertGrad("dbias", loss, b, db);
});

for (const style of ["interleaved", "half"] as const) {
  Deno.test(`RoPE (${style}) matches ops.ts and its gradient is the inverse rotation`, () => {
    const [heads, headDim, T] = [2, 8, 5];
    const invFreq = ropeInverseFrequencies({ headDim, ropeTheta: 10 });
    const rotation = ropeRotation(T, invFreq);
    const x = randomValues(T * heads * headDim, 8);
    const y = ropeApply(x, heads, headDim, style, rotation);
    const f32 = Float32Array.from(x);
    rope(f32, heads, headDim, 0, 10, style, invFreq);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(f32[i]! - y[i]!) < 1e-6);
    const back = ropeApply(y, heads, headDim, style, rotation, true);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(back[i]! - x[i]!) < 1e-12);
    const r = randomValues(x.length, 9);
    const loss = () => dot(ropeApply(x, heads, headDim, style, rotation), r);
    assertGrad("dx", loss, x, ropeApply(r, heads, headDim, style, rotation, true));
  });
}

Deno.test("causal GQA attention matches ops.ts and its gradients match finite differences", () => {
  const shape = { nHeads: 4, nKvHeads: 2, headDim: 3 };
  const T = 4;
  const q = randomValues(T * 12, 10);
  const k = randomValues(T * 6, 11);
  const v = randomValues(T * 6, 12);
  const { out, p } = attentionForward(q, k, v, shape);
  const f32 = new Float32Array(q.length);
  attention(f32, Float32Array.from(q), Float32Array.from(k), Float32Array.from(v), 0, 4, 2, 3);
  for (let i = 0; i < out.length; i++) assert.ok(Math.abs(f32[i]! - out[i]!) < 1e-6);
  const r = randomValues(out.length, 13);
  const loss = () => dot(attentionForward(q, k, v, shape).out, r);
  const { dq, dk, dv } = attentionBackward(r, q, k, v, p, shape);
  assertGrad("dq", loss, q, dq);
  assertGrad("dk", loss, k, dk);
  assertGrad("dv", loss, v, dv);
});

Deno.test("SwiGLU's gradients match finite differences", () => {
  const gate = randomValues(12, 14, 3);
  const up = randomValues(12, 15);
  const r = randomValues(12, 16);
  const loss = () => dot(swigluForward(gate, up), r);
  const { dgate, dup } = swigluBackward(r, gate, up);
  assertGrad("dgate", loss, gate, dgate);
  assertGrad("dup", loss, up, dup);
});

Deno.test("the embedding's gradient scatter-adds rows, repeated tokens summed", () => {
  const table = randomValues(6 * 4, 17);
  const tokens = [3, 1, 3, 5];
  const r = randomValues(tokens.length * 4, 18);
  const dtable = new Float64Array(table.length);
  embeddingBackward(r, 4, tokens, dtable);
  assertGrad("dtable", () => dot(embeddingForward(table, 4, tokens), r), table, dtable);
  assert.throws(() => embeddingForward(table, 4, [6]), /Token id 6 is out of range/);
});

Deno.test("cross-entropy's gradient matches finite differences; negative targets are ignored", () => {
  const logits = randomValues(4 * 7, 19, 3);
  const targets = [2, -1, 6, 0];
  const { loss, dlogits } = crossEntropy(logits, 7, targets);
  assertGrad("dlogits", () => crossEntropy(logits, 7, targets).loss, logits, dlogits);
  for (let i = 7; i < 14; i++) assert.equal(dlogits[i], 0);
  // By hand: the mean of −log softmax over the three rows with targets.
  let expected = 0;
  for (const t of [0, 2, 3]) {
    const row = logits.subarray(t * 7, t * 7 + 7);
    expected += Math.log(row.reduce((s, v) => s + Math.exp(v), 0)) - row[targets[t]!]!;
  }
  assert.ok(Math.abs(loss - expected / 3) < 1e-12);
});

Deno.test("KL to a teacher is zero at the teacher and its gradient matches finite differences", () => {
  const logits = randomValues(3 * 5, 20, 2);
  const teacher = randomValues(3 * 5, 21, 2);
  const { loss, dlogits } = klToTeacher(logits, teacher, 5);
  assert.ok(loss > 0);
  assertGrad("dlogits", () => klToTeacher(logits, teacher, 5).loss, logits, dlogits);
  // Shifting a row of logits changes no distribution.
  const same = klToTeacher(teacher.map((v, i) => v + Math.floor(i / 5)), teacher, 5);
  assert.ok(Math.abs(same.loss) < 1e-12);
  assert.ok(same.dlogits.every((g) => Math.abs(g) < 1e-12));
});
