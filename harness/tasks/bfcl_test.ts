import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, REPO_ROOT, sharedPath } from "../../core/shared.ts";
import { loadToolSamples, scoreToolOutput, type ToolSample } from "./tool_use.ts";
import { BFCL_CATEGORIES, bfclPredictions, resultHash } from "./bfcl_predictions.ts";

const BFCL = "data/toolcall/bfcl_v4";
const ignore = !BFCL_CATEGORIES.every((c) => hasShared(`${BFCL}/BFCL_v4_${c}.json`));

Deno.test({
  name:
    "bfcl: every category, Java and JavaScript included, gets BFCL's own verdict sample by sample",
  ignore,
  async fn() {
    const verdicts = new Map<string, { hash: string; valid: boolean; error_type: string }>();
    const text = await Deno.readTextFile(join(REPO_ROOT, "fixtures/bfcl/verdicts.jsonl"));
    for (const line of text.trim().split("\n")) {
      const v = JSON.parse(line);
      verdicts.set(v.key, v);
    }
    const samples = new Map<string, ToolSample>();
    for (const c of BFCL_CATEGORIES) {
      const path = sharedPath(`${BFCL}/BFCL_v4_${c}.json`);
      for (const s of await loadToolSamples({ id: path, path })) samples.set(s.id, s);
    }
    const predictions = await bfclPredictions();
    assert.equal(predictions.length, verdicts.size, "fixtures/bfcl/verdicts.jsonl is stale");
    const differences: string[] = [];
    const perCategory = new Map<string, { n: number; ok: number }>();
    for (const p of predictions) {
      const expected = verdicts.get(p.key);
      assert.ok(expected, `no BFCL verdict for ${p.key}`);
      assert.equal(resultHash(p.result), expected.hash, `${p.key}: regenerate verdicts.jsonl`);
      const score = scoreToolOutput(
        samples.get(p.id)!,
        typeof p.result === "string" ? p.result : { calls: p.result },
      );
      const ours = score.code === "ok" ? "" : score.code;
      if (ours !== expected.error_type) {
        differences.push(`${p.key}: BFCL ${expected.error_type || "ok"}, ours ${ours || "ok"}`);
      }
      const c = perCategory.get(p.category) ?? { n: 0, ok: 0 };
      c.n++;
      if (expected.valid) c.ok++;
      perCategory.set(p.category, c);
    }
    assert.deepEqual(differences, []);
    // Each category has gold answers BFCL accepts and corrupted ones it rejects.
    for (const [c, { n, ok }] of perCategory) assert.ok(ok > 0 && ok < n, `${c}: ${ok}/${n}`);
  },
});
