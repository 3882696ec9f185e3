/**
 * Calibration sensitivity on the calibration_mini results (fixtures/recommend/calibration_mini.json,
 * `deno task bench suites/calibration_mini.yaml`), with the expectations worked out from its rows:
 * GPTQ int4-g32 perplexity 113.891 (calibrated in-domain) and 118.551 (out-of-domain): spread
 * 4.660, 4.09 % of the best; KLD 0.12635 and 0.18016: spread 0.05381, 42.6 %. AWQ: perplexity
 * 113.672 and 116.654 (2.62 %), KLD 0.10416 and 0.12138 (16.5 %).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readResults } from "./json.ts";
import { calibrationSensitivity, sensitivityMarkdown } from "./calibration_sensitivity.ts";
import { summaryMarkdown } from "./markdown.ts";
import { REPO_ROOT } from "../core/shared.ts";

const CALIBRATION = await readResults(join(REPO_ROOT, "fixtures/recommend/calibration_mini.json"));
const QUICKSTART = await readResults(join(REPO_ROOT, "fixtures/recommend/quickstart.json"));

const close = (a: number, b: number, tol = 1e-9) =>
  assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

Deno.test("calibration sensitivity: each method × format × quality metric across its sets", () => {
  const lines = calibrationSensitivity(CALIBRATION.rows);
  assert.deepEqual(
    lines.map((l) => [l.method, l.format, `${l.task}.${l.metric}`, l.best, l.worst]),
    [
      ["gptq", "int4-g32", "perplexity.ppl", "in_domain", "out_of_domain"],
      ["gptq", "int4-g32", "kld.kld", "in_domain", "out_of_domain"],
      ["awq", "int4-g32", "perplexity.ppl", "in_domain", "out_of_domain"],
      ["awq", "int4-g32", "kld.kld", "in_domain", "out_of_domain"],
    ],
  );
  const [gptqPpl, gptqKld, awqPpl, awqKld] = lines;
  assert.deepEqual(gptqPpl!.values.map((v) => v.calibration), ["in_domain", "out_of_domain"]);
  close(gptqPpl!.values[0]!.value, 113.89094356719171);
  close(gptqPpl!.spread, 118.55081913684283 - 113.89094356719171);
  close(gptqPpl!.relative, (118.55081913684283 - 113.89094356719171) / 113.89094356719171);
  close(gptqKld!.relative, (0.18015832400274837 - 0.12634917952587257) / 0.12634917952587257);
  close(awqPpl!.relative, (116.65432208032094 - 113.67208169104876) / 113.67208169104876);
  close(awqKld!.spread, 0.12138381668432648 - 0.10415958318692585);
  const md = sensitivityMarkdown(CALIBRATION.rows);
  assert.match(md, /^## Calibration sensitivity/);
  assert.match(
    md,
    /\| gptq +\| int4-g32 .*in_domain: 113\.9, out_of_domain: 118\.6 +\| 4\.66 +\| 4\.1 % +\| out_of_domain/,
  );
  assert.match(md, /\| awq +\| int4-g32 .*kld\(heldout\)\.kld .*\| 16\.5 % /);
  // The stdout summary ends with it.
  assert.match(summaryMarkdown(CALIBRATION), /\n\n## Calibration sensitivity\n\n\| model/);
});

Deno.test("calibration sensitivity: where higher is better the best set is the highest", () => {
  const rows = CALIBRATION.rows.filter((r) => r.task === "perplexity" && r.metric === "ppl")
    .map((r) => ({ ...r, task: "tool_use", metric: "accuracy", higher_is_better: true }));
  const [gptq] = calibrationSensitivity(rows);
  assert.equal(gptq!.best, "out_of_domain");
  close(gptq!.relative, (118.55081913684283 - 113.89094356719171) / 118.55081913684283);
});

Deno.test("calibration sensitivity: nothing without calibration sets, a single set or a failed one", () => {
  assert.deepEqual(calibrationSensitivity(QUICKSTART.rows), []);
  assert.equal(sensitivityMarkdown(QUICKSTART.rows), "");
  assert.doesNotMatch(summaryMarkdown(QUICKSTART), /Calibration sensitivity/);
  const single = CALIBRATION.rows.filter((r) => r.extra?.calibration !== "out_of_domain");
  assert.deepEqual(calibrationSensitivity(single), []);
  const failed = CALIBRATION.rows.map((r) =>
    r.method === "awq@out_of_domain" ? { ...r, status: "failed" as const, value: null } : r
  );
  assert.deepEqual(calibrationSensitivity(failed).map((l) => l.method), ["gptq", "gptq"]);
});
