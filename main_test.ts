import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, REPO_ROOT, sharedPath } from "./core/shared.ts";
import { parseCsv } from "./reports/csv.ts";
import { COLUMNS } from "./core/row.ts";

const ignore = !hasShared("models/stories260K/stories260K.bin") ||
  !hasShared("data/text/tinystories_sample.txt");

/** Runs `main.ts` in a subprocess, as `deno task` does. */
async function quantbench(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

function suiteYaml(formats: string, tasks: string): string {
  return `name: e2e
models:
  - { id: s260k, path: ${sharedPath("models/stories260K/stories260K.bin")} }
datasets:
  stories: { kind: text, path: ${sharedPath("data/text/tinystories_sample.txt")} }
  wiki: { kind: text, path: ${
    sharedPath("data/text/wikitext2_test_gptq_join.txt")
  }, max_chars: 12000 }
methods: [none, rtn]
formats: ${formats}
tasks: ${tasks}
exclude:
  - { method: none, format: "!f32" }
  - { method: rtn, format: f32 }
thresholds:
  ppl: { max_relative_increase: 0.02 }
`;
}

/** CSV rows without the columns that legitimately differ between runs. */
function stableCsv(text: string): string[][] {
  const [header, ...rows] = parseCsv(text);
  const drop = new Set(["run_id", "seconds", "quantize_seconds"]);
  const keep = header!.map((h, i) => drop.has(h) ? -1 : i).filter((i) => i >= 0);
  return rows.map((r) => keep.map((i) => r[i]!));
}

Deno.test({
  name: "main: bench writes CSV/JSON/HTML; int4 < int3 < int2 in perplexity; report re-renders",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const suite = join(dir, "suite.yaml");
    await Deno.writeTextFile(
      suite,
      suiteYaml(
        "[f32, int8, { weights: int4, group: 32 }, { weights: int3, group: 32 }, { weights: int2, group: 32 }]",
        "[{ task: perplexity, dataset: stories, context: 128 }]",
      ),
    );
    const out = join(dir, "out");
    const r = await quantbench("bench", suite, "--out", out, "--cache", join(dir, "cache"));
    assert.equal(r.code, 0, r.stderr);
    const csv = parseCsv(await Deno.readTextFile(join(out, "results.csv")));
    assert.deepEqual(csv[0]!.slice(0, COLUMNS.length), [...COLUMNS]);
    const ppl = new Map(
      csv.slice(1).filter((row) => row[8] === "ppl").map((row) => [row[4], Number(row[9])]),
    );
    assert.equal(ppl.size, 5);
    const f32 = ppl.get("f32")!, int8 = ppl.get("int8")!;
    assert.ok(Math.abs(int8 / f32 - 1) < 0.005, `int8 ${int8} vs f32 ${f32}`);
    assert.ok(f32 < ppl.get("int4-g32")! && ppl.get("int4-g32")! < ppl.get("int3-g32")!);
    assert.ok(ppl.get("int3-g32")! < ppl.get("int2-g32")!);
    const json = JSON.parse(await Deno.readTextFile(join(out, "results.json")));
    assert.equal(json.meta.suite, "e2e");
    assert.ok(json.rows[0].samples.values.length > 1, "per-window NLL kept");
    const html = await Deno.readTextFile(join(out, "report.html"));
    assert.match(html, /<svg/);
    assert.match(r.stdout, /int2-g32/);

    await Deno.remove(join(out, "results.csv"));
    const rep = await quantbench("report", join(out, "results.json"));
    assert.equal(rep.code, 0, rep.stderr);
    assert.deepEqual(parseCsv(await Deno.readTextFile(join(out, "results.csv"))), csv);
  },
});

Deno.test({
  name: "main: a run killed with SIGKILL resumes with only the unfinished cells and the same CSV",
  ignore: ignore || !hasShared("data/text/wikitext2_test_gptq_join.txt"),
  async fn() {
    const dir = await Deno.makeTempDir();
    const suite = join(dir, "suite.yaml");
    await Deno.writeTextFile(
      suite,
      suiteYaml(
        "[f32, int8, { weights: int4, group: 32 }, { weights: int3, group: 32 }, { weights: int2, group: 32 }]",
        "[{ task: perplexity, dataset: wiki, context: 256 }]",
      ),
    );
    const cache = join(dir, "cache");
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(REPO_ROOT, "main.ts"), "bench", suite, "--out", join(dir, "a")],
      env: { NO_COLOR: "1", QUANTBENCH_CACHE: cache },
      stdout: "null",
      stderr: "null",
    }).spawn();
    // Kill as soon as the first cell × task is cached.
    const countCached = async () => {
      let n = 0;
      try {
        for await (const sub of Deno.readDir(cache)) {
          for await (const f of Deno.readDir(join(cache, sub.name))) {
            if (f.name.endsWith(".json")) n++;
          }
        }
      } catch { /* not created yet */ }
      return n;
    };
    const deadline = Date.now() + 120_000;
    while (await countCached() === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill("SIGKILL");
    await child.status;
    const finished = await countCached();
    assert.ok(finished >= 1 && finished < 5, `${finished} cells cached before the kill`);
    assert.ok(!(await exists(join(dir, "a", "results.csv"))), "no report from a killed run");

    const resumed = await quantbench("bench", suite, "--out", join(dir, "b"), "--cache", cache);
    assert.equal(resumed.code, 0, resumed.stderr);
    const cachedLines = resumed.stderr.split("\n").filter((l) => l.endsWith(": cached"));
    assert.equal(cachedLines.length, finished);
    const fresh = await quantbench(
      "bench",
      suite,
      "--out",
      join(dir, "c"),
      "--cache",
      cache,
      "--fresh",
    );
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.ok(!fresh.stderr.includes(": cached"));
    assert.deepEqual(
      stableCsv(await Deno.readTextFile(join(dir, "b", "results.csv"))),
      stableCsv(await Deno.readTextFile(join(dir, "c", "results.csv"))),
    );
  },
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "main: compare exits 1 when a threshold is crossed and 0 otherwise",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const run = async (name: string, format: string) => {
      const suite = join(dir, `${name}.yaml`);
      await Deno.writeTextFile(
        suite,
        suiteYaml(
          `[{ id: w, weights: ${format}, group: 32 }]`,
          "[{ task: perplexity, dataset: stories, context: 128 }]",
        ),
      );
      const r = await quantbench(
        "bench",
        suite,
        "--out",
        join(dir, name),
        "--cache",
        join(dir, "cache"),
        "--filter",
        "method=rtn",
      );
      assert.equal(r.code, 0, r.stderr);
      return { suite, out: join(dir, name) };
    };
    const base = await run("base", "int4");
    const same = await run("same", "int4");
    const worse = await run("worse", "int3");
    const ok = await quantbench("compare", base.out, same.out, "--suite", base.suite);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const bad = await quantbench("compare", base.out, worse.out, "--suite", base.suite);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /regression/i);
    const loose = await quantbench("compare", base.out, worse.out, "--threshold", "ppl=10");
    assert.equal(loose.code, 0, loose.stdout + loose.stderr);
  },
});

Deno.test("main: invalid input exits 2 naming file:line:col; unknown commands suggest", async () => {
  const dir = await Deno.makeTempDir();
  const suite = join(dir, "bad.yaml");
  await Deno.writeTextFile(
    suite,
    "name: x\nmodels:\n  - { id: m, path: nope.bin }\nformts: [f32]\n",
  );
  const r = await quantbench("validate", suite);
  assert.equal(r.code, 2);
  assert.match(r.stderr, new RegExp(`${suite.replaceAll("/", "\\/")}:3:20: model file "nope.bin"`));
  assert.match(r.stderr, /:4:1: unknown key "formts"; did you mean "formats"\?/);
  const b = await quantbench("bench", suite);
  assert.equal(b.code, 2);
  const u = await quantbench("bnech");
  assert.equal(u.code, 2);
  assert.match(u.stderr, /did you mean "bench"/);
  const l = await quantbench("bench", suite, "--limit", "zero");
  assert.equal(l.code, 2);
  assert.match(l.stderr, /--limit must be a positive integer, got "zero"/);
});

Deno.test("main: perf takes --formats (unknown names suggest), --rows N, and its sweeps and --atb only on WebGPU", async () => {
  const out = await Deno.makeTempDir();
  const r = await quantbench("perf", "--formats", "int4-g128", "--out", out);
  assert.equal(r.code, 0, r.stderr);
  const [header, ...rows] = parseCsv(await Deno.readTextFile(join(out, "perf.csv")));
  const [format, kernel] = [header!.indexOf("format"), header!.indexOf("kernel")];
  assert.deepEqual(rows.map((row) => `${row[format]} ${row[kernel]}`), [
    "int4-g128 gemv",
    "int4-g128 gemm",
  ]);
  const unknown = await quantbench("perf", "--formats", "int4-g129");
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /Unknown perf format "int4-g129"; did you mean "int4-g128"\?/);
  const badRows = await quantbench("perf", "--rows", "many");
  assert.equal(badRows.code, 2);
  assert.match(badRows.stderr, /--rows must be a positive integer, got "many"/);
  for (const flag of ["--sweep", "--sweep-gemm", "--sweep-codebook", "--atb"]) {
    const gpuOnly = await quantbench("perf", flag);
    assert.equal(gpuOnly.code, 2);
    assert.match(gpuOnly.stderr, new RegExp(`${flag} times WebGPU kernels; add --backend webgpu`));
  }
});

Deno.test("main: recommend names a recipe, writes markdown and JSON, exits 1 when none fits", async () => {
  const dir = await Deno.makeTempDir();
  const results = join(REPO_ROOT, "fixtures/recommend/quickstart.json");
  const md = join(dir, "rec.md");
  const json = join(dir, "rec.json");
  const html = join(dir, "rec.html");
  const r = await quantbench(
    "recommend",
    results,
    "--memory",
    "16MiB",
    "--max-drop",
    "tool_use.accuracy=0.05",
    "--markdown",
    md,
    "--json",
    json,
    "--html",
    html,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\*\*mini rtn\/int8 on cpu\*\*/);
  const page = await Deno.readTextFile(html);
  assert.match(page, /<h2>Recommendation<\/h2>\n<p class="choice"><strong>mini rtn\/int8 on cpu/);
  assert.match(page, /As <code>deno task recommend<\/code> was asked: objective quality/);
  assert.equal(await Deno.readTextFile(md), r.stdout);
  assert.equal(JSON.parse(await Deno.readTextFile(json)).choice.format, "int8");
  const none = await quantbench(
    "recommend",
    results,
    "--memory",
    "10MiB",
    "--max-drop",
    "tool_use.accuracy=0.05",
  );
  assert.equal(none.code, 1);
  assert.match(none.stdout, /memory binds/);
  const bad = await quantbench("recommend", results, "--objective", "cheap");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Invalid --objective "cheap": expected memory, speed or quality/);
});
