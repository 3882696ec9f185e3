import assert from "node:assert/strict";
import { formatPercent, formatSignificant } from "./format.ts";

Deno.test("formatSignificant rounds to significant digits like C printf %.4g without padding", () => {
  // Expected strings follow printf("%.4g") (C99 7.19.6.1) with trailing zeros removed.
  assert.equal(formatSignificant(5.67891), "5.679");
  assert.equal(formatSignificant(0.98), "0.98");
  assert.equal(formatSignificant(-12.3456), "-12.35");
  assert.equal(formatSignificant(123456), "123500");
  assert.equal(formatSignificant(1.5e-7), "1.5e-7");
  assert.equal(formatSignificant(0), "0");
  assert.equal(formatSignificant(2.718281828, 6), "2.71828");
  assert.equal(formatSignificant(null), "");
  assert.equal(formatSignificant(Number.NaN), "NaN");
  assert.equal(formatSignificant(-Infinity), "-∞");
});

Deno.test("formatPercent signs the ratio as a percentage", () => {
  assert.equal(formatPercent(0.02134), "+2.134%");
  assert.equal(formatPercent(-0.5), "-50%");
  assert.equal(formatPercent(0), "0%");
  assert.equal(formatPercent(null), "");
});
