import assert from "node:assert/strict";
import { gptqWindows, llamaCppChunks, rollingWindows } from "./windows.ts";

Deno.test("windows: rolling windows match lm-evaluation-harness's documented example", () => {
  // get_rolling_token_windows docstring: tokens 0..8, prefix P, max_seq_len 3, context_len 2.
  const P = 99;
  const w = rollingWindows([0, 1, 2, 3, 4, 5, 6, 7, 8], P, 3, 2);
  // After make_disjoint_window: window 1 context [P] predicts 0 1 2; window 2 context 1 2 → 3 4; …
  assert.deepEqual(w.map((x) => x.targets), [[0, 1, 2], [3, 4], [5, 6], [7, 8]]);
  assert.deepEqual(w.map((x) => x.input), [[P, 0, 1], [1, 2, 3], [3, 4, 5], [5, 6, 7]]);
  assert.deepEqual(w.map((x) => x.offset), [0, 1, 1, 1]);
  // Row offset + k of the input predicts targets[k]: the token before a target precedes it.
  for (const x of w) {
    x.targets.forEach((t, k) => {
      if (x.offset + k > 0) assert.equal(x.input[x.offset + k], t - 1);
    });
  }
});

Deno.test("windows: rolling with context_len 1 predicts every token once in max_seq_len windows", () => {
  const tokens = Array.from({ length: 10 }, (_, i) => 10 + i);
  const w = rollingWindows(tokens, 1, 4);
  assert.deepEqual(w.flatMap((x) => x.targets), tokens);
  // As lm-evaluation-harness's functions give them (run in Python): the last window keeps a full
  // max_seq_len input and scores only its two new tokens.
  assert.deepEqual(w.map((x) => x.input), [[1, 10, 11, 12], [13, 14, 15, 16], [15, 16, 17, 18]]);
  assert.deepEqual(w.map((x) => x.offset), [0, 0, 2]);
  assert.ok(w.every((x) => x.input.length <= 4));
  assert.deepEqual(rollingWindows([], 1, 4), []);
  assert.throws(() => rollingWindows(tokens, 1, 4, 5), RangeError);
});

Deno.test("windows: gptq windows drop the tail; llama.cpp chunks put BOS first and score the 2nd half", () => {
  const ids = Array.from({ length: 11 }, (_, i) => 100 + i);
  const g = gptqWindows(ids, 4);
  assert.equal(g.length, 2);
  assert.deepEqual(g[1], { input: [104, 105, 106, 107], offset: 0, targets: [105, 106, 107] });
  const c = llamaCppChunks(ids, 4, 1);
  assert.equal(c.length, 2);
  // first = n_ctx/2 = 2: logits of positions 2 predict token 3 (n_ctx − 1 − first = 1 token).
  assert.deepEqual(c[0], { input: [1, 101, 102, 103], offset: 2, targets: [103] });
  assert.deepEqual(c[1], { input: [1, 105, 106, 107], offset: 2, targets: [107] });
  const odd = llamaCppChunks(ids, 5, 1);
  assert.deepEqual(odd[0]!.targets, [103, 104]);
});
