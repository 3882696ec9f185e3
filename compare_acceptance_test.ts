/**
 * Acceptance of `compare` on real runs of stories260K: a suite against itself shows no
 * significant change anywhere; the same suite with a worse format under the same id (int3 where
 * int4 was) is a regression whose interval excludes zero; the command's exit codes follow.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { compareResults, comparisonHasRegression } from "./reports/compare.ts";
import { resultsToJson } from "./reports/json.ts";
import { loadSuite } from "./harness/suite/load.ts";
import { runSuite } from "./harness/runner/run.ts";
import { hasShared, REPO_ROOT, sharedPath } from "./core/shared.ts";

const ignore = !hasShared("models/stories260K/stories260K.bin") ||
  !hasShared("data/text/tinystories_sample.txt");

function suiteYaml(weights: string): string {
  return `name: acceptance
models:
  - { id: s260k, path: ${sharedPath("models/stories260K/stories260K.bin")} }
datasets:
  stories: { kind: text, path: ${sharedPath("data/text/tinystories_sample.txt")} }
methods: [none, rtn]
formats: [f32, { id: w, weights: ${weights}, group: 32 }]
tasks: [{ task: perplexity, dataset: stories, context: 128 }]
exclude: [{ method: none, format: "!f32" }, { method: rtn, format: f32 }]
thresholds:
  perplexity: { max_relative_increase: 0.02 }
`;
}

Deno.test({
  name: "compare on stories260K: same suite → no change; int3 for int4 → regression, exit 1",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const run = async (name: string, weights: string) => {
      const path = join(dir, `${name}.yaml`);
      await Deno.writeTextFile(path, suiteYaml(weights));
      const suite = await loadSuite(path);
      // A cache per run: the second int4 run recomputes everything rather than reading the first.
      const file = await runSuite(suite, {
        runId: name,
        cacheDir: join(dir, `cache-${name}`),
        quiet: true,
        jobs: 1,
      });
      await Deno.mkdir(join(dir, name));
      await Deno.writeTextFile(join(dir, name, "results.json"), resultsToJson(file));
      return { suite, file, path };
    };
    const base = await run("base", "int4");
    const same = await run("same", "int4");
    const worse = await run("worse", "int3");

    const unchanged = compareResults(base.file, same.file, base.suite.thresholds);
    assert.equal(unchanged.entries.length, 4);
    for (const e of unchanged.entries) {
      assert.equal(e.verdict, "no-change", `${e.method}/${e.format} ${e.metric}: ${e.reason}`);
      assert.equal(e.stat?.test, "paired bootstrap");
    }
    assert.equal(comparisonHasRegression(unchanged), false);

    const c = compareResults(base.file, worse.file, base.suite.thresholds);
    const ppl = c.entries.find((e) => e.format === "w" && e.metric === "ppl")!;
    assert.equal(ppl.verdict, "regression");
    assert.ok(ppl.stat!.ci_low > 0, `interval ${ppl.stat!.ci_low}..${ppl.stat!.ci_high}`);
    assert.ok(ppl.relative_ci![0] > 0.02, "the whole interval is beyond the 2 % threshold");
    assert.equal(ppl.stat!.pairs, Number(/windows=(\d+)/.exec(ppl.head_detail!)![1]));
    // The baseline cell did not change.
    const f32 = c.entries.find((e) => e.format === "f32" && e.metric === "ppl")!;
    assert.equal(f32.verdict, "no-change");

    const cli = async (head: string, ...flags: string[]) => {
      const summary = join(dir, `summary-${head}.md`);
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          join(REPO_ROOT, "main.ts"),
          "compare",
          join(dir, "base"),
          join(dir, head),
          "--suite",
          base.path,
          ...flags,
        ],
        env: { NO_COLOR: "1", GITHUB_STEP_SUMMARY: summary },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      return { code: out.code, text, summary: await Deno.readTextFile(summary) };
    };
    const ok = await cli("same");
    assert.equal(ok.code, 0, ok.text);
    assert.match(ok.summary, /^## quantbench compare: ✅ no regressions/);
    const json = join(dir, "compare.json");
    const html = join(dir, "compare.html");
    const md = join(dir, "comment.md");
    const bad = await cli("worse", "--json", json, "--html", html, "--markdown", md);
    assert.equal(bad.code, 1, bad.text);
    assert.match(bad.summary, /^## quantbench compare: ❌ 2 regressions\n/); // ppl and nll
    assert.equal(JSON.parse(await Deno.readTextFile(json)).counts.regression, 2);
    assert.match(await Deno.readTextFile(html), /<h1 class="v-regression">/);
    assert.match(await Deno.readTextFile(md), /\| `\+` \| s260k rtn\/w cpu/);
  },
});
