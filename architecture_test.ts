/**
 * The layers stand on each other, never in a loop (DESIGN.md, "Architecture"): `core/` imports
 * nothing of the others; `kernels/` imports only `core/`; `harness/` imports `kernels/` and
 * `core/`; `reports/` imports only `core/`. No two files import each other, directly or through
 * others. Tests are held to the same rules as the code beside them.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { REPO_ROOT } from "./core/shared.ts";

/** What each top-level folder may import (besides itself). */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  core: [],
  kernels: ["core"],
  harness: ["core", "kernels"],
  reports: ["core"],
};

/** Relative import specifiers of a TypeScript source: static, `export … from` and `import()`. */
export function relativeImports(source: string): string[] {
  const found: string[] = [];
  // Doc comments hold import lines as examples; only code counts.
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["'](\.\.?\/[^"']+)["']/gm;
  for (const match of code.matchAll(pattern)) found.push(match[1]!);
  return found;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(join(REPO_ROOT, dir))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...await sourceFiles(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** The import graph of the four layers: repository-relative file → files it imports. */
async function importGraph(): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const top of Object.keys(ALLOWED)) {
    for (const file of await sourceFiles(top)) {
      const source = await Deno.readTextFile(join(REPO_ROOT, file));
      graph.set(
        file,
        relativeImports(source).map((spec) => normalize(join(dirname(file), spec))),
      );
    }
  }
  return graph;
}

/** Strongly connected components of more than one file (Tarjan), each sorted. */
export function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      const selfLoop = graph.get(v)?.includes(v) ?? false;
      if (component.length > 1 || selfLoop) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

Deno.test("no top-level folder imports one above it or beside it", async () => {
  const graph = await importGraph();
  const violations: string[] = [];
  for (const [file, imports] of graph) {
    const from = file.split("/")[0]!;
    for (const target of imports) {
      const to = relative(REPO_ROOT, join(REPO_ROOT, target)).split("/")[0]!;
      if (to !== from && !ALLOWED[from]!.includes(to)) violations.push(`${file} → ${target}`);
    }
  }
  assert.deepEqual(violations, [], `upward or sideways imports:\n${violations.join("\n")}`);
});

Deno.test("no import cycle between files", async () => {
  const found = cycles(await importGraph());
  assert.deepEqual(found, [], `import cycles:\n${found.map((c) => c.join(" ↔ ")).join("\n")}`);
});

Deno.test("the cycle finder finds a cycle through three files and none in a chain", () => {
  const loop = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  assert.deepEqual(cycles(loop), [["a", "b", "c"]]);
  assert.deepEqual(cycles(new Map([["a", ["b"]], ["b", ["c"]], ["c", []]])), []);
  assert.deepEqual(
    relativeImports(
      '/**\n * import { e } from "./example.ts";\n */\nimport { x } from "./x.ts";\n' +
        'export * from "../y.ts";\n// import { z } from "./z.ts";',
    ),
    ["./x.ts", "../y.ts"],
  );
});
