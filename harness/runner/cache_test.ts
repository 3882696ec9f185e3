import assert from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../../core/shared.ts";
import { type CachedRow, ResultCache } from "./cache.ts";

/** A small suite on the repository's own micro model: 3 cells × perplexity and kld. */
async function suite(dir: string): Promise<string> {
  const path = join(dir, "suite.yaml");
  await Deno.writeTextFile(
    path,
    `name: cache
models:
  - { id: micro, path: ${join(REPO_ROOT, "fixtures/models/micro")} }
datasets:
  heldout: { kind: text, path: ${
      join(REPO_ROOT, "fixtures/datasets/heldout.txt")
    }, max_chars: 6000 }
methods: [none, rtn]
formats: [f32, int8, { weights: int4, group: 32 }]
tasks:
  - { task: perplexity, dataset: heldout, context: 128 }
  - { task: kld, dataset: heldout, context: 128 }
exclude:
  - { method: none, format: "!f32" }
  - { method: rtn, format: f32 }
`,
  );
  return path;
}

function bench(suitePath: string, out: string, cache: string) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(REPO_ROOT, "main.ts"),
      "bench",
      suitePath,
      "--out",
      out,
      "--cache",
      cache,
    ],
    env: { NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  });
}

/** A run's rows from its results.json, without what differs between runs (ids, timings). */
async function stableRows(dir: string): Promise<unknown[]> {
  const { rows } = JSON.parse(await Deno.readTextFile(join(dir, "results.json")));
  return rows.map(({ run_id: _, extra: __, ...rest }: Record<string, unknown>) => rest);
}

/** Every file under the cache folder, by path relative to it. */
async function files(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(dir, prefix))) {
    const rel = join(prefix, e.name);
    if (e.isDirectory) out.push(...await files(dir, rel));
    else out.push(rel);
  }
  return out.sort();
}

Deno.test("cache: two runs sharing one cache at once, then damaged entries, leave nothing corrupt", async () => {
  const dir = await Deno.makeTempDir();
  const suitePath = await suite(dir);
  const cache = join(dir, "cache");
  // Two runs at once on one cache folder.
  const [a, b] = await Promise.all([
    bench(suitePath, join(dir, "a"), cache).output(),
    bench(suitePath, join(dir, "b"), cache).output(),
  ]);
  const text = (o: Deno.CommandOutput) => new TextDecoder().decode(o.stderr);
  assert.equal(a.code, 0, text(a));
  assert.equal(b.code, 0, text(b));
  const reference = await stableRows(join(dir, "a"));
  assert.deepEqual(await stableRows(join(dir, "b")), reference);
  const entries = (await files(cache)).filter((f) => !f.startsWith("reference"));
  assert.equal(entries.length, 6, entries.join(", "));
  assert.ok((await files(cache)).every((f) => !f.endsWith(".tmp")), "no temporary files left");
  const store = new ResultCache(cache);
  for (const f of entries) {
    const key = f.split("/").pop()!.replace(/\.json$/, "");
    assert.ok(await store.get(key), `${f} is whole`);
  }

  // Damage: a truncated entry, an empty one, one with rows that are not rows, one stored under
  // another key, and a truncated reference (kld's cached log-probabilities).
  const damage = [
    (t: string) => t.slice(0, t.length >> 1),
    () => "",
    () => JSON.stringify({ key: "x", rows: [1, 2] }),
    (t: string) => t.replace(/"key":"[0-9a-f]+"/, '"key":"0000"'),
  ];
  for (const [i, hurt] of damage.entries()) {
    const path = join(cache, entries[i]!);
    await Deno.writeTextFile(path, hurt(await Deno.readTextFile(path)));
    assert.equal(await store.get(entries[i]!.split("/").pop()!.replace(/\.json$/, "")), undefined);
  }
  const reference16 = (await files(cache)).find((f) => f.endsWith(".logprobs.u16"))!;
  const refPath = join(cache, reference16);
  await Deno.writeFile(refPath, (await Deno.readFile(refPath)).slice(0, 100));
  const c = await bench(suitePath, join(dir, "c"), cache).output();
  assert.equal(c.code, 0, text(c));
  const log = text(c);
  assert.equal(log.split("\n").filter((l) => l.endsWith(": cached")).length, 2, log);
  assert.deepEqual(await stableRows(join(dir, "c")), reference);
  // The damaged entries were rewritten whole.
  for (const f of entries) assert.ok(await store.get(f.split("/").pop()!.replace(/\.json$/, "")));
  assert.ok((await Deno.stat(refPath)).size > 100);
});

Deno.test("cache: a writer killed at random moments leaves each entry absent or whole", async () => {
  const dir = await Deno.makeTempDir();
  const rows: CachedRow[] = Array.from({ length: 2000 }, (_, i) => ({
    suite: "s",
    model: "m",
    method: "none",
    format: "f32",
    backend: "cpu",
    task: "perplexity",
    dataset: "d",
    metric: `m${i}`,
    value: i,
    unit: "",
    higher_is_better: false,
    n: 1,
    stderr: null,
    ci_low: null,
    ci_high: null,
    bits_per_weight: 32,
    status: "ok",
    detail: "x".repeat(200),
  }));
  const script = join(dir, "writer.ts");
  await Deno.writeTextFile(
    script,
    `import { ResultCache } from ${JSON.stringify(join(REPO_ROOT, "harness/runner/cache.ts"))};
const rows = JSON.parse(await Deno.readTextFile(${JSON.stringify(join(dir, "rows.json"))}));
const cache = new ResultCache(${JSON.stringify(join(dir, "cache"))});
console.log("ready");
for (let i = 0; ; i++) await cache.put(ResultCache.key(i % 4), rows);
`,
  );
  await Deno.writeTextFile(join(dir, "rows.json"), JSON.stringify(rows));
  const cache = new ResultCache(join(dir, "cache"));
  for (let trial = 0; trial < 6; trial++) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.getReader();
    await reader.read(); // "ready": writes are under way from here on
    await new Promise((r) => setTimeout(r, 30 + 47 * trial));
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel();
    for (let k = 0; k < 4; k++) {
      const got = await cache.get(ResultCache.key(k));
      assert.ok(got === undefined || got.length === rows.length, `trial ${trial} key ${k}`);
    }
  }
});
