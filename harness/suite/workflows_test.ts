/**
 * Checks the GitHub Actions workflows in `.github/workflows/` without running them: each parses
 * as YAML (duplicate keys are errors), every `deno task X` it runs is a task in deno.json, every
 * suite it names exists (and loads, where the shared files are present), Deno is pinned, and the
 * pull-request workflows keep PR code away from write tokens.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { parse } from "yaml";
import { hasShared, REPO_ROOT } from "../../core/shared.ts";
import { loadSuite } from "./load.ts";

type Step = { uses?: string; run?: string; with?: Record<string, unknown>; env?: object };
type Job = {
  "runs-on"?: string;
  steps?: Step[];
  permissions?: Record<string, string> | string;
  strategy?: { matrix?: Record<string, unknown> };
};
type Workflow = {
  name?: string;
  on?: Record<string, unknown>;
  env?: Record<string, unknown>;
  permissions?: Record<string, string> | string;
  jobs?: Record<string, Job>;
};

const DIR = join(REPO_ROOT, ".github", "workflows");
const FILES = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
const workflows = new Map<string, Workflow>(
  FILES.map((f) => [f, parse(readFileSync(join(DIR, f), "utf8")) as Workflow]),
);
const tasks = Object.keys(
  (JSON.parse(readFileSync(join(REPO_ROOT, "deno.json"), "utf8")) as { tasks: object }).tasks,
);

function steps(w: Workflow): Step[] {
  return Object.values(w.jobs ?? {}).flatMap((j) => j.steps ?? []);
}

function scripts(w: Workflow): string[] {
  return steps(w).flatMap((s) => (s.run === undefined ? [] : [s.run]));
}

/** Suite files named in the workflows' scripts. */
function suitesUsed(): string[] {
  const all = [...workflows.values()].flatMap(scripts).join("\n");
  return [...new Set(all.match(/suites\/[\w.-]+\.ya?ml/g) ?? [])].sort();
}

Deno.test("every workflow parses and has jobs whose steps either use an action or run a script", () => {
  assert.ok(FILES.includes("nightly.yml") && FILES.includes("pr.yml"), FILES.join(", "));
  for (const [file, w] of workflows) {
    assert.ok(w.on && typeof w.on === "object", `${file}: no triggers`);
    assert.ok(w.jobs && Object.keys(w.jobs).length > 0, `${file}: no jobs`);
    for (const [name, job] of Object.entries(w.jobs)) {
      assert.ok(job["runs-on"], `${file}: job ${name} has no runs-on`);
      for (const step of job.steps ?? []) {
        assert.ok((step.uses === undefined) !== (step.run === undefined), `${file}: ${name}`);
        if (step.uses) assert.match(step.uses, /^[\w.-]+\/[\w./-]+@[\w.-]+$/, `${file}: unpinned`);
      }
    }
  }
});

Deno.test("every `deno task` a workflow runs exists in deno.json", () => {
  const used = new Set<string>();
  for (const [file, w] of workflows) {
    for (const script of scripts(w)) {
      for (const [, task] of script.matchAll(/\bdeno task ([\w:-]+)/g)) {
        assert.ok(tasks.includes(task!), `${file} runs "deno task ${task}", not in deno.json`);
        used.add(task!);
      }
    }
  }
  for (const needed of ["bench", "merge", "compare"]) assert.ok(used.has(needed), needed);
});

Deno.test("every suite a workflow names exists", () => {
  const suites = suitesUsed();
  assert.deepEqual(suites, ["suites/nightly.yaml", "suites/pr.yaml"]);
  for (const suite of suites) assert.ok(existsSync(join(REPO_ROOT, suite)), suite);
});

Deno.test({
  name: "the workflow suites load, and the workflows fetch every shared file they name",
  ignore: !hasShared("models/stories260K/stories260K.bin") ||
    !hasShared("data/text/tinyshakespeare.txt"),
  async fn() {
    const shared = resolve(REPO_ROOT, "..", "shared");
    for (const path of suitesUsed()) {
      const suite = await loadSuite(join(REPO_ROOT, path));
      const files = [
        ...suite.models.flatMap((m) => [m.path, m.tokenizer ?? m.path]),
        ...Object.values(suite.datasets).map((d) => d.path),
      ];
      for (const file of files) {
        // Suites reach shared files as ../shared beside the checkout, where CI puts them.
        const rel = relative(shared, file);
        assert.ok(!rel.startsWith(".."), `${path}: ${file} is not under ../shared`);
        for (const [name, w] of workflows) {
          if (!scripts(w).some((s) => s.includes(path))) continue;
          const text = scripts(w).join("\n");
          assert.ok(text.includes(`-o shared/${rel}`) || text.includes(` shared/${rel} `), name);
          assert.match(text, new RegExp(`[0-9a-f]{64}  shared/${rel}\\n`), `${name}: checksum`);
        }
      }
    }
  },
});

Deno.test("workflows that run deno install the pinned Deno and cache its dependencies", () => {
  for (const [file, w] of workflows) {
    if (!scripts(w).some((s) => /\bdeno /.test(s))) continue;
    for (const [name, job] of Object.entries(w.jobs ?? {})) {
      const js = job.steps ?? [];
      if (!js.some((s) => s.run && /\bdeno /.test(s.run))) continue;
      const install = js.find((s) => s.run && /npm install -g "?deno@/.test(s.run));
      assert.ok(install, `${file}: job ${name} does not install Deno from npm`);
      const pinned = /deno@2\.9\.6/.test(install.run!) ||
        (/deno@\$\{DENO_VERSION\}/.test(install.run!) && w.env?.DENO_VERSION === "2.9.6");
      assert.ok(pinned, `${file}: job ${name} does not pin Deno 2.9.6`);
      const cache = js.find((s) =>
        s.uses?.startsWith("actions/cache@") &&
        String(s.with?.path).includes(".cache/deno")
      );
      assert.ok(cache, `${file}: job ${name} does not cache ~/.cache/deno`);
      assert.match(String(cache.with?.key), /hashFiles\('[\w/]*deno\.lock'\)/);
    }
  }
});

Deno.test("every script is valid bash", async () => {
  for (const [file, w] of workflows) {
    for (const script of scripts(w)) {
      const out = await new Deno.Command("bash", { args: ["-n", "-c", script], stderr: "piped" })
        .output();
      assert.equal(out.code, 0, `${file}: ${new TextDecoder().decode(out.stderr)}\n${script}`);
    }
  }
});

Deno.test("no script interpolates ${{ }} expressions (they go through env, never into code)", () => {
  for (const [file, w] of workflows) {
    for (const script of scripts(w)) assert.ok(!script.includes("${{"), `${file}: ${script}`);
  }
});

Deno.test("nightly: scheduled and dispatchable, one bench job per shard, merged and compared", () => {
  const w = workflows.get("nightly.yml")!;
  assert.ok("schedule" in w.on! && "workflow_dispatch" in w.on!);
  const shards = w.jobs!.bench!.strategy!.matrix!.shard as number[];
  assert.deepEqual(shards, Array.from({ length: Number(w.env!.SHARDS) }, (_, i) => i + 1));
  const text = scripts(w).join("\n");
  assert.match(text, /deno task bench suites\/nightly\.yaml --shard "\$\{SHARD\}\/\$\{SHARDS\}"/);
  assert.match(text, /deno task merge out\/nightly out\/shards\/nightly-shard-\*/);
  assert.match(text, /gh run list .*--workflow nightly\.yml --branch main/s);
  assert.match(text, /deno task compare out\/baseline out\/nightly/);
  const uses = steps(w).filter((s) => s.uses?.startsWith("actions/download-artifact@"));
  assert.ok(uses.some((s) => String(s.with?.["run-id"]).includes("steps.baseline.outputs")));
  assert.equal(w.permissions && (w.permissions as Record<string, string>).contents, "read");
});

Deno.test("pull requests: PR code runs read-only; a workflow_run job posts one sticky comment", () => {
  const pr = workflows.get("pr.yml")!;
  assert.ok("pull_request" in pr.on! && !("pull_request_target" in pr.on!));
  const writes = (p: Workflow["permissions"]) =>
    p === "write-all" || (typeof p === "object" && Object.values(p).includes("write"));
  assert.ok(!writes(pr.permissions));
  for (const job of Object.values(pr.jobs!)) assert.ok(!writes(job.permissions));
  const checkout = steps(pr).find((s) => s.uses?.startsWith("actions/checkout@"))!;
  assert.match(String(checkout.with?.ref), /pull_request\.head\.sha/);
  assert.equal(checkout.with?.["persist-credentials"], false);
  assert.match(scripts(pr).join("\n"), /deno task compare out\/base out\/head --suite suites\/pr/);
  const upload = steps(pr).find((s) => s.with?.name === "pr-comment");
  assert.ok(upload, "the comment goes out as an artifact");

  const [file, poster] = [...workflows].find(([, w]) => "workflow_run" in w.on!)!;
  const trigger = poster.on!.workflow_run as { workflows: string[] };
  assert.deepEqual(trigger.workflows, [pr.name], file);
  assert.ok(!steps(poster).some((s) => s.uses?.startsWith("actions/checkout@")), "no PR code");
  const text = scripts(poster).join("\n");
  assert.match(text, /<!-- quantbench-compare -->/);
  assert.match(text, /\[\[ "\$pr" =~ \^\[0-9\]/, "the PR number is validated");
  assert.match(text, /\.head\.sha/, "the PR head must be the commit the run built");
  assert.match(text, /--method PATCH/, "an existing comment is updated");
});
