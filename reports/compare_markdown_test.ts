import assert from "node:assert/strict";
import { renderComparisonMarkdown, renderStepSummary } from "./compare_markdown.ts";
import { compareResults } from "./compare.ts";
import { fixtureComparison, HOSTILE } from "./compare_fixture.ts";
import { makeFile, makeRow } from "../core/test_rows.ts";

/** The marker cells of the table rows in `text` (lines starting with "| `"). */
function markers(text: string): string[] {
  return text.split("\n").filter((l) => l.startsWith("| `")).map((l) => l.slice(3, 4));
}

Deno.test("the PR comment leads with the verdict and lists regressions first", () => {
  const text = renderComparisonMarkdown(fixtureComparison());
  const [visible, folded] = text.split("<details><summary>All 7 compared rows</summary>");
  assert.ok(folded, "every compared row is folded into <details>");
  assert.match(visible!, /^## quantbench compare: ❌ 2 regressions, 1 newly failing\n/);
  assert.match(visible!, /`\+` regression: 2 · `!` newly failing: 1 · `-` improvement: 1/);
  // Rows that need attention, in verdict order; the unchanged row stays folded.
  assert.deepEqual(markers(visible!), ["+", "+", "!", "-", "?", "x"]);
  const [all, oneSided] = folded.split("rows on one side only</summary>");
  assert.deepEqual(markers(all!), ["+", "+", "!", "-", "?", "x", "~"]);
  assert.deepEqual(markers(oneSided!), ["<", ">"]);
  assert.match(
    visible!,
    /\| mini rtn\/w4g32 cpu +\| perplexity · wiki \| ppl ↓ +\| +7\.4849 \| +7\.8687 \| +\+5\.13% \[/,
  );
  assert.match(text, /<sub>Markers: `\+` regression, `!` newly failing, `-` improvement/);
});

Deno.test("names from results cannot inject HTML, mentions or table cells", () => {
  const text = renderComparisonMarkdown(fixtureComparison());
  assert.ok(!text.includes("<script>"), "no raw script tag");
  assert.ok(!text.includes("@octocat"), "no @-mention");
  assert.ok(!text.includes("<b>"));
  assert.ok(text.includes("&#60;script&#62;alert(1)&#60;/script&#62;&#64;octocat\\|x"));
  assert.ok(HOSTILE.includes("|"));
});

Deno.test("a clean comparison says so; long ones are cut to fit a comment", () => {
  const rows = Array.from({ length: 400 }, (_, i) => makeRow({ method: `m${i}`, value: 10 }));
  const c = compareResults(makeFile(rows), makeFile(rows), {});
  const full = renderComparisonMarkdown(c);
  assert.match(full, /^## quantbench compare: ✅ no regressions/);
  assert.match(full, /\nNo significant changes\.\n/);
  assert.equal(markers(full).length, 400);
  const short = renderComparisonMarkdown(c, { maxChars: 8000, reportUrl: "https://x/run/1" });
  assert.ok(short.length <= 8000, `${short.length}`);
  const shown = markers(short).length;
  assert.ok(shown > 0 && shown < 400);
  assert.match(short, new RegExp(`… ${400 - shown} more rows in the HTML and JSON reports\\.`));
  assert.match(short, /Full reports: https:\/\/x\/run\/1\n$/);
});

Deno.test("the step summary is short: headline, counts, at most `limit` rows", () => {
  const text = renderStepSummary(fixtureComparison(), 3);
  assert.match(text, /^## quantbench compare: ❌/);
  assert.deepEqual(markers(text), ["+", "+", "!"]);
  assert.match(text, /\n… and 3 more\.\n/);
  assert.ok(!text.includes("<details>"));
});
