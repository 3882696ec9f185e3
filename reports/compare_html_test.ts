import assert from "node:assert/strict";
import { renderComparisonHtml } from "./compare_html.ts";
import { compareResults } from "./compare.ts";
import { fixtureComparison } from "./compare_fixture.ts";
import { makeFile, makeRow } from "../core/test_rows.ts";

Deno.test("the diff page is self-contained and escapes every name", () => {
  const page = renderComparisonHtml(fixtureComparison());
  assert.match(page, /^<!DOCTYPE html>/);
  assert.match(page, /content="default-src 'none'; style-src 'unsafe-inline'"/);
  assert.ok(!/<script|<link|<img|src=|href=/i.test(page), "no scripts, no resources");
  assert.ok(!page.includes("\\n"), "no escaped newlines leak into the page");
  assert.ok(!page.includes("<b>ctx"), "protocol strings are escaped");
  assert.ok(page.includes("&lt;script&gt;alert(1)&lt;/script&gt;@octocat|x"));
  assert.match(
    page,
    /<h1 class="v-regression">quantbench compare: 2 regressions, 1 newly failing<\/h1>/,
  );
});

Deno.test("one table row per entry and one plotted mark per comparable change", () => {
  const c = fixtureComparison();
  const page = renderComparisonHtml(c);
  assert.equal(page.match(/<tr data-entry/g)?.length, c.entries.length);
  const plotted = c.entries.filter((e) => e.relative_delta !== null);
  assert.equal(plotted.length, 5);
  assert.equal(page.match(/<circle class="pt" data-mark/g)?.length, plotted.length);
  // Intervals are drawn where there are statistics, thresholds where a relative limit applies.
  assert.equal(
    page.match(/<line class="ci"/g)?.length,
    plotted.filter((e) => e.relative_ci).length,
  );
  assert.equal(page.match(/<line class="limit"/g)?.length, 4);
});

Deno.test("the forest plot puts worse to the right whatever the metric's direction", () => {
  const page = renderComparisonHtml(fixtureComparison());
  const x = (method: string) => {
    const row = page.split('<g class="row"').find((g) => g.includes(` ${method}/`));
    return Number(/<circle class="pt" data-mark cx="([\d.]+)"/.exec(row!)![1]);
  };
  const zero = Number(/<line class="zero" x1="([\d.]+)"/.exec(page)![1]);
  assert.ok(x("rtn") > zero, "perplexity up is worse");
  assert.ok(x("gptq") > zero, "accuracy down is worse");
  assert.ok(x("awq") < zero, "perplexity down is better");
});

Deno.test("a comparison with nothing to plot says so", () => {
  const c = compareResults(makeFile([makeRow()]), makeFile([]), {});
  const page = renderComparisonHtml(c);
  assert.match(page, /No rows present and comparable on both sides to plot\./);
  assert.equal(page.match(/<tr data-entry/g)?.length, 1);
});
