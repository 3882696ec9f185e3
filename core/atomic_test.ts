import assert from "node:assert/strict";
import { join } from "node:path";
import { writeFileAtomic } from "./atomic.ts";

Deno.test("writeFileAtomic creates parent directories and writes text as UTF-8", async () => {
  const root = await Deno.makeTempDir();
  try {
    const path = join(root, "a", "b", "results.csv");
    await writeFileAtomic(path, "π,ü\n");
    const bytes = await Deno.readFile(path);
    // UTF-8 of "π,ü\n" per RFC 3629: π = CF 80, ü = C3 BC.
    assert.deepEqual([...bytes], [0xcf, 0x80, 0x2c, 0xc3, 0xbc, 0x0a]);
    assert.deepEqual(await listNames(join(root, "a", "b")), ["results.csv"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("writeFileAtomic replaces an existing file and leaves no temporary files", async () => {
  const root = await Deno.makeTempDir();
  try {
    const path = join(root, "report.html");
    await Deno.writeTextFile(path, "old contents that are longer than the new ones");
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...await Deno.readFile(path)], [1, 2, 3]);
    assert.deepEqual(await listNames(root), ["report.html"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("writeFileAtomic fails without leaving a temporary file when the target is a directory", async () => {
  const root = await Deno.makeTempDir();
  try {
    const path = join(root, "taken");
    await Deno.mkdir(join(path, "child"), { recursive: true });
    await assert.rejects(writeFileAtomic(path, "x"));
    assert.deepEqual(await listNames(root), ["taken"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

async function listNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}
