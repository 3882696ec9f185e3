import assert from "node:assert/strict";
import { GptqProfile } from "./gptq_profile.ts";

Deno.test("gptq profile: phases per layer and in total, the rest as other", () => {
  const lines: string[] = [];
  const profile = new GptqProfile((line) => lines.push(line));
  const start = performance.now() - 2000;
  const t = profile.add("hessian", start);
  profile.add("factor", t - 500);
  profile.layer("layer 0");
  profile.add("hessian", performance.now() - 1000);
  profile.layer("layer 1");
  profile.total();
  assert.equal(lines.length, 3);
  assert.match(
    lines[0]!,
    /^gptq profile layer 0: [\d.]+ s \(hessian 2\.\d+, factor 0\.5\d*, other -?[\d.]+\)$/,
  );
  assert.match(lines[1]!, /^gptq profile layer 1: .*\(hessian 1\.\d+, other/);
  // Totals add the layers' phases.
  const hessian = Number(/hessian ([\d.]+)/.exec(lines[2]!)![1]);
  assert.ok(hessian >= 3 && hessian < 3.5, lines[2]);
});

Deno.test("gptq profile: another method's lines carry its name", () => {
  const lines: string[] = [];
  const profile = new GptqProfile((line) => lines.push(line), "awq");
  profile.add("search", performance.now() - 100);
  profile.layer("layer 0");
  profile.total();
  assert.match(lines[0]!, /^awq profile layer 0: .*\(search 0\.\d+, other/);
  assert.match(lines[1]!, /^awq profile total: /);
});
