/**
 * Acceptance of calibration sensitivity, end to end: a suite whose GPTQ entry lists two
 * calibration sets (in-domain text and out-of-domain text) runs one cell per set; their rows carry
 * the set, their perplexities differ, and the stdout summary and report.html show the spread. A
 * plain GPTQ entry with the same options as one set keeps its own rows through the result cache.
 *
 * On stories260K, where GPTQ takes well under a second a cell (on mini it takes about ten seconds
 * on 2 cores: suites/calibration_mini.yaml is the mini run, whose results are the fixture of
 * reports/calibration_sensitivity_test.ts and the browser test).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadSuite } from "./harness/suite/load.ts";
import { runSuite } from "./harness/runner/run.ts";
import { calibrationSensitivity } from "./reports/calibration_sensitivity.ts";
import { summaryMarkdown } from "./reports/markdown.ts";
import { renderHtml } from "./reports/html.ts";
import { hasShared, sharedPath } from "./core/shared.ts";

const STORIES = "models/stories260K/stories260K.bin";
const TEXT = "data/text/tinystories_sample.txt";
const WIKI = "data/text/wikitext2_test_gptq_join.txt";

const SUITE = `name: calibration
models: [{ id: s260k, path: ${sharedPath(STORIES)} }]
datasets:
  stories: { kind: text, path: ${sharedPath(TEXT)} }
  in_domain: { kind: text, path: ${sharedPath(TEXT)}, skip_chars: 1800 }
  out_of_domain: { kind: text, path: ${sharedPath(WIKI)}, max_chars: 20000 }
methods:
  - method: gptq
    calibration:
      - { dataset: in_domain, samples: 2, seq_len: 64 }
      - { dataset: out_of_domain, samples: 2, seq_len: 64 }
  - { id: plain, method: gptq, calibration: { dataset: in_domain, samples: 2, seq_len: 64 } }
formats: [{ weights: int4, group: 32 }]
tasks: [{ task: perplexity, dataset: stories, context: 128 }]
`;

Deno.test({
  name: "calibration sets: one cell per set, the spread in the summary and the report",
  ignore: !hasShared(STORIES) || !hasShared(TEXT) || !hasShared(WIKI),
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(join(dir, "suite.yaml"), SUITE);
      const suite = await loadSuite(join(dir, "suite.yaml"));
      const run = (runId: string) =>
        runSuite(suite, { runId, cacheDir: join(dir, "cache"), quiet: true, jobs: 1 });
      const file = await run("first");
      const ppl = file.rows.filter((r) => r.metric === "ppl");
      assert.deepEqual(
        ppl.map((r) => [r.method, r.status, r.extra?.calibration_of, r.extra?.calibration]),
        [
          ["gptq@in_domain", "ok", "gptq", "in_domain"],
          ["gptq@out_of_domain", "ok", "gptq", "out_of_domain"],
          ["plain", "ok", undefined, undefined],
        ],
      );
      const [inDomain, outOfDomain, plain] = ppl.map((r) => r.value!);
      // The same method and options on the same text: the same model, the same perplexity.
      assert.equal(plain, inDomain);
      // Another calibration text: another model.
      assert.notEqual(outOfDomain, inDomain);
      const [line] = calibrationSensitivity(file.rows);
      assert.deepEqual(line!.values, [
        { calibration: "in_domain", value: inDomain },
        { calibration: "out_of_domain", value: outOfDomain },
      ]);
      assert.equal(line!.spread, Math.abs(outOfDomain! - inDomain!));
      assert.match(
        summaryMarkdown(file),
        /## Calibration sensitivity\n\n\| model .*\n.*\n\| s260k +\| gptq +\| int4-g32/,
      );
      assert.match(renderHtml(file), /<table id="calibration-sensitivity">/);

      // From the cache: every row as it was, the plain entry's rows still its own.
      const again = await run("second");
      const strip = (f: typeof file) =>
        f.rows.map(({ run_id: _, extra, ...r }) => ({
          ...r,
          calibration: extra?.calibration,
        }));
      assert.deepEqual(strip(again), strip(file));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
