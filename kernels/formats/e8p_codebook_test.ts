import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  E81B_GRID,
  E8P_ABS,
  E8P_ABS_WORDS,
  E8P_CODES,
  E8P_GRID,
  e8pDecode,
  e8pNearest,
} from "./e8p_codebook.ts";

const FIXTURE = fileURLToPath(new URL("../../fixtures/methods/quip_e8p12.json", import.meta.url));

Deno.test("E8P12 and E81B equal the published codebooks entry for entry", async () => {
  const published = JSON.parse(await Deno.readTextFile(FIXTURE)) as {
    abs_words: number[];
    grid_sha256: string;
    e81b: number[][];
  };
  // JSON keeps the sign of −0 (numpy writes −2·I); the codebook has +0 there.
  assert.deepEqual([...E81B_GRID], published.e81b.flat().map((v) => v + 0));
  assert.deepEqual([...E8P_ABS_WORDS], published.abs_words);
  const bytes = new Uint8Array(E8P_GRID.slice().buffer);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(hex, published.grid_sha256);
});

Deno.test("E8P12 codewords are distinct points of E8 shifted by ±1/4", () => {
  const seen = new Set<string>();
  const v = new Float64Array(8);
  for (let c = 0; c < E8P_CODES; c++) {
    e8pDecode(c, v);
    seen.add(v.join(","));
    // Undo the shift that makes every coordinate a half-integer: the rest is in D8 + 1/2 ⊂ E8.
    const shift = Number.isInteger(v[0]! - 0.25 + 0.5) ? 0.25 : -0.25;
    let sum = 0;
    for (let i = 0; i < 8; i++) {
      const u = v[i]! - shift;
      assert.ok(Number.isInteger(u + 0.5), `code ${c}: ${v}`);
      sum += u;
    }
    assert.ok(Number.isInteger(sum) && sum % 2 === 0, `code ${c}: sum ${sum}`);
  }
  assert.equal(seen.size, E8P_CODES);
  assert.equal(E8P_ABS.length, 256 * 8);
});

Deno.test("e8pNearest finds the nearest of all 2^16 codewords", () => {
  let s = 7;
  const rand = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const x = new Float64Array(8);
  const got = new Float64Array(8);
  for (let trial = 0; trial < 120; trial++) {
    // Gaussian-ish targets at the scale LDLQ feeds (unit variance / 1.03), some large.
    for (let i = 0; i < 8; i++) x[i] = (rand() + rand() + rand() - 1.5) * (trial % 10 ? 2 : 5);
    let best = Infinity;
    for (let c = 0; c < E8P_CODES; c++) {
      let d = 0;
      for (let i = 0; i < 8; i++) d += (E8P_GRID[8 * c + i]! - x[i]!) ** 2;
      best = Math.min(best, d);
    }
    const code = e8pNearest(x);
    e8pDecode(code, got);
    let d = 0;
    for (let i = 0; i < 8; i++) d += (got[i]! - x[i]!) ** 2;
    assert.ok(Math.abs(d - best) < 1e-9, `trial ${trial}: ${d} vs ${best}`);
  }
});
